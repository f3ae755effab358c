"""A page to try trained models in a browser: prompt, label, seed and guidance, several runs side by side.

python -m aigc.play run_id=<id>                           # then open http://127.0.0.1:7860
python -m aigc.play 'run_id=[<a>,<b>]'                    # the same request to each, in columns
python -m aigc.play model_uri=models:/mnist-gan@champion  # a registered model
AIGC_PLAY_AUTH=me:secret python -m aigc.play run_id=<id> host=0.0.0.0   # signed in, on the network

The models are read from their weights alone (``aigc.serving.generator``): no code from a run runs.
The page is ``aigc.serving.page``.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from aigc.common.collector import started
from aigc.jobs.console import entry_point, one_line_errors

# torch, Lightning, MLflow, Gradio: imported by the functions that use them, so that `--help` and a
# refused override answer in about a second, as aigc.run's do (tests/test_layers.py)


def models_named(cfg: DictConfig) -> list[dict]:
    """One ``weights_named`` request per model the command names."""
    if bool(cfg.run_id) == bool(cfg.model_uri):
        raise ValueError("say which models to try, once: run_id=<id> or run_id=[<a>,<b>], or model_uri=<URI> or a list")
    key, values = ("run_id", cfg.run_id) if cfg.run_id else ("model_uri", cfg.model_uri)
    values = list(values) if isinstance(values, ListConfig | list) else [values]
    return [{"run_id": None, "model_uri": None, "ckpt_path": None, key: str(value)} for value in values]


def sign_in(auth: str | None) -> list[tuple[str, str]] | None:
    """``user:password[,user:password]`` as Gradio's sign-in takes it; one line on a malformed one."""
    if not auth:
        return None
    pairs = [entry.split(":", 1) for entry in str(auth).split(",")]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise ValueError("AIGC_PLAY_AUTH must be user:password (several: comma-separated)")
    return [(user, password) for user, password in pairs]


def play(cfg: DictConfig, block: bool = True):
    """Load the models, build the page, serve it; returns the page (``block=False``: serving in a thread)."""
    from aigc.serving.generator import Generator
    from aigc.serving.page import CSS, Column, build, heading
    from aigc.serving.registry import weights_named
    from aigc.tracking.store.client import open_store

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry
    credentials = sign_in(cfg.auth)
    client = open_store(cfg.tracking_uri)
    folder = Path(tempfile.mkdtemp(prefix="aigc-play-"))  # the weights fetched and the images drawn
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    columns = []
    for named in models_named(cfg):
        request = OmegaConf.create({**named, "checkpoint": cfg.checkpoint, "tracking_uri": cfg.tracking_uri})
        path, source = weights_named(request, str(folder), "try")
        generator = Generator.from_file(path, source)
        columns.append(Column(generator, generator.run_id, heading(client, generator.run_id, source, cfg.tracking_uri)))
    page = build(columns, client, folder)
    page.queue()
    _, url, _ = page.launch(
        server_name=cfg.host,
        server_port=int(cfg.port),
        auth=credentials,
        prevent_thread_lock=True,
        quiet=True,
        allowed_paths=[str(folder)],
        footer_links=[],
        css=CSS,
    )
    print(f"aigc.play: {url} ({len(columns)} model{'s' if len(columns) > 1 else ''}; Ctrl+C stops)", flush=True)
    if block:
        page.block_thread()
    return page


@hydra.main(version_base="1.3", config_path="../conf", config_name="play")
def main(cfg: DictConfig) -> None:
    started()
    with one_line_errors():
        play(cfg)


if __name__ == "__main__":
    entry_point(main)
