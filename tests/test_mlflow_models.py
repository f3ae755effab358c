"""A run ends as an MLflow model: logged and linked to its run, loaded in a fresh process,
served over HTTP by `mlflow models serve`, registered with an alias, and sampled by
`python -m aigc.sample` from a run, a model URI or a checkpoint."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.artifacts
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.entities import LoggedModelStatus
from PIL import Image

from aigc.jobs.training import train
from aigc.sample import sample
from aigc.serving.generator import Generator
from aigc.serving.pyfunc import MAX_IMAGES, generate
from aigc.serving.registry import download_weights, model_of_run, register
from tests.conftest import CONF_DIR, all_runs, client_for, composed, run_aigc, user_env
from tests.servers import invoke, serve_model

# one worker trains the module's two runs (pytest -n 2 --dist loadgroup), not each
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained_models")]
GAN = ("model=gan", "debug=fast", "data.download=false", "metrics.inception=false", "register=gan-of-a-run")
LANGUAGE_MODEL = ("model=transformer", "data=pydocs", "debug=fast")
DIFFUSION = (  # a tiny class-conditional UNet: its model takes labels and sampling params
    *("model=diffusion", "model.net.channels=[8,16]", "model.net.norm_groups=4", "model.net.attention=false"),
    *("model.steps=4", "debug=fast", "trainer.max_epochs=1", "data.download=false", "metrics.inception=false"),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str, str]:
    """(folder, GAN run id, language model run id): two short runs in one store, the GAN's a
    command of its own, the language model's trained in this process."""
    folder = tmp_path_factory.mktemp("models")
    result = run_aigc(folder, *GAN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLflow model runs:/" in result.stdout and " MB, " in result.stdout  # its size and time, printed
    with composed("train", folder, *LANGUAGE_MODEL) as cfg:
        train(cfg)
    client = client_for(folder)
    runs = {run.data.params["model._target_"].rsplit(".", 1)[-1]: run.info.run_id for run in all_runs(client)}
    return folder, runs["GAN"], runs["LanguageModel"]


@pytest.fixture(scope="module")
def diffusion(trained) -> str:
    """The run id of a tiny diffusion model, trained in this process into the same store."""
    folder, *_ = trained
    with composed("train", folder, *DIFFUSION, "metrics.num_samples=20") as cfg:
        train(cfg)
    client = client_for(folder)
    (run,) = client.search_runs([client.get_experiment_by_name("diffusion-mnist").experiment_id])
    return run.info.run_id


def store(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def sample_cfg(folder: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=[f"tracking_uri={store(folder)}", *overrides])
    GlobalHydra.instance().clear()
    return cfg


def test_each_run_ends_with_one_mlflow_model_linked_to_it(trained):
    folder, *run_ids = trained
    client = client_for(folder)
    for run_id in run_ids:
        run = client.get_run(run_id)
        (model,) = [m for m in client.search_logged_models([run.info.experiment_id]) if m.source_run_id == run_id]
        assert model.name == "model" and model.status == LoggedModelStatus.READY
        assert [output.model_id for output in run.outputs.model_outputs] == [model.model_id]  # the UI's Models column
        mlmodel = mlflow.artifacts.download_artifacts(f"{model.artifact_location}/MLmodel", tracking_uri=store(folder))
        info = mlflow.models.Model.load(mlmodel)
        assert info.signature is not None and info.saved_input_example_info is not None


PREDICT = """
import json, sys, mlflow, numpy as np, pandas as pd
answers = []
for uri, rows, params in json.loads(sys.argv[1]):
    model = mlflow.pyfunc.load_model(uri)
    first, again = model.predict(pd.DataFrame(rows), params=params), model.predict(pd.DataFrame(rows), params=params)
    answers.append({"same": bool(np.array_equal(np.asarray(first), np.asarray(again))),
                    "value": np.asarray(first).tolist(), "dtype": str(np.asarray(first).dtype)})
print(json.dumps(answers))
"""


def predict_in_a_fresh_process(folder: Path, requests: list[tuple[str, list[dict], dict]], cwd: Path) -> list[dict]:
    """Load with MLflow's own API in a new interpreter, outside the repository: only the installed
    package. ``requests``: (model URI, rows, params), answered in turn, each twice."""
    env = user_env({"MLFLOW_TRACKING_URI": store(folder)})
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [sys.executable, "-c", PREDICT, json.dumps(requests)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_model_loads_in_a_fresh_process_and_a_seed_fixes_its_output(trained, tmp_path):
    folder, gan, language_model = trained
    params = {"max_new_tokens": 12, "seed": 1}
    requests = [
        (f"runs:/{gan}/model", [{"num_samples": 3}], {"seed": 7}),
        (f"runs:/{language_model}/model", [{"prompt": "def "}], params),
    ]
    images, text = predict_in_a_fresh_process(folder, requests, tmp_path)
    assert images["same"] and images["dtype"] == "uint8" and np.asarray(images["value"]).shape == (3, 28, 28, 1)
    assert text["same"] and len(text["value"]) == 1 and text["value"][0].startswith("def ")
    # the same as aigc.sample from the same weights and seed
    expected = sample(sample_cfg(folder, f"run_id={language_model}", "prompt='def '", "max_new_tokens=12", "seed=1"))
    assert text["value"][0] == expected


def test_mlflow_models_serve_answers_for_an_image_and_a_language_model(trained, diffusion, tmp_path):
    """The image model is the class-conditional diffusion model: a label in the rows, its sampling
    in the params; the same request gives the same images as the pyfunc model and aigc.sample."""
    folder, _, language_model = trained
    servers, ports, taken = [], {}, set()
    try:
        for run_id in (diffusion, language_model):
            server, ports[run_id] = serve_model(f"runs:/{run_id}/model", store(folder), tmp_path, taken)
            servers.append(server)
        urllib.request.urlopen(f"http://127.0.0.1:{ports[language_model]}/ping", timeout=10).close()
        sevens, params = [{"num_samples": 2, "label": 7}], {"seed": 5, "guidance": 2.0, "steps": 3}
        images = invoke(ports[diffusion], sevens, params)
        assert np.asarray(images).shape == (2, 28, 28, 1)
        assert images == invoke(ports[diffusion], sevens, params)
        assert images != invoke(ports[diffusion], sevens, params | {"seed": 6})
        assert images != invoke(ports[diffusion], [{"num_samples": 2, "label": 3}], params)
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{diffusion}/model").predict(pd.DataFrame(sevens), params=params)
        assert np.array_equal(np.asarray(images, dtype=np.uint8), pyfunc)
        out = tmp_path / "sevens.png"
        drawn = ("label=7", "num_samples=2", "seed=5", "guidance=2.0", "steps=3", f"out={out}")
        sample(sample_cfg(folder, f"run_id={diffusion}", *drawn))
        grid = np.asarray(Image.open(out).convert("L"))
        assert np.array_equal(grid[2:30, 2:30], pyfunc[0, :, :, 0])  # save_image's 2-pixel padding

        rows, params = [{"prompt": "class "}, {"prompt": "def "}], {"max_new_tokens": 10, "seed": 3}
        texts = invoke(ports[language_model], rows, params)
        assert len(texts) == 2 and texts[0].startswith("class ") and texts[1].startswith("def ")
        assert texts == invoke(ports[language_model], rows, params)
        assert invoke(ports[language_model], [{"prompt": "def "}], {"temperature": 0.0})[0].startswith("def ")
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def test_a_registered_alias_serves_aigc_sample_and_a_run_registers_itself(trained, tmp_path):
    folder, gan, language_model = trained
    registered = run_aigc(
        folder, f"run_id={language_model}", "name=pydocs-gpt", "alias=champion", module="aigc.register"
    )
    assert registered.returncode == 0, registered.stderr[-2000:]
    assert "models:/pydocs-gpt@champion" in registered.stdout
    client = client_for(folder)
    assert client.get_model_version_by_alias("pydocs-gpt", "champion").run_id == language_model
    assert client.get_model_version_by_alias("gan-of-a-run", "champion").run_id == gan  # register= at the run's end

    text = sample(sample_cfg(folder, "model_uri=models:/pydocs-gpt@champion", "prompt=import", "max_new_tokens=10"))
    assert text.startswith("import")
    out = tmp_path / "grid.png"
    grid = run_aigc(
        folder, "model_uri=models:/gan-of-a-run@champion", "num_samples=4", f"out={out}", module="aigc.sample"
    )
    assert grid.returncode == 0, grid.stderr[-2000:]
    assert Image.open(out).size == (2 * 28 + 3 * 2, 2 * 28 + 3 * 2)  # a 2 x 2 grid, 2-pixel padding
    # the same images from the checkpoint file and from the model
    checkpoint = client.list_artifacts(gan)  # best-epochNNN/ and last/
    assert any(artifact.path.startswith("best") for artifact in checkpoint)
    from_checkpoint = tmp_path / "from_checkpoint.png"
    sampled = sample(sample_cfg(folder, f"run_id={gan}", "checkpoint=best", "num_samples=4", f"out={from_checkpoint}"))
    assert str(from_checkpoint) in sampled and from_checkpoint.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (("model_uri=models:/no-such-model@champion",), LookupError, "no registered model named 'no-such-model'"),
        (("model_uri=models:/gan-of-a-run@nope",), LookupError, "has no alias 'nope' (its aliases: champion)"),
        (("model_uri=models:/gan-of-a-run/9",), LookupError, "has no version 9"),
        (("model_uri=s3://bucket/model",), ValueError, "is not a model URI"),
        (("model_uri=models:/gan-of-a-run@champion", "prompt=hello"), ValueError, "it takes no prompt"),
        (("run_id={language_model}", "num_samples=4"), ValueError, "num_samples is not for"),
        ((), ValueError, "say which model to sample"),
        (("run_id={gan}", "ckpt_path=x.ckpt"), ValueError, "say which model to sample, once"),
    ],
)
def test_bad_sampling_requests_are_refused_in_one_line(trained, overrides, error, message):
    folder, gan, language_model = trained
    overrides = [o.format(gan=gan, language_model=language_model) for o in overrides]
    with pytest.raises(error) as raised:
        sample(sample_cfg(folder, *overrides))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_run_without_a_model_and_a_store_that_does_not_exist_are_refused(trained, tmp_path):
    folder, *_ = trained
    client = client_for(folder)
    bare = client.create_run(client.get_experiment_by_name("gan-mnist").experiment_id).info.run_id
    client.set_terminated(bare)
    result = run_aigc(folder, f"run_id={bare}", module="aigc.sample")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert f"run {bare} has no MLflow model" in line and "checkpoint=best" in line
    with pytest.raises(LookupError, match="has no MLflow model"):
        register(client, bare, "x")
    missing = tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match="no MLflow store"):
        sample(sample_cfg(missing, "model_uri=models:/x@champion"))
    assert not (missing / "mlflow.db").exists()


