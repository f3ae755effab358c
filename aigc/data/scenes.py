"""Compositional scenes for text-to-image models: coloured shapes on a 3x3 grid, with captions.

A scene holds one to four objects, each a shape in a colour in one cell of a 3x3 grid on black;
its caption says what is there, in GenEval's categories (``CATEGORIES``)::

    single_object   a circle                          (one object, any colour)
    two_objects     a circle and a square             (two shapes, any colours)
    counting        three triangles                   (2-4 of one shape, any colours)
    colours         a red circle                      (one object in a colour)
    position        a red circle left of a blue star  (columns/rows decide the relation)
    colour_binding  a red circle and a blue square    (two shapes, each in its colour)

Some combinations never appear in training scenes (``HELD_OUT_*``): four (colour, shape) pairs,
four (count, shape) pairs and two pairs of shapes that are never drawn together. The evaluation
prompts (``evaluation_prompts``) ask for exactly those, so a generator scores on them only by
composing what it learnt separately, not by remembering a caption. Training captions vary their
wording (``"one red circle"``, ``"red circle"``, ``"a blue star right of a red circle"``); each
evaluation prompt has one canonical wording, which is also the first of the training wordings.

Everything follows from the seed (numpy's PCG64 and PIL's rasteriser, both deterministic).
Objects are drawn 4x larger and box-filtered down, so any resolution draws the same picture; a
small random offset and size per object (``render``'s ``rng``) keep a generator from learning
one bitmap per cell. No torch here: the verifier and the datamodule build on this.
"""

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from aigc.common.scenes import CATEGORIES, COLOURS, GRID, RELATIONS, SHAPES, EvaluationPrompt, Thing, holds

# Objects are about 7.5 px wide at 32 px (a cell is 10.7 px) and a star's points 1-2 px: blurred,
# stars, triangles, squares and circles are then what the verifier confuses first
# (experiments/train_shapes_verifier.md). 32 is also the verifier's resolution: it reads larger
# images scaled down to it, never smaller ones scaled up.
MIN_RESOLUTION = 32
# bumped when what a seed draws changes; it seeds the draws and names the data's source (v1)
VERSION = 1

INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Never in a training scene; the evaluation prompts of the matching categories ask for them.
HELD_OUT_COLOURED = (("green", "triangle"), ("blue", "circle"), ("yellow", "square"), ("purple", "star"))
HELD_OUT_COUNTS = ((2, "square"), (3, "triangle"), (3, "star"), (4, "circle"))
HELD_OUT_PAIRS = (("circle", "triangle"), ("square", "star"))
# position and colour_binding prompts: one held-out (colour, shape) each, beside a seen one, of
# two shapes that are seen together (so the colour binding is the only new thing)
HELD_OUT_POSITIONS = (
    (("triangle", "green"), "left of", ("square", "red")),
    (("circle", "blue"), "above", ("star", "yellow")),
    (("square", "yellow"), "right of", ("triangle", "purple")),
    (("star", "purple"), "below", ("circle", "green")),
)
HELD_OUT_BINDINGS = (
    (("triangle", "green"), ("star", "blue")),
    (("circle", "blue"), ("square", "red")),
    (("square", "yellow"), ("circle", "purple")),
    (("star", "purple"), ("triangle", "red")),
)

# an object's size as a share of its cell, and how far it may be moved from the cell's centre:
# neighbours never touch (at the extremes two stars are a third of a pixel apart at 32 px)
SIZE, SIZE_JITTER, OFFSET_JITTER = 0.7, 0.05, 0.07
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    caption: str
    category: str


def shows_held_out(things: list[Thing] | tuple[Thing, ...]) -> bool:
    """Does a scene contain a combination that training never shows?"""
    shapes = Counter(thing.shape for thing in things)
    return (
        any((thing.colour, thing.shape) in HELD_OUT_COLOURED for thing in things)
        or any(shapes[shape] == count for count, shape in HELD_OUT_COUNTS)
        or any(shapes[a] and shapes[b] for a, b in HELD_OUT_PAIRS)
    )


