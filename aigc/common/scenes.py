"""What a shapes scene is made of, and what a prompt about one asks for: the vocabulary that the
scene generator (``aigc.data.scenes``), the verifier that reads scenes back and the prompt
accuracy (``aigc.metrics``) share. Plain data and one rule (``satisfies``), nothing drawn here."""

import itertools
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "star")
# well apart in RGB, so a blurred or noisy colour is still the nearest of its own
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 100, 255),
    "yellow": (240, 220, 40),
    "purple": (180, 60, 230),
}
CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "colour_binding")
GRID = 3
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    row: int  # 0 is the top row
    col: int  # 0 is the left column


@dataclass(frozen=True)
class EvaluationPrompt:
    """A prompt and what it asks for: exactly these ``objects`` ((shape, colour or None: any), one
    per object: "three triangles" is three of them), and for position prompts the ``relation``
    of the first object to the second."""

    prompt: str
    category: str
    objects: tuple[tuple[str, str | None], ...]
    relation: str | None = None


def satisfies(things: list[Thing], prompt: EvaluationPrompt) -> bool:
    """Does a scene (as detected) show exactly what the prompt asks: its objects, with their
    colours where it names them, their number, the relation, and nothing else?

    Every category is exact, because every caption describes its whole scene: an extra object is
    as wrong as a missing one. "A left of B" means A's column is left of B's (rows free); "A
    above B" means A's row is above B's (columns free).
    """
    if len(things) != len(prompt.objects):
        return False
    for order in itertools.permutations(things):
        if all(
            thing.shape == shape and colour in (None, thing.colour)
            for thing, (shape, colour) in zip(order, prompt.objects, strict=True)
        ) and (prompt.relation is None or holds(_cell(order[0]), prompt.relation, _cell(order[1]))):
            return True
    return False


def _cell(thing: Thing) -> tuple[int, int]:
    return thing.row, thing.col


def holds(a: tuple[int, int], relation: str, b: tuple[int, int]) -> bool:
    """Does cell ``a`` (row, col) stand in ``relation`` to cell ``b``?"""
    (a_row, a_col), (b_row, b_col) = a, b
    holds = {"left of": a_col < b_col, "right of": a_col > b_col, "above": a_row < b_row, "below": a_row > b_row}
    return holds[relation]
