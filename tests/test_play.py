"""`python -m aigc.play`, driven in Debian's Chromium as a person would: two runs of a label model
side by side; a label picked and Generate pressed draws in each column what `aigc.sample` draws for
the same request; Keep puts the drawing and its request in the run; a bad value is one line on the
page, which then still draws. Skipped without chromium, unless AIGC_REQUIRE_BROWSER=1 (CI)."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aigc.jobs.training import train
from aigc.play import play
from aigc.sample import sample
from tests.conftest import all_runs, client_for, composed, only_run, user_env
from tests.servers import free_port
from tests.test_mlflow_ui import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow
TINY_DIFFUSION = (
    "model=diffusion",
    "data=mnist",
    "data.download=false",
    "model.net.channels=[8,16]",
    "model.net.norm_groups=4",
    "model.steps=2",
    "debug=fast",
    "trainer.max_epochs=1",
    "metrics.num_samples=10",
    "metrics.inception=false",
    "callbacks.sample_grid.num_samples=10",
)
# what the page asks and aigc.sample is given: a label, two images, seed 5, the model's sampler at 3 steps
REQUEST = {"label": "3", "num_samples": "2", "seed": "5", "steps": "3"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("play")
    for seed in (1, 2):
        with composed("train", folder, *TINY_DIFFUSION, f"seed={seed}") as cfg:
            train(cfg)
    return folder, sorted(run.info.run_id for run in all_runs(client_for(folder)))


@pytest.fixture
def page_url(two_runs):
    folder, run_ids = two_runs
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aigc.play", f"run_id=[{','.join(run_ids)}]", f"port={port}"],
        cwd=folder,
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = time.monotonic()
        for line in process.stdout:
            if line.startswith("aigc.play: http://127.0.0.1:"):
                break
        else:
            pytest.fail(f"aigc.play did not start (exit {process.wait()})")
        assert time.monotonic() - started < 120
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def browser_or_skip():
    if not CHROMIUM.exists():
        if os.environ.get("AIGC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")


def shown_image(page, column: int) -> np.ndarray:
    image = page.locator(f"#output-{column} img")
    image.wait_for()
    return np.asarray(Image.open(io.BytesIO(page.request.get(image.get_attribute("src")).body())).convert("RGB"))


def test_the_page_draws_what_aigc_sample_draws_side_by_side_keeps_it_and_refuses_bad_values(
    two_runs, page_url, tmp_path
):
    browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    folder, run_ids = two_runs
    client = client_for(folder)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(page_url)
            for run_id in run_ids:  # a column per run, headed by its name and its objective's value
                heading = page.get_by_text(client.get_run(run_id).info.run_name).first
                expect(heading).to_be_visible()
            expect(page.get_by_text("val/fid_mnist").first).to_be_visible()

            page.get_by_label("label").click()
            page.get_by_role("option", name=REQUEST["label"], exact=True).click()
            for name in ("num_samples", "seed", "steps"):
                page.get_by_label(name).fill(REQUEST[name])
            page.get_by_role("button", name="Generate").click()
            drawn = [shown_image(page, column) for column in (0, 1)]

            page.get_by_role("button", name="Keep").click()
            expect(page.locator("#status")).to_contain_text("Kept play/")

            page.get_by_label("guidance").fill("-1")
            page.get_by_role("button", name="Generate").click()
            status = page.locator("#status")
            expect(status).to_contain_text("Error: guidance=-1: give a number at least 0")
            assert "Traceback" not in status.inner_text() and "\n" not in status.inner_text().strip()
            page.screenshot(path=str(tmp_path / "refused.png"))

            page.get_by_label("guidance").fill("1")
            page.get_by_role("button", name="Generate").click()
            expect(status).not_to_contain_text("Error")
            again = shown_image(page, 0)
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            if shots := os.environ.get("AIGC_PLAY_SCREENSHOTS"):  # to look at by eye, and for the README
                page.screenshot(path=str(Path(shots) / "play.png"), full_page=True)
        finally:
            browser.close()

    for run_id, image in zip(run_ids, drawn, strict=True):
        out = tmp_path / f"{run_id}.png"
        store = f"sqlite:///{folder}/mlflow.db"
        asked = [f"{key}={value}" for key, value in REQUEST.items()]
        with composed("sample", folder, f"run_id={run_id}", f"tracking_uri={store}", *asked, f"out={out}") as cfg:
            sample(cfg)
        assert np.array_equal(image, np.asarray(Image.open(out).convert("RGB")))  # aigc.sample's grid, exactly
    assert np.array_equal(again, drawn[0])  # guidance 1 is the model's default: the same drawing
    kept = {Path(artifact.path).suffix for artifact in client.list_artifacts(run_ids[0], "play")}
    assert kept == {".png", ".json"}


def test_a_language_models_page_continues_a_typed_prompt_as_aigc_sample_does(tmp_path):
    browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with composed("train", tmp_path, "model=lstm", "data=pydocs", "debug=fast") as cfg:
        train(cfg)
    run_id = only_run(client_for(tmp_path)).info.run_id
    asked = {"max_new_tokens": "20", "temperature": "0"}
    with composed("sample", tmp_path, f"run_id={run_id}", "prompt=The", *(f"{k}={v}" for k, v in asked.items())) as cfg:
        expected = sample(cfg)
    with composed("play", tmp_path, f"run_id={run_id}", f"port={free_port()}") as cfg:
        served = play(cfg, block=False)  # the command's page, served from this process
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            try:
                page.goto(served.local_url)
                page.get_by_label("prompt").fill("The")
                for name, value in asked.items():
                    page.get_by_label(name).fill(value)
                page.get_by_role("button", name="Generate").click()
                text = page.locator("#output-0 textarea")
                expect(text).not_to_have_value("")
                assert text.input_value() == expected and expected.startswith("The") and len(expected) > len("The")
            finally:
                browser.close()
    finally:
        served.close()
