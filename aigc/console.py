"""What the entry points promise on bad input: one line on stderr, exit status 1."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        print(f"\nError: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
