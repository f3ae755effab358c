"""The MLflow UI, in a real headless Chromium: a sweep's runs are there with their MLflow models,
and their comparison view shows the metric values the runs logged.

Needs Debian's chromium (/usr/bin/chromium; `.ci/run` installs it) and the playwright package
(never `playwright install`: it would download a browser). Without chromium the test is skipped,
unless AIGC_REQUIRE_BROWSER=1 (set by CI) makes that a failure.
"""

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import client_for
from tests.servers import MlflowServer

# the tests on the session's VAE sweep share one worker, so it runs once (--dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vae_sweep")]
CHROMIUM = Path("/usr/bin/chromium")
# quiet and offline: without these Chromium keeps trying to reach Google's hosts
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def mlflow_server(vae_sweep: Path):
    """`mlflow server` on the sweep's store, on a free loopback port."""
    server = MlflowServer(vae_sweep, backend=vae_sweep / "mlflow.db").start()
    yield server.url
    server.stop(signal.SIGTERM)


def test_mlflow_ui_compares_two_runs_of_a_sweep(vae_sweep: Path, mlflow_server: str, tmp_path: Path):
    if not CHROMIUM.exists():
        if os.environ.get("AIGC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    client = client_for(vae_sweep)
    runs = client.search_runs([client.get_experiment_by_name("vae-mnist").experiment_id])
    parent = next(run for run in runs if run.data.tags.get("aigc.sweep.role") == "parent")
    children = [run for run in runs if run is not parent]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            # the experiment is listed; its runs table shows the sweep as one parent run
            page.goto(f"{mlflow_server}/#/experiments")
            experiment_link = page.get_by_role("link", name="vae-mnist", exact=True)
            experiment_link.wait_for()
            page.goto(f"{mlflow_server}/{experiment_link.get_attribute('href')}/runs")
            page.get_by_text(parent.info.run_name).wait_for()
            # expand it, select its two child runs, and open their comparison
            page.get_by_role("row").filter(has_text=parent.info.run_name).get_by_role("button").first.click()
            # each job's MLflow model is in the runs table's Models column (the parent has none)
            models = page.locator("[role=gridcell][col-id='attributes.`Models`']")
            expect(models.filter(has_text="model")).to_have_count(len(children))
            for child in children:
                row = page.get_by_role("row").filter(has_text=child.info.run_name).first
                row.locator("input.ag-checkbox-input").check()
            page.get_by_role("button", name="Compare").click()
            expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
            for child in children:
                expect(page.get_by_text(child.info.run_id, exact=True)).to_be_visible()
                # the metrics grid shows each run's last value, to 4 significant digits
                shown = f"{child.data.metrics['val/elbo']:.4g}"
                value = page.get_by_text(shown, exact=True).first
                expect(value).to_be_visible()
            value.scroll_into_view_if_needed()  # for the screenshot
        finally:
            page.screenshot(path=str(tmp_path / "mlflow_compare.png"), full_page=True)
            browser.close()
    assert (tmp_path / "mlflow_compare.png").stat().st_size > 10_000
