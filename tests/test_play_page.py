"""The page of `aigc.play` in this process, without a browser: its controls are read from the model,
a request too large for the machine is refused with the limit named, a diffusion model reports
every sampling step, sign-in is asked for when AIGC_PLAY_AUTH is set, and the command refuses
what it can't serve in one line."""

import urllib.error
import urllib.parse
import urllib.request

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from aigc.play import models_named, sign_in
from aigc.serving.generator import Generator
from aigc.serving.page import Column, build, controls, draw
from tests.conftest import composed

TINY = ("model=diffusion", "model.net.channels=[8,16]", "model.net.norm_groups=4", "model.steps=3")


@pytest.fixture
def column(compose_cfg) -> Column:
    model = instantiate(compose_cfg(*TINY).model, _convert_="all")
    return Column(Generator(model, source="the model", class_names=[f"digit {d}" for d in range(10)]))


def test_the_controls_are_the_models_own(column):
    fields = {control.name: control for control in controls(column.generator)}
    assert list(fields) == ["label", "num_samples", "seed", "sampler", "steps", "guidance"]
    assert fields["label"].choices[1:] == [f"digit {d}" for d in range(10)]  # by name, where the data named them
    assert fields["steps"].default == 3 and fields["steps"].integer and not fields["guidance"].integer
    assert fields["sampler"].choices == ["ddpm", "ddim", "dpm++"]  # those that sample its prediction, in a list


def test_a_request_too_large_is_refused_with_the_limit_named_and_progress_counts_every_step(column, tmp_path):
    with pytest.raises(ValueError, match=r"num_samples=10000: the page draws 1 to 1024 images a request"):
        draw([column, column], {"num_samples": 10_000, "seed": 0}, tmp_path)
    reported = []
    drawn = draw([column, column], {"num_samples": 2, "seed": 0, "label": "digit 3"}, tmp_path, reported.append)
    assert len(drawn) == 2 and all(path.endswith(".png") for path in drawn)
    assert reported == [(done, 6) for done in range(1, 7)]  # 3 steps a model, two models
    assert column.generator.model.progress is None


def test_sign_in_is_asked_for_when_auth_is_set(column, tmp_path):
    from tests.servers import free_port

    assert sign_in(None) is None and sign_in("me:pw,you:x:y") == [("me", "pw"), ("you", "x:y")]
    with pytest.raises(ValueError, match="AIGC_PLAY_AUTH must be user:password"):
        sign_in("me")
    page = build([column], None, tmp_path)
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, auth=[("me", "pw")], prevent_thread_lock=True, quiet=True)
    try:
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config")
        login = urllib.parse.urlencode({"username": "me", "password": "pw"}).encode()
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/login", data=login).status == 200
    finally:
        page.close()


def test_models_that_take_other_requests_are_not_put_side_by_side(column, compose_cfg, tmp_path):
    from tests.test_text_to_image import TINY as TEXT_TO_IMAGE

    prompted = Column(Generator(instantiate(compose_cfg(*TEXT_TO_IMAGE).model, _convert_="all"), source="the other"))
    with pytest.raises(ValueError, match="the other takes another request than the model: side by side"):
        build([column, prompted], None, tmp_path)
    with pytest.raises(ValueError, match="say which models to try, once"):
        models_named(OmegaConf.create({"run_id": None, "model_uri": None}))


def test_registered_models_are_named_on_the_command_line_as_aigc_sample_names_them(tmp_path):
    with composed("play", tmp_path, "model_uri=[models:/gan@champion,runs:/abc/model]") as cfg:
        named = models_named(cfg)
    assert [request["model_uri"] for request in named] == ["models:/gan@champion", "runs:/abc/model"]
    assert all(request["run_id"] is None for request in named)
