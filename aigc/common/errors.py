"""Errors as the one line a user reads: what the commands print, and what a warning quotes."""

# lines of Hydra's error reports that say nothing about this error
_HYDRA_NOISE = ("Config search path", "Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=")


class RunNotFound(LookupError):
    """A command names a run (``resume=``, ``rerun=``, a checkpoint's run) that the store does not
    have: the user's input, so the commands print the one line and no traceback."""


class SignInRefused(PermissionError):
    """A tracking server asks for a sign-in that the environment does not give (raised by
    ``aigc.tracking.store.client.check_signed_in``; the commands print it as the user's error)."""


class Preempted(BaseException):
    """Training stopped at a step boundary after a cluster's preemption warning, ``checkpoint``
    written (``aigc.callbacks.preemption``): the run ends KILLED, a SLURM job is requeued. A
    BaseException, as ``RunInterrupted`` is, so that ``except Exception`` blocks let it through."""

    def __init__(self, signal_name: str, checkpoint: str, step: int):
        super().__init__(f"{signal_name}: stopped at step {step}, checkpoint {checkpoint}")
        self.signal_name, self.checkpoint, self.step = signal_name, checkpoint, step
        self.requeued: str | None = None  # the SLURM job that put itself back in the queue


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (its type's name when it has none), at most ``limit`` characters."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def joined(error: BaseException) -> str:
    """An error's whole message on one line (a download error's spans several)."""
    return " ".join(str(error).split()) or type(error).__name__


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
