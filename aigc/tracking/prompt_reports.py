"""What the compare report adds for text-to-image runs: the prompt accuracy by category across runs,
and the runs' grids of the same prompts side by side.

Both read what the runs logged: the final ``val/prompt_acc`` and ``val/prompt_acc_<category>``
(``aigc.callbacks.PromptAccuracy``), and the newest picture each logged under the key ``prompts``
(``aigc.callbacks.PromptGrid``: the same prompts and seeds in every run of a configuration).
"""

import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from PIL import Image, ImageDraw, ImageFont

PROMPT_ACCURACY = "val/prompt_acc"
GRID_KEY = "prompts"  # MLflow stores a logged image as images/<key>+step+<step>+timestamp+...png


def accuracy_table(runs: list[Run], label) -> list[dict[str, str]]:
    """A row per run that scored prompts: its overall prompt accuracy and each category's."""
    scored = [run for run in runs if PROMPT_ACCURACY in run.data.metrics]
    prefix = PROMPT_ACCURACY + "_"
    categories = sorted({key[len(prefix) :] for run in scored for key in run.data.metrics if key.startswith(prefix)})
    rows = []
    for run in scored:
        metrics = run.data.metrics
        row = {"run": label(run), "prompt_acc": f"{metrics[PROMPT_ACCURACY]:.3f}"}
        row |= {category: _shown(metrics.get(f"{PROMPT_ACCURACY}_{category}")) for category in categories}
        rows.append(row)
    return rows


def side_by_side_grids(client: MlflowClient, runs: list[Run], label, path: Path) -> Path | None:
    """The newest prompt grid of each run, left to right, each headed by its run's label; None
    when no run logged one."""
    pictures = []
    with tempfile.TemporaryDirectory() as folder:
        for run in runs:
            newest = _newest_grid(client, run)
            if newest is not None:
                local = client.download_artifacts(run.info.run_id, newest, folder)
                with Image.open(local) as picture:
                    pictures.append((label(run), picture.convert("RGB")))
    if not pictures:
        return None
    font, header, gap = ImageFont.load_default(size=14), 22, 12
    width = sum(picture.width for _, picture in pictures) + gap * (len(pictures) - 1)
    height = header + max(picture.height for _, picture in pictures)
    sheet = Image.new("RGB", (width, height), "white")
    draw, left = ImageDraw.Draw(sheet), 0
    for name, picture in pictures:
        draw.text((left + 2, 3), name, fill="black", font=font)
        sheet.paste(picture, (left, header))
        left += picture.width + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _newest_grid(client: MlflowClient, run: Run) -> str | None:
    prefix = f"{GRID_KEY}+step+"
    grids = [
        artifact.path
        for artifact in client.list_artifacts(run.info.run_id, "images")
        if Path(artifact.path).name.startswith(prefix) and artifact.path.endswith(".png")
    ]
    return max(grids, key=lambda grid: int(Path(grid).name[len(prefix) :].split("+")[0]), default=None)


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