def evaluation_prompts() -> list[EvaluationPrompt]:
    """The fixed evaluation prompts, four per category, in ``CATEGORIES`` order. All but
    single_object's (every shape alone, as in GenEval) ask for a held-out combination."""

    def prompt(category, objects, relation=None):
        return EvaluationPrompt(caption(category, objects, relation), category, tuple(objects), relation)

    prompts = [prompt("single_object", [(shape, None)]) for shape in SHAPES]
    prompts += [prompt("two_objects", [(a, None), (b, None)]) for pair in HELD_OUT_PAIRS for a, b in (pair, pair[::-1])]
    prompts += [prompt("counting", [(shape, None)] * count) for count, shape in HELD_OUT_COUNTS]
    prompts += [prompt("colours", [(shape, colour)]) for colour, shape in HELD_OUT_COLOURED]
    prompts += [prompt("position", [a, b], relation) for a, relation, b in HELD_OUT_POSITIONS]
    prompts += [prompt("colour_binding", [a, b]) for a, b in HELD_OUT_BINDINGS]
    return prompts


def training_scenes(count: int, seed: int) -> list[Scene]:
    """``count`` scenes, the categories in turn, none showing a held-out combination; captions in
    varied wordings."""
    rng = np.random.default_rng([seed, VERSION, 0])
    scenes = []
    for index in range(count):
        category = CATEGORIES[index % len(CATEGORIES)]
        while True:  # a proposal that shows a held-out combination is drawn again
            objects, relation = _propose(category, rng)
            things = _place(objects, relation, rng)
            if not shows_held_out(things):
                break
        scenes.append(Scene(things, caption(category, objects, relation, rng), category))
    return scenes


def held_out_scenes(count: int, seed: int) -> list[Scene]:
    """``count`` scenes of the evaluation prompts, in turn: what a perfect generator draws for
    them (each scene's caption is its prompt)."""
    rng = np.random.default_rng([seed, VERSION, 1])
    prompts = evaluation_prompts()
    scenes = []
    for index in range(count):
        prompt = prompts[index % len(prompts)]
        scenes.append(Scene(_place(prompt.objects, prompt.relation, rng), prompt.prompt, prompt.category))
    return scenes


def _propose(category: str, rng: np.random.Generator):
    """What a training scene of ``category`` shows: (objects, relation), uniformly at random."""

    def pick(options):
        return options[rng.integers(len(options))]

    def coloured():
        return pick(SHAPES), pick(list(COLOURS))

    if category == "single_object":
        return [(pick(SHAPES), None)], None
    if category == "two_objects":
        a, b = rng.choice(len(SHAPES), size=2, replace=False)
        return [(SHAPES[a], None), (SHAPES[b], None)], None
    if category == "counting":
        return [(pick(SHAPES), None)] * int(rng.integers(2, 5)), None
    if category == "colours":
        return [coloured()], None
    if category == "position":
        a, b = coloured(), coloured()
        while b == a:
            b = coloured()
        return [a, b], pick(RELATIONS)
    if category == "colour_binding":
        shapes = rng.choice(len(SHAPES), size=2, replace=False)
        colours = rng.choice(len(COLOURS), size=2, replace=False)
        return [(SHAPES[s], list(COLOURS)[c]) for s, c in zip(shapes, colours, strict=True)], None
    raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")


def _place(objects, relation: str | None, rng: np.random.Generator) -> tuple[Thing, ...]:
    """Put the objects in distinct random cells (the first two in ``relation``); an object of any
    colour gets one that is not held out for its shape."""
    cells = [(row, col) for row in range(GRID) for col in range(GRID)]
    while True:
        chosen = [cells[i] for i in rng.choice(len(cells), size=len(objects), replace=False)]
        if relation is None or holds(chosen[0], relation, chosen[1]):
            break
    things = []
    for (shape, colour), (row, col) in zip(objects, chosen, strict=True):
        if colour is None:
            free = [name for name in COLOURS if (name, shape) not in HELD_OUT_COLOURED]
            colour = free[rng.integers(len(free))]
        things.append(Thing(shape, colour, row, col))
    return tuple(things)


