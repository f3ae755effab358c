"""A command line that can't train ends in one clear line, a non-zero exit and no MLflow run.

Many override sets are fuzzed in-process (hypothesis: wrong types, ranges, unknown keys and
options, unicode, huge values, mismatched model and data); a few go through the real entry
point end to end. A monitor (objective, checkpoint, early stopping) that nothing logs and a
resume of a run the store lacks are refused by ``train`` itself, tested in-process too.
"""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from aigc.common.errors import RunNotFound, one_line
from aigc.config.validation import ConfigError, check_monitors, validate
from aigc.jobs.training import USER_ERRORS, build_training, train
from aigc.models.gan import GAN
from tests.conftest import (
    CONF_DIR,
    MODELS,
    all_runs,
    client_for,
    composed,
    fitting_data,
    leaves,
    model_overrides,
    model_yaml,
    run_aigc,
)

# keys a user sets whatever the model; each model's own come from its config (model_keys)
SHARED_KEYS = [
    "trainer.max_epochs",
    "trainer.devices",
    "trainer.precision",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "trainer.gradient_clip_val",
    "data.batch_size",
    "data.num_workers",
    "metrics.num_samples",
    "metrics.every_n_epochs",
    "metrics.num_prompts",
    "callbacks.sample_grid.num_samples",
    "callbacks.sample_grid.every_n_epochs",
    "callbacks.reconstruction_grid.num_images",
    "callbacks.float32_matmul_precision.precision",
    "seed",
]


def model_keys(model: str) -> list[str]:
    """Every value conf/model/<model>.yaml sets, and those of the data it trains on."""
    data_config = OmegaConf.to_container(
        OmegaConf.load(CONF_DIR / "data" / f"{fitting_data(model)}.yaml"), resolve=False
    )
    return [f"model.{key}" for key, value in leaves(model_yaml(model)) if value != "???"] + [
        f"data.{key}" for key, _ in leaves(data_config)
    ]


MODEL_KEYS = {model: model_keys(model) for model in MODELS}

values = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2, 3, 10**6, 2**63, 1e8, 0.5, -0.5, 1.5, float("inf"), float("nan")]),
    st.booleans(),
    st.sampled_from(["abc", "null", "''", "[1,2]", "[]", "{a: 1}", "é", "日本語", "1e-3", "'3'"]),
)


