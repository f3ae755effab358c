"""Pretrained files from the Hugging Face hub, without waiting on a hub that can't be reached.

``transformers`` retries an unreachable hub for about a minute before it gives up. Here a name
is looked up in order: a local folder (``save_pretrained`` output), the local Hugging Face
cache (found without the network), and only then the hub, after a connection check of a few
seconds. When none serves, the error is one line that names the fix.
"""

import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0


class PretrainedUnavailable(OSError):
    """Neither a local folder, nor the cache, nor the hub has the files."""


def load_pretrained(load: Callable[..., T], name: str, what: str = "model.pretrained") -> T:
    """``load(folder)`` (e.g. ``AutoModelForCausalLM.from_pretrained``) from a local folder, the
    cache or the hub, in that order. ``what`` names the setting in the error line."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return load(str(folder))
    if name.startswith((".", "/", "~")):
        raise PretrainedUnavailable(f"{what}={name}: no such folder (a save_pretrained folder or a hub name)")
    cached = _cached_snapshot(name)
    if cached is not None:
        try:
            return load(cached)
        except OSError:
            pass  # the cache has some of the files only (a tokenizer without its model, say)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if offline or not _reachable(endpoint):
        why = "HF_HUB_OFFLINE is set" if offline else f"{endpoint} can't be reached"
        raise PretrainedUnavailable(
            f"{what}={name} is not a local folder or in the Hugging Face cache, and {why}: download it where "
            f"there is a network (`hf download {name} --local-dir <dir>`) and set {what}=<dir>"
        )
    return load(name)


def _cached_snapshot(name: str) -> str | None:
    """The cache's folder of ``name``'s newest snapshot, found without the network."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached, or not a valid hub name: either way there is no local copy
        return None


def _reachable(endpoint: str) -> bool:
    """Whether ``endpoint`` answers within seconds: a TCP connection, or through a proxy (the
    environment's ``HTTPS_PROXY``) an HTTP HEAD, whatever its status."""
    if urllib.request.getproxies().get(urlparse(endpoint).scheme):
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=CONNECT_TIMEOUT_S)
        except urllib.error.HTTPError:  # it answered
            return True
        except OSError:
            return False
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False
