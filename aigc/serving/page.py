"""A page to try trained models in a browser (Gradio): the same request to one model or several
side by side, each drawn as ``aigc.sample`` draws it, and what was drawn kept in its run.

The controls are the models' own, read from them as the MLflow model's params are: an image
model's count, seed, label (by name where the data named its classes) or prompt and negative
prompt, and its sampling options (a diffusion model's sampler, steps, guidance); a language
model's prompt, new tokens, temperature, top-k and top-p. Each model has a column headed by its
run's name, its key metrics and, where the store is a server, a link to the run in the MLflow UI.

A request the model can't draw (a label out of range, guidance below 0, no prompt) or one too
large for the machine is refused in one line on the page, which keeps serving. "Keep" logs the
last drawing, with its request as JSON, to each model's run: ``play/<time>.png`` (``.txt`` for text).
"""

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow import MlflowClient
from torchvision.utils import save_image

from aigc.common import tags
from aigc.common.errors import one_line
from aigc.serving.generator import Generator
from aigc.serving.pyfunc import MAX_IMAGES, TEXT_PARAMS

MAX_NEW_TOKENS = 2000  # a request's continuation, at most: an answer in seconds, not minutes
DEFAULT_IMAGES = 4
EVERY_CLASS = "every class in turn"
# the page's style (Gradio's launch takes it): small images (28x28 digits) enlarged to be seen, pixels kept sharp
CSS = ".output-image img {image-rendering: pixelated; min-height: 256px; object-fit: contain;}"


@dataclass
class Column:
    """One model on the page: how it generates, and the run it came from (None: a file of no run)."""

    generator: Generator
    run_id: str | None = None
    heading: str = ""
    drawn: list[str] = field(default_factory=list)


@dataclass
class Control:
    """One field of the request: its name, the value it starts with, and the choices where there are some."""

    name: str
    default: object
    choices: list | None = None
    integer: bool = False


def write_grid(images, out: Path) -> Path:
    """uint8 images (N, H, W, C) as ``aigc.sample`` writes them: one PNG grid, about square."""
    pictures = torch.from_numpy(images).permute(0, 3, 1, 2)
    save_image(pictures.float() / 255, out, nrow=max(1, round(len(pictures) ** 0.5)))
    return out


def controls(generator: Generator) -> list[Control]:
    """The request a model takes, read from the model."""
    if generator.kind == "text":
        defaults = {spec.name: spec.default for spec in TEXT_PARAMS}
        return [Control("prompt", "\n")] + [
            Control(name, value, integer=name in ("max_new_tokens", "top_k", "seed"))
            for name, value in defaults.items()
        ]
    fields = []
    if generator.takes_prompts:
        fields += [Control("prompt", ""), Control("negative_prompt", "")]
    if generator.num_classes:
        names = generator.class_names or [str(index) for index in range(generator.num_classes)]
        fields.append(Control("label", EVERY_CLASS, [EVERY_CLASS, *names]))
    fields += [Control("num_samples", DEFAULT_IMAGES, integer=True), Control("seed", 0, integer=True)]
    choices = generator.sampling_choices
    for name, value in generator.sampling_options.items():
        integer = isinstance(value, int) and not isinstance(value, bool)
        fields.append(Control(name, value, choices.get(name), integer=integer))
    return fields


def check_alike(columns: list[Column]) -> None:
    """Side by side, every model takes the same request."""
    first = [(c.name, c.choices) for c in controls(columns[0].generator)]
    for column in columns[1:]:
        if [(c.name, c.choices) for c in controls(column.generator)] != first:
            raise ValueError(
                f"{column.generator.source} takes another request than {columns[0].generator.source}: "
                "side by side, give models of one kind (both label models of the same classes, both prompt models, ...)"
            )


def heading(client: MlflowClient | None, run_id: str | None, source: str, tracking_uri: str) -> str:
    """The run's name, its objective and up to three more validation metrics, and a link to it."""
    if client is None or run_id is None:
        return f"**{source}**"
    run = client.get_run(run_id)
    metrics = run.data.metrics
    objective = (run.data.tags.get(tags.OBJECTIVE) or " ").split(" ", 1)[1]
    keys = [objective] if objective in metrics else []
    keys += sorted(key for key in metrics if key.startswith("val/") and key not in keys)[: 4 - len(keys)]
    shown = " · ".join(f"{key} {metrics[key]:.4g}" for key in keys)
    lines = [f"**{run.info.run_name or run_id}**", shown or "no metrics"]
    if tracking_uri.startswith(("http://", "https://")):
        lines.append(
            f"[the run in MLflow]({tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id})"
        )
    return "  \n".join(lines)