def compose_or_error(tmp_path: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    except Exception as error:  # Hydra's own rejection: the entry point prints it as one line
        return None, error
    finally:
        GlobalHydra.instance().clear()
    HydraConfig().set_config(cfg)
    return cfg, None


@st.composite
def override_sets(draw) -> list[str]:
    model = draw(st.sampled_from(MODELS))
    fitting, *required = model_overrides(model)[1:]
    data = draw(st.sampled_from([fitting, fitting, "data=mnist", "data=pydocs", "data=cifar10", "data=nope"]))
    keys = draw(st.lists(st.sampled_from(SHARED_KEYS + MODEL_KEYS[model]), min_size=1, max_size=3, unique=True))
    overrides = [f"model={model}", data, *required]
    for key in keys:
        value = draw(values)
        overrides.append(f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}")
    if draw(st.booleans()):
        overrides.append(
            draw(
                st.sampled_from(
                    ["+model.unknown=1", "+data.typo=2", "trainer.max_epoch=3", "+trainer.limit_train_batches=0"]
                )
            )
        )
    return overrides


# derandomized: CI runs the same examples as every other machine (a wider random search found the
# cases of test_known_bad_override_sets_are_refused_with_what_fits)
@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(overrides=override_sets())
def test_every_override_set_is_accepted_and_builds_or_is_refused_in_one_line(tmp_path, overrides):
    cfg, error = compose_or_error(tmp_path, overrides)
    if error is None:
        try:
            validate(cfg)
        except ConfigError as refused:
            error = refused
    if error is not None:
        line = one_line(error)
        assert line and "\n" not in line and "Traceback" not in line
        return
    try:
        # what validation accepts, builds (or is refused as too large for this machine)
        job = build_training(cfg)
        # and monitors what it logs (data.fid_metric=abc is the objective: refused here)
        check_monitors(cfg, job.model, job.datamodule, job.trainer.callbacks)
    except ConfigError as refused:
        reasons = ("needs more memory than this machine has", "nor a callback logs it")
        assert any(reason in str(refused) for reason in reasons) and "\n" not in str(refused), refused
    except Exception as failed:
        pytest.fail(f"validated, but building failed: {overrides}: {type(failed).__name__}: {failed}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': input should be a valid integer"),
        (
            ["metrics.num_samples=0"],
            "callbacks.image_metrics.num_samples=0 (from ${metrics.num_samples}): "
            "input should be greater than or equal to 10",
        ),
        (
            ["callbacks.sample_grid.every_n_epochs=0"],
            "callbacks.sample_grid.every_n_epochs=0: input should be greater than 0",
        ),
        (
            ["model=transformer", "data=pydocs", "data.block_size=0"],
            "data.block_size=0: input should be greater than 0",
        ),
        (
            ["model=transformer", "data=mnist"],
            "model=transformer needs data.block_size (model.net.block_size), which data=mnist does not have: "
            "use data=pydocs|shakespeare|text",
        ),
        (
            ["model=gan", "data=shakespeare"],
            "model=gan needs data.image_shape (model.generator.image_shape), which data=shakespeare does not have: "
            "use data=cifar10|fashion_mnist|image_folder|mnist|shapes",
        ),
        (
            ["model=text_to_image", "data=mnist"],
            "model=text_to_image needs data.captions (model.captions), which data=mnist does not have: "
            "use data=image_folder|shapes",
        ),
        (["model=vae", "model.beta=-1"], "model.beta=-1: input should be greater than or equal to 0"),
        (
            ["callbacks.preemption.signal=SIGFOO"],
            "callbacks.preemption: preemption signal 'SIGFOO': give a signal's name, e.g. SIGUSR1 or SIGTERM",
        ),
        (  # found by the fuzz below: it passed validation and failed building, in two lines
            ["model=vae", "model.encoder.latent_dim=1"],
            "model: model.encoder.latent_dim=1 but model.latent_dim=16: "
            "set model.latent_dim only (the nets interpolate it)",
        ),
        (["model.generator.latent_dim=0"], "model.generator.latent_dim=0: input should be greater than 0"),
        (
            ["debug=fast", "trainer.limit_train_batches=0"],
            "trainer.limit_train_batches=0: input should be greater than 0",
        ),
        (["data.batch_size=1e8"], "data.batch_size=100000000.0: input should be a valid integer"),
        (["data.batch_size=" + "9" * 30], "data.batch_size is a 30-digit number: whole numbers must fit in 64 bits"),
        (["trainer.devices=99"], "trainer.devices=99: this machine has"),
        (["trainer.devices=abc"], "trainer.devices='abc': "),
        (["trainer.devices=0"], "trainer.devices=0: give a number of devices, -1 (all there are) or auto"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0: should be at least 1 (or -1: no limit); 0 trains nothing"),
        (["+model.foo=1"], "model.foo: GAN takes no argument 'foo'"),
        (["model.loss._target_=nope.Nope"], "model.loss._target_='nope.Nope': no such class"),
        (
            ["model=lstm", "data=pydocs", "model.net.cell=xyz"],
            "model.net.cell='xyz': input should be 'lstm', 'gru' or 'rnn'",
        ),
        (
            ["model=hf_causal_lm", "data=pydocs"],
            "model.pretrained has no value (??? in its config): add model.pretrained=<value> to the command",
        ),
        (
            ["model=hf_causal_lm", "data=pydocs", "model.pretrained=gpt2", "model.lora.rank=0"],
            "rank: input should be greater than 0",
        ),
        (
            ["model=transformer", "data=pydocs", "data/tokenizer=pretrained"],
            "data=pydocs needs model.pretrained (data.tokenizer.pretrained), which model=transformer does not have",
        ),
        (["register=a/b"], "register='a/b': a registered model's name is letters, digits"),
        (["register=best", "logger.mlflow.pyfunc=false"], "register= needs the run's MLflow model"),
        (["register=best", "logger=none"], "register= needs the run's MLflow model"),
        (["model.optimizer_g.lr=1e999"], "model.optimizer_g.lr=inf: input should be a finite number"),
        (["model=vae", "model.optimizer.lr=nan"], "model.optimizer.lr=nan: input should be a finite number"),
        (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1: input should be greater than or equal to 0"),
        (
            ["model=transformer", "data=pydocs", "model.net.n_head=3"],
            "model.net: n_embd=128 must be divisible by n_head=3",
        ),
        (
            ["model=lstm", "data=pydocs", "model.scheduler.warmup_steps=5000"],
            "model.scheduler: decay_steps=2000 must be greater than warmup_steps=5000",
        ),
        (["model=diffusion", "model.steps=-1"], "model.steps=-1: input should be greater than 0"),
        (["model=diffusion", "model.guidance=-0.5"], "model.guidance=-0.5: input should be greater than or equal to 0"),
        (["model=diffusion", "model.sampler=heun"], "model.sampler='heun': input should be 'ddpm', 'ddim', 'dpm++'"),
        (
            ["model=diffusion", "model.prediction=flow"],
            "model: sampler=dpm++ does not sample a model of prediction=flow: use euler",
        ),
        (["model=diffusion", "model.label_dropout=1.5"], "model.label_dropout=1.5: input should be less than or"),
        (
            ["model=diffusion", "model.net.channels=[30,64,64]"],
            "model.net: every width of channels=[30, 64, 64] must be a multiple of norm_groups=16",
        ),
        (
            ["model=diffusion", "model.net.channels=[16,32,32,64]"],
            "model.net: channels has 4 levels, which halve the image 3 times: its sides [28, 28] must be divisible",
        ),
        (["model=diffusion", "data.num_classes=0"], "data.num_classes=0: input should be greater than 0"),
        (
            ["model=stable_diffusion", "data=shapes", "model.pretrained=x", "model.snr_gamma=0"],
            "model.snr_gamma=0: input should be greater than 0",
        ),
        (
            ["model=stable_diffusion", "data=shapes", "model.pretrained=x", "model.peft=qlora"],
            "model.peft='qlora': input should be 'lora' or 'none'",
        ),
        (
            [
                "model=stable_diffusion",
                "data=shapes",
                "model.pretrained=x",
                "model.peft=none",
                "model.text_encoder_lora=true",
            ],
            "model: model.text_encoder_lora=true needs model.peft=lora",
        ),
        (
            ["model=stable_diffusion", "data=mnist", "model.pretrained=x"],
            "model=stable_diffusion needs data.captions (model.captions), which data=mnist does not have",
        ),
        (
            [
                "model=stable_diffusion",
                "data=image_folder",
                "data.path=x",
                "model.pretrained=x",
                "data.resolution=100",
                "data.buckets=true",
            ],
            "data.resolution=100 is not a multiple of 64",
        ),
        (
            ["model.optimizer_g._target_=os.getcwd"],
            "model.optimizer_g._target_='os.getcwd' is a builtin_function_or_method, not a class",
        ),
    ],
)
def test_known_bad_override_sets_are_refused_with_what_fits(tmp_path, overrides, message):
    cfg, error = compose_or_error(tmp_path, overrides)
    assert error is None, error
    with pytest.raises(ConfigError) as refused:
        validate(cfg)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.slow
def test_the_entry_point_refuses_bad_commands_in_one_line_and_creates_no_run(tmp_path):
    # a few of each kind (the rest are checked in this process above): refused by Hydra, by
    # validation, and once the data is loaded
    cases = [
        ["data.batch_size=" + "9" * 20000],
        ["model.foo=1"],  # Hydra's own refusal, made one line
        ["model=nope"],
        ["model.generator.latent_dim=½"],
        ["data.batch_size=100000", "data.download=false"],  # refused once the data is loaded: no full batch
        ["model=transformer", "data=pydocs", "model.net.n_head=3"],  # once opened a run, then failed it
        ["resume=0123456789abcdef0123456789abcdef"],  # a run the store lacks: once a traceback line too
        ["model=hf_causal_lm", "model.pretrained=gpt2", "data=mnist"],  # Hydra's words, and what to do (last)
    ]
    for overrides in cases:
        result = run_aigc(tmp_path, *overrides, timeout=120)
        assert result.returncode == 1, (overrides, result.stderr[-2000:])
        # the one line, and nothing the libraries print above it
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:"), (overrides, lines)
    assert "this model trains on text: add data=<a text dataset>" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() or all_runs(client_for(tmp_path)) == []


def test_a_net_too_large_for_this_machine_is_refused_in_one_line(tmp_path):
    cfg, error = compose_or_error(tmp_path, ["model.discriminator.width=100000", "logger=none"])
    validate(cfg)  # a valid width, for a larger machine
    with pytest.raises(
        ConfigError, match=r"^model.discriminator needs more memory than this machine has \(\d+\.\d GiB\)"
    ):
        build_training(cfg)


def check_monitors_of(tmp_path: Path, overrides: list[str]) -> None:
    """Composed, validated and built as ``aigc.run`` does, then what the run monitors checked."""
    cfg, error = compose_or_error(tmp_path, ["logger=none", *overrides])
    assert error is None, error
    validate(cfg)
    job = build_training(cfg)
    check_monitors(cfg, job.model, job.datamodule, job.trainer.callbacks)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["callbacks.model_checkpoint.monitor=val/does_not_exist"],
            "callbacks.model_checkpoint.monitor=val/does_not_exist: neither the model (GAN) nor a callback logs it; "
            "this run logs val/loss_d, val/loss_g, val/fid, val/is, val/kid, val/fid_mnist, ",
        ),
        (
            ["objective.metric=val/nope"],
            "objective.metric=val/nope: neither the model (GAN) nor a callback logs it; this run logs val/loss_d, ",
        ),
        (["objective.metric=val/nope"], "set objective.metric to one of them (the default: conf/objective/gan.yaml)"),
        # the label accuracy of an unconditional model: not logged
        (["objective.metric=val/acc_mnist"], "objective.metric=val/acc_mnist: neither the model (GAN)"),
        # the Inception FID, turned off
        (
            ["model=vae", "metrics.inception=false", "callbacks=[default,early_stopping]"]
            + ["callbacks.early_stopping.monitor=val/fid"],
            "callbacks.early_stopping.monitor=val/fid: neither the model (VAE) nor a callback logs it",
        ),
        (
            ["model=transformer", "data=pydocs", "objective.metric=val/fid_mnist"],
            "objective.metric=val/fid_mnist: neither the model (LanguageModel) nor a callback logs it; "
            "this run logs val/loss, val/ppl, val/bleu, val/rouge1, val/rouge2, val/rougeL, train/loss, ",
        ),
    ],
)
def test_a_monitor_that_nothing_logs_is_refused_with_what_the_run_logs(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as refused:
        check_monitors_of(tmp_path, overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("model", MODELS)
def test_every_family_logs_what_its_objective_and_checkpoints_monitor(tmp_path, model):
    check_monitors_of(tmp_path, model_overrides(model))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.num_classes=10", "objective.metric=val/acc_mnist"],  # a conditional model's label accuracy
        ["model=transformer", "data=pydocs", "objective.metric=val/rougeL", "objective.mode=max"],
        ["callbacks.model_checkpoint.monitor=lr-Adam"],  # a name known only once the optimizers are built
        ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=max"],
    ],
    ids=str,
)
def test_a_monitor_that_the_model_or_a_callback_logs_is_accepted(tmp_path, overrides):
    check_monitors_of(tmp_path, overrides)


