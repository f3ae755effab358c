"""What the entry points promise on bad input: one line on stderr, exit status 1 (130 for Ctrl-C)."""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aigc.tracking.run.signals import RunInterrupted

# lines of Hydra's error reports that say nothing about this error
_HYDRA_NOISE = ("Config search path", "Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=")
# Hydra's words for a mismatch of groups, and what the user can do about it
_HYDRA_HINTS = {
    # a model with its own tokenizer (model=hf_causal_lm) chooses data/tokenizer, which only text data has
    "Could not override 'data/tokenizer'": "this model trains on text: add data=<a text dataset> "
    "(pydocs, shakespeare, or text with data.path=<file>)",
}


def entry_point(main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function: an error Hydra reports (a mistyped override or option)
    becomes one line too, instead of its multi-line report."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors here instead of printing them
    try:
        main()
    except (RunInterrupted, KeyboardInterrupt):  # runs a signal stopped are already marked KILLED
        sys.exit(130)
    except Exception as error:
        text = one_line(error)
        hints = [hint for words, hint in _HYDRA_HINTS.items() if words in text]
        print(f"Error: {'; '.join([text, *hints])}", file=sys.stderr)
        sys.exit(1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        print(f"\nError: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        sys.exit(1)


def one_line(error: BaseException) -> str:
    """An error's message (and its cause's) on one line: Hydra's indented lists as comma lists,
    its hints kept, the lines about its search path and stack traces left out."""
    parts: list[tuple[str, list[str]]] = []  # each line, and the indented lines under it
    causes = [error] + ([error.__cause__] if error.__cause__ is not None else [])
    for line in "\n".join(str(e) for e in causes).splitlines():
        if line[:1] in ("\t", " ") and line.strip() and parts:
            parts[-1][1].append(line.strip())
        elif line.strip():
            parts.append((line.strip(), []))
    kept = [
        " ".join([text, ", ".join(item for item in items if not item.startswith(_HYDRA_NOISE))]).strip()
        for text, items in parts
        if not text.startswith(_HYDRA_NOISE)
    ]
    text = "; ".join(dict.fromkeys(kept)) or type(error).__name__
    return text if len(text) <= 1000 else text[:997] + "..."