def draw(columns: list[Column], request: dict, folder: Path, progress=None) -> list[str]:
    """Each model's drawing of ``request``: a PNG grid's path (images) or the text; one line if it can't."""
    request = dict(request)
    outputs = []
    for index, column in enumerate(columns):
        generator = column.generator
        if generator.kind == "text":
            tokens = int(request.get("max_new_tokens") or 0)
            if tokens > MAX_NEW_TOKENS:
                raise ValueError(f"max_new_tokens={tokens}: the page writes at most {MAX_NEW_TOKENS} tokens a request")
            options = {key: request.get(key) for key in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")}
            outputs.append(generator.text(str(request.get("prompt") or "\n"), **options))
            continue
        count = request.get("num_samples")
        if not isinstance(count, int | float) or not 1 <= count <= MAX_IMAGES or count != int(count):
            raise ValueError(f"num_samples={count}: the page draws 1 to {MAX_IMAGES} images a request")
        label = request.get("label")
        asked = {
            "label": None if label in (None, EVERY_CLASS) else label,
            "prompt": request.get("prompt") if generator.takes_prompts else None,
            "negative_prompt": (request.get("negative_prompt") or None) if generator.takes_prompts else None,
        }
        options = {key: request[key] for key in generator.sampling_options if key in request}
        model = generator.model
        if progress is not None and hasattr(model, "progress"):  # a diffusion model: every sampling step
            model.progress = lambda done, steps, index=index: progress((index * steps + done, len(columns) * steps))
        try:
            images = generator.images(int(count), seed=int(request.get("seed") or 0), **asked, **options)
        finally:
            if hasattr(model, "progress"):
                model.progress = None
        outputs.append(str(write_grid(images, folder / f"{index}-{time.time_ns()}.png")))
    return outputs


def _integers(options: dict) -> dict:
    """Numbers as the page's fields give them (floats) back to whole numbers where they are."""
    return {
        key: int(value) if isinstance(value, float) and value.is_integer() else value for key, value in options.items()
    }


def keep(client: MlflowClient | None, columns: list[Column], request: dict, outputs: list[str]) -> str:
    """Log each model's last drawing and the request to its run; what was kept, in one line."""
    if not outputs:
        return "Nothing drawn yet: press Generate first."
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept, missed = [], []
    with tempfile.TemporaryDirectory() as staging:
        for column, output in zip(columns, outputs, strict=True):
            if client is None or column.run_id is None:
                missed.append(column.generator.source)
                continue
            folder = Path(staging) / column.run_id
            folder.mkdir()
            drawn = folder / f"{stamp}.{'txt' if column.generator.kind == 'text' else 'png'}"
            if column.generator.kind == "text":
                drawn.write_text(output)
            else:
                drawn.write_bytes(Path(output).read_bytes())
            (folder / f"{stamp}.json").write_text(json.dumps(request, indent=2, default=str))
            client.log_artifacts(column.run_id, str(folder), "play")
            kept.append(column.run_id)
    said = f"Kept play/{stamp}.{{png,json}} in run {', '.join(kept)}." if kept else ""
    if missed:
        said += f" Not kept (no run): {', '.join(missed)}."
    return said.strip()


def build(columns: list[Column], client: MlflowClient | None, folder: Path):
    """The page (a ``gradio.Blocks``), not yet launched."""
    import gradio as gr

    check_alike(columns)
    fields = controls(columns[0].generator)
    text = columns[0].generator.kind == "text"
    with gr.Blocks(title="aigc.play") as page:
        gr.Markdown("## aigc.play: " + ("continue a prompt" if text else "draw"))
        inputs = []
        with gr.Row():
            for control in fields:
                if control.choices:
                    inputs.append(gr.Dropdown(control.choices, value=control.default, label=control.name))
                elif control.name in ("prompt", "negative_prompt"):
                    inputs.append(gr.Textbox(value=control.default, label=control.name, lines=1 if not text else 3))
                elif isinstance(control.default, str):
                    inputs.append(gr.Textbox(value=control.default, label=control.name))
                else:
                    precision = 0 if control.integer else None
                    inputs.append(gr.Number(value=control.default, label=control.name, precision=precision))
        with gr.Row():
            generate = gr.Button("Generate", variant="primary")
            keep_button = gr.Button("Keep")
        status = gr.Markdown("", elem_id="status")
        outputs = []
        with gr.Row():
            for index, column in enumerate(columns):
                with gr.Column():
                    gr.Markdown(column.heading, elem_id=f"heading-{index}")
                    if text:
                        outputs.append(gr.Textbox(label="text", lines=12, elem_id=f"output-{index}"))
                    else:
                        outputs.append(
                            gr.Image(
                                type="filepath",
                                label="images",
                                elem_id=f"output-{index}",
                                elem_classes=["output-image"],
                                height=320,
                            )
                        )
        last = gr.State({"request": None, "outputs": []})

        def on_generate(*values, progress=gr.Progress()):  # noqa: B008 (how Gradio hands a handler its progress bar)
            request = {control.name: _typed(control, value) for control, value in zip(fields, values, strict=True)}
            try:
                drawn = draw(columns, request, folder, progress)
            except Exception as error:  # a bad value is one line on the page; the server keeps serving
                return [None] * len(columns) + [f"Error: {one_line(error)}", {"request": None, "outputs": []}]
            return [*drawn, "", {"request": request, "outputs": drawn}]

        def on_keep(state):
            try:
                return keep(client, columns, state["request"], state["outputs"])
            except Exception as error:
                return f"Error: {one_line(error)}"

        generate.click(on_generate, inputs=inputs, outputs=[*outputs, status, last])
        keep_button.click(on_keep, inputs=[last], outputs=[status])
    return page


def _typed(control: Control, value):
    """A field's value as the model takes it: whole numbers as ints (a page's number field gives floats)."""
    if control.integer and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
