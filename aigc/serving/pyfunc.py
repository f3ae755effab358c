"""A run's model as an MLflow pyfunc model: what ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` load.

The model folder holds ``artifacts/weights.pt`` (``aigc.serving.generator.slim``: weights, config,
tokenizer) and a signature with an input example; a fine-tuned Stable Diffusion model's also its
LoRA adapters as diffusers' and kohya's files (``aigc.serving.adapters``). Rows say what to generate, params how
(MLflow's inference params: one value per request, with defaults):

- image models: rows of ``num_samples`` and, for a class-conditional model, an optional
  ``label`` (none: every class in turn), for a text-to-image model a ``prompt`` and an optional
  ``negative_prompt``; params ``seed`` and the model's sampling options (a
  diffusion model's ``sampler``, ``steps``, ``guidance``) -> uint8 images (N, H, W, C), every
  row's images one after the other;
- language models: rows of ``prompt``; params ``max_new_tokens``, ``temperature``, ``top_k``,
  ``top_p``, ``seed`` -> one text (the prompt and its continuation) per row.

Row ``i`` is generated with seed ``seed + i``: the same request gives the same output.

Loading needs only the installed ``aigc`` package: the model is saved as code
(``aigc/serving/pyfunc_model.py``, nothing pickled) and its weights are read as tensors only.
``aigc.sample`` runs none of the model folder's code: it reads ``weights.pt`` itself.
"""

import importlib.metadata
import tempfile
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from aigc.common.stored import CONFIG_KEY
from aigc.serving.adapters import DIFFUSERS_FILE, KOHYA_FILE, adapters, write_adapters
from aigc.serving.generator import Generator, slim

WEIGHTS = "weights"  # the artifact's name; its file is artifacts/weights.pt in the model folder
MAX_IMAGES = 1024  # per request row: a server answers in seconds, not in out-of-memory
EXAMPLE_PROMPT = "a picture"  # a text-to-image model's input example

IMAGE_PARAMS = [ParamSpec("seed", "long", 0)]  # and the model's sampling options (image_params)
TEXT_PARAMS = [
    ParamSpec("max_new_tokens", "long", 200),
    ParamSpec("temperature", "double", 0.8),
    ParamSpec("top_k", "long", 200),
    ParamSpec("top_p", "double", None),
    ParamSpec("seed", "long", 0),
]


class GeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.generator = Generator.from_file(context.artifacts[WEIGHTS])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray | list[str]:
        return generate(self.generator, pd.DataFrame(model_input).to_dict("records"), params or {})


def image_params(generator: Generator) -> list[ParamSpec]:
    """The seed, and what else the model's drawing takes (a diffusion model's sampler, steps and
    guidance), each with the model's default."""
    types = {bool: "boolean", int: "long", float: "double", str: "string"}
    options = generator.sampling_options.items()
    return IMAGE_PARAMS + [ParamSpec(name, types[type(default)], default) for name, default in options]


def generate(generator: Generator, rows: list[dict], params: dict) -> np.ndarray | list[str]:
    """One request: images for every row, one after the other, or one text per row."""
    specs = image_params(generator) if generator.kind == "images" else TEXT_PARAMS
    unknown = sorted(set(params) - {spec.name for spec in specs})
    if unknown:
        raise ValueError(f"unknown params {unknown}: this model takes {[spec.name for spec in specs]}")
    options = {spec.name: _plain(params.get(spec.name, spec.default)) for spec in specs}
    seed = int(options.pop("seed"))
    if generator.kind == "images":
        counts = [int(row["num_samples"]) for row in rows]
        if any(not 0 < count <= MAX_IMAGES for count in counts):
            raise ValueError(f"num_samples must be between 1 and {MAX_IMAGES}, not {counts}")
        requests = [_request(row) for row in rows]
        drawn = [
            generator.images(count, seed=seed + index, **request, **options)
            for index, (count, request) in enumerate(zip(counts, requests, strict=True))
        ]
        return np.concatenate(drawn)
    return [generator.text(str(row["prompt"]), seed=seed + index, **options) for index, row in enumerate(rows)]


def _plain(value):
    """A param as Python's own type (MLflow may hand over numpy scalars)."""
    return value.item() if isinstance(value, np.generic) else value


def _request(row: dict) -> dict:
    """What a row asks to draw: a label, a prompt and a negative prompt, each where given."""
    request = {"label": _label(row)}
    for key in ("prompt", "negative_prompt"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and pd.isna(value)):
            request[key] = str(value)
    return request


def _label(row: dict) -> int | None:
    """A row's label: none given (or missing in a request where other rows give one: NaN) is None."""
    label = row.get("label")
    if label is None or pd.isna(label):
        return None
    if float(label) != int(label):
        raise ValueError(f"label={label}: a label is a whole number")
    return int(label)


def signature_and_example(generator: Generator) -> tuple[ModelSignature, tuple[pd.DataFrame, dict]]:
    if generator.kind == "images":
        request = {"prompt": EXAMPLE_PROMPT} if generator.takes_prompts else {}
        height, width, channels = generator.images(1, **request).shape[1:]
        columns = [ColSpec("long", "num_samples")]
        example = {"num_samples": [4]}
        if generator.takes_prompts:  # what to draw, and optionally what to steer away from
            columns += [ColSpec("string", "prompt"), ColSpec("string", "negative_prompt", required=False)]
            example["prompt"] = [EXAMPLE_PROMPT]
        if generator.num_classes:  # a class-conditional model: draw a label's images, or every class in turn
            # a whole number: give every row of a request a label, or none (MLflow reads a column
            # with gaps as floats, which it refuses for a long)
            columns.append(ColSpec("long", "label", required=False))
            example["label"] = [0]
        inputs, params = Schema(columns), ParamSchema(image_params(generator))
        outputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, height, width, channels))])
        example = pd.DataFrame(example), {"seed": 0}
    else:
        inputs, params = Schema([ColSpec("string", "prompt")]), ParamSchema(TEXT_PARAMS)
        outputs = Schema([ColSpec("string")])
        example = pd.DataFrame({"prompt": ["\n"]}), {"max_new_tokens": 20, "seed": 0}
    return ModelSignature(inputs=inputs, outputs=outputs, params=params), example


def save_pyfunc(checkpoint: dict, folder: Path, mlflow_model=None) -> Path:
    """Write the MLflow model folder for a checkpoint (already read, as ``read_checkpoint`` does)."""
    with tempfile.TemporaryDirectory() as staging:
        weights = Path(staging) / "weights.pt"
        kept = slim(checkpoint)
        torch.save(kept, weights)
        signature, example = signature_and_example(Generator.from_checkpoint(kept, "the run's weights"))
        artifacts = {WEIGHTS: str(weights)}
        if "unet" in adapters(kept["state_dict"]):  # LoRA adapters: also as the files diffusers and A1111 load
            config = kept[CONFIG_KEY]["model"]
            for form, name in (("diffusers", DIFFUSERS_FILE), ("kohya", KOHYA_FILE)):
                artifacts[f"lora_{form}"] = str(write_adapters(kept["state_dict"], config, form, Path(staging) / name))
        mlflow.pyfunc.save_model(
            folder,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
            mlflow_model=mlflow_model,
        )
    return Path(folder)


def requirements() -> list[str]:
    """The packages that load the model, at the versions it was saved with (aigc itself is installed from its repo)."""
    names = ["aigc", "torch", "lightning", "mlflow", "tokenizers", "hydra-core"]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]
