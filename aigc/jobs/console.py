"""What a command shows and promises: aigc's own lines, the progress bar and real errors, each once;
on bad input one line on stderr and exit status 1 (130 for Ctrl-C).

The libraries' lines that say nothing to a user of aigc are dropped where they arise, each by a
named filter below (never a blanket that could hide an error); ``-v`` on the command line keeps
every one of them.
"""

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aigc.common.collector import collector_paused
from aigc.common.errors import one_line
from aigc.tracking.run.signals import RunInterrupted

VERBOSE_FLAGS = ("-v", "--verbose")

# (logger, what its dropped lines are, the lines): informational lines only
DROPPED_LINES = [
    ("lightning.pytorch.utilities.rank_zero", "Lightning's advertisement for another product", r"💡 Tip|litlogger"),
    ("lightning.pytorch.utilities.rank_zero", "accelerators this machine lacks", r"^[GTH]PU available: False"),
    # printed when the Trainer is built, before a bad config is refused; training prints its own, with the reason
    ("lightning.pytorch.utilities.rank_zero", "mixed precision chosen", r"^Using \w+ Automatic Mixed Precision"),
]
# warnings raised inside a dependency about its own internals, which a user cannot act on
DEPENDENCY_WARNINGS = [
    ("Lightning's pytree helpers use a torch API it deprecated", r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # the summary's size column assumes 32-bit parameters under bf16-mixed (their storage is float32)
    ("Lightning's model summary under bf16-mixed", r"Precision bf16-mixed is not supported by the model summary"),
    ("torchdata's loader calls a torch API torch deprecated", r"'set_vital' is deprecated"),
    # a fine-tuned model's frozen pretrained parts (a VAE, a text encoder) are in eval mode on purpose
    ("Lightning's note on modules in eval mode", r"Found \d+ module\(s\) in eval mode at the start of training"),
]
# loggers whose INFO lines are dropped (their warnings and errors still show), and what those lines say
QUIET_LOGGERS = {
    "mlflow.system_metrics": "system metrics monitoring starts and stops (the metrics are in the run)",
    "mlflow.store.db.utils": "a new SQLite store creates its tables",
    "mlflow.pyfunc": "the run's model is checked against its input example",
    "httpx": "aigc.play's page checks that it started (Gradio's requests to itself)",
}

# Hydra's words for a mismatch of groups, and what the user can do about it
_HYDRA_HINTS = {
    # a model with its own tokenizer (model=hf_causal_lm) chooses data/tokenizer, which only text data has
    "Could not override 'data/tokenizer'": "this model trains on text: add data=<a text dataset> "
    "(pydocs, shakespeare, or text with data.path=<file>)",
}


class _Dropped(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_libraries() -> None:
    """Install the named filters above, and print Lightning's lines once: Lightning has a console
    handler of its own, and under Hydra its lines also reached Hydra's (the root logger's)."""
    for name, _, pattern in DROPPED_LINES:
        logging.getLogger(name).addFilter(_Dropped(pattern))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for _, message in DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("lightning").propagate = False
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # small files: no progress bars
    # transformers' and diffusers' bars while a pretrained model loads: huggingface_hub's switch, read
    # when they are imported, and their own where a command imported them already
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for library in ("transformers", "diffusers"):
        if library in sys.modules:
            sys.modules[library].utils.logging.disable_progress_bar()


def entry_point(main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function: an error Hydra reports (a mistyped override or option)
    becomes one line too, instead of its multi-line report. ``-v`` keeps the libraries' lines."""
    if any(flag in sys.argv[1:] for flag in VERBOSE_FLAGS):
        sys.argv = [argument for argument in sys.argv if argument not in VERBOSE_FLAGS]
    else:
        quiet_libraries()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors here instead of printing them
    with collector_paused():
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