def caption(category: str, objects, relation: str | None = None, rng: np.random.Generator | None = None) -> str:
    """The words for a scene: the canonical wording without ``rng``, else one of its variants."""

    def pick(options):
        return options[0] if rng is None else options[rng.integers(len(options))]

    def thing(shape, colour):
        return f"{pick(['a', 'one'])} {colour + ' ' if colour else ''}{shape}"

    if category in ("single_object", "colours"):
        ((shape, colour),) = objects
        named = f"{colour + ' ' if colour else ''}{shape}"
        return pick([f"a {named}", f"one {named}", named, f"a single {named}"])
    if category in ("two_objects", "colour_binding"):
        a, b = pick([(objects[0], objects[1]), (objects[1], objects[0])])
        return f"{thing(*a)} {pick(['and', 'with'])} {thing(*b)}"
    if category == "counting":
        count, shape = len(objects), objects[0][0]
        return f"{pick([NUMBERS[count], str(count), 'exactly ' + NUMBERS[count]])} {shape}s"
    if category == "position":
        # "A left of B" is also "B right of A"
        (a, b), relation = pick([((objects[0], objects[1]), relation), ((objects[1], objects[0]), INVERSE[relation])])
        words = {
            "left of": ["left of", "to the left of"],
            "right of": ["right of", "to the right of"],
            "above": ["above", "over"],
            "below": ["below", "under"],
        }
        return f"{thing(*a)} {pick(words[relation])} {thing(*b)}"
    raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")


def render(scene: Scene, resolution: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene as uint8 (3, resolution, resolution). With ``rng`` each object is moved and
    resized a little at random; without it, every object sits centred at its nominal size."""
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution {resolution} is below the minimum of {MIN_RESOLUTION} for shapes scenes")
    side = resolution * SUPERSAMPLE
    image = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(image)
    cell = side / GRID
    for thing in scene.things:
        size, dx, dy = SIZE, 0.0, 0.0
        if rng is not None:
            size += rng.uniform(-SIZE_JITTER, SIZE_JITTER)
            dx, dy = rng.uniform(-OFFSET_JITTER, OFFSET_JITTER, size=2)
        x, y = (thing.col + 0.5 + dx) * cell, (thing.row + 0.5 + dy) * cell
        _draw_shape(draw, thing.shape, x, y, size * cell / 2, COLOURS[thing.colour])
    # a box filter: each pixel is the area share of what covers it
    small = image.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small).transpose(2, 0, 1).copy()


def render_scenes(scenes: list[Scene], resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Every scene rendered, uint8 (N, 3, R, R), the jitter drawn from ``rng``."""
    images = np.empty((len(scenes), 3, resolution, resolution), dtype=np.uint8)
    for index, scene in enumerate(scenes):
        images[index] = render(scene, resolution, rng)
    return images


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, half: float, colour) -> None:
    # the factors make the four shapes look about equally big (a square fills its box, a star doesn't)
    if shape == "circle":
        r = 0.95 * half
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif shape == "square":
        r = 0.85 * half
        draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y - half), (x - half, y + 0.8 * half), (x + half, y + 0.8 * half)], fill=colour)
    elif shape == "star":
        # five points, moved down a little: its top point reaches further than its lower ones
        radii = [1.1 * half, 0.46 * half] * 5
        angles = [-math.pi / 2 + i * math.pi / 5 for i in range(10)]
        corners = [(x + r * math.cos(a), y + 0.1 * half + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
        draw.polygon(corners, fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