def test_a_model_family_that_declares_no_metrics_is_not_checked(tmp_path, monkeypatch):
    """A new family without ``logged_metrics`` trains as before: nothing to check a monitor against."""
    monkeypatch.delattr(GAN, "logged_metrics")
    check_monitors_of(tmp_path, ["callbacks.model_checkpoint.monitor=val/does_not_exist"])


def test_training_refuses_a_monitor_that_nothing_logs_before_any_run_exists(tmp_path):
    with composed("train", tmp_path, "callbacks.model_checkpoint.monitor=val/does_not_exist", "debug=fast") as cfg:
        with pytest.raises(ConfigError, match=r"^callbacks.model_checkpoint.monitor=val/does_not_exist: "):
            train(cfg)
    assert not (tmp_path / "mlflow.db").exists() or all_runs(client_for(tmp_path)) == []


def test_resuming_a_run_the_store_lacks_is_the_users_error_and_opens_no_run(tmp_path):
    missing = "0123456789abcdef0123456789abcdef"
    with composed("train", tmp_path, f"resume={missing}", "debug=fast") as cfg:
        with pytest.raises(RunNotFound) as refused:
            train(cfg)
    # aigc.run prints a user's error as its one line, without the traceback line of a failure
    assert isinstance(refused.value, USER_ERRORS)
    assert str(refused.value).startswith(f"MLflow run {missing} (resume={missing}) is not in the store sqlite:///")
    assert "point logger.mlflow.tracking_uri= (or MLFLOW_TRACKING_URI) at the store" in str(refused.value)
    assert all_runs(client_for(tmp_path)) == []