def test_a_request_is_checked_before_anything_is_generated(trained, tmp_path):
    folder, gan, language_model = trained
    client = client_for(folder)
    images = Generator.from_file(download_weights(model_of_run(client, gan), tmp_path / "g", store(folder)))
    text = Generator.from_file(download_weights(model_of_run(client, language_model), tmp_path / "t", store(folder)))
    assert generate(images, [{"num_samples": 2}, {"num_samples": 1}], {"seed": 1}).shape[0] == 3
    # row i is seeded seed + i: the second row of a request is the first of the next seed's
    two_rows = generate(images, [{"num_samples": 1}, {"num_samples": 1}], {"seed": 4})
    assert np.array_equal(two_rows[1:], generate(images, [{"num_samples": 1}], {"seed": 5}))
    for rows, params, message in [
        ([{"num_samples": 0}], {}, "between 1 and"),
        ([{"num_samples": MAX_IMAGES + 1}], {}, "between 1 and"),
        ([{"num_samples": 2}], {"temperature": 0.5}, r"unknown params \['temperature'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            generate(images, rows, params)
    with pytest.raises(ValueError, match="unknown params"):
        generate(text, [{"prompt": "x"}], {"num_samples": 2})
    with pytest.raises(ValueError, match="generates text, not images"):
        text.images(2)
