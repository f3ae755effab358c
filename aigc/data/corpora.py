"""Text corpora: where the characters come from. The data config picks one by ``_target_``.

Each corpus is a small object whose ``read()`` returns ``(text, location, source)``:
the whole text, a path or URL a person can follow, and which source served it
("pydoc_data", "local", "download", "file"). ``prepare()`` fetches what ``read()``
needs; Lightning calls it once per machine (``prepare_data``) before every rank reads.
Errors are one line that names the override that fixes them.
"""

import os
import platform
import urllib.request
import warnings
from pathlib import Path

from aigc.common.errors import joined

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_CHARS = 1_115_394  # nanoGPT's shakespeare_char prepare.py reports this length


class Corpus:
    """Subclasses set ``name`` (the dataset, recorded as ``data.name``) and implement ``read``."""

    name: str = "text"

    def prepare(self) -> None:
        """Download or otherwise fetch what ``read`` needs; nothing to do for local text."""

    def read(self) -> tuple[str, str, str]:
        raise NotImplementedError


class PyDocs(Corpus):
    """CPython's own help topics (``pydoc_data.topics``): ~465 kB of English on every Python, offline.

    The topics are joined in sorted-key order so the text (and its digest) is the same on
    every machine with the same Python version; other versions ship slightly different text.
    """

    name = "pydocs"

    def read(self) -> tuple[str, str, str]:
        from pydoc_data.topics import topics

        text = "\n".join(topics[key] for key in sorted(topics))
        location = f"pydoc_data.topics, Python {platform.python_version()}, {len(topics)} topics"
        return text, location, "pydoc_data"


class TextFile(Corpus):
    """Any UTF-8 text file (``data=text data.path=<file>``)."""

    name = "text"

    def __init__(self, path: str):
        self.path = Path(path).expanduser()

    def read(self) -> tuple[str, str, str]:
        return _read_utf8(self.path, "text file"), str(self.path.resolve()), "file"


class TinyShakespeare(Corpus):
    """Karpathy's tiny-shakespeare (1,115,394 characters), the corpus of nanoGPT's shakespeare_char.

    Read from ``path`` when given (``data.path=<file>``), else from
    ``<data_dir>/tinyshakespeare.txt``, downloading it there once from ``url`` when missing.
    A file of another length is used but flagged: its numbers won't compare with nanoGPT's.
    """

    name = "shakespeare"
    filename = "tinyshakespeare.txt"

    def __init__(self, data_dir: str, path: str | None = None, url: str = TINY_SHAKESPEARE_URL):
        self.data_dir = Path(data_dir).expanduser()
        self.path = Path(path).expanduser() if path else None
        self.url = url
        self._downloaded = False  # so read() after prepare() still says the text came from a download

    @property
    def file(self) -> Path:
        return self.path if self.path is not None else self.data_dir / self.filename

    def prepare(self) -> None:
        if self.path is not None or self.file.is_file():
            return
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                data = response.read()
            text = data.decode("utf-8")
        except Exception as failed:  # URLError, HTTP errors, timeouts, blocked sockets: all mean "not here"
            raise RuntimeError(
                f"tiny-shakespeare not found: paths.data_dir={self.data_dir} has no {self.filename} and the "
                f"download from {self.url} failed ({joined(failed)}); copy the file there "
                "or set data.path=<file> to read a local copy"
            ) from None
        if len(text) != TINY_SHAKESPEARE_CHARS:  # a proxy's error page, a truncated transfer
            raise RuntimeError(
                f"the download from {self.url} has {len(text):,} characters, not tiny-shakespeare's "
                f"{TINY_SHAKESPEARE_CHARS:,}; copy the right file to {self.file} or set data.path=<file>"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        partial = self.file.with_suffix(".part")  # written whole, then renamed: no half files left behind
        partial.write_bytes(data)
        os.replace(partial, self.file)
        self._downloaded = True
        print(f"Downloaded tiny-shakespeare to {self.file}")

    def read(self) -> tuple[str, str, str]:
        if self.path is not None:
            text, source = _read_utf8(self.path, "tiny-shakespeare"), "file"
        else:
            self.prepare()
            text, source = _read_utf8(self.file, "tiny-shakespeare"), "download" if self._downloaded else "local"
        if len(text) != TINY_SHAKESPEARE_CHARS:
            warnings.warn(
                f"{self.file} has {len(text):,} characters, not tiny-shakespeare's {TINY_SHAKESPEARE_CHARS:,}: "
                "training works, but its numbers won't compare with nanoGPT's",
                stacklevel=2,
            )
        return text, str(self.file.resolve()), source


def _read_utf8(path: Path, what: str) -> str:
    if not path.is_file():
        raise RuntimeError(f"{what} not found: data.path={path} is not a file")
    try:
        return path.read_bytes().decode("utf-8")  # bytes, not read_text: keep "\r\n" exactly as in the file
    except UnicodeDecodeError as bad:
        raise RuntimeError(f"{what} data.path={path} is not UTF-8 text ({bad.reason} at byte {bad.start})") from None
