"""`python -m aigc.play`'s page against `python -m aigc.sample`: how long the page takes to draw,
and to start.

    .venv/bin/python experiments/play.py [--pairs 3] [--threads 1] [--only first_image start breakdown]

The script trains a tiny diffusion model into a temporary folder first (the `TINY_DIFFUSION` run,
tests/test_play.py's fixture at the model's own 20 sampling steps: 3 batches, about a minute),
then measures three things, each A/B interleaved `--pairs` times (the order swapped every pair)
so that other load on the machine falls on both sides alike; tables give medians and the median
of the per-pair ratios.

1. First image (target: within 1.2x `aigc.sample`'s time for the same request, from a warm page).
   One `aigc.play` server is started and the page loaded in Debian's Chromium (/usr/bin/chromium,
   headless, driven by Playwright as tests/test_play.py drives it). The request's fields are
   filled in and Generate is pressed once, untimed (its time is reported as "the first Generate":
   the server's first drawing pays torch's first-call costs). Then, per pair, on this warm page:
   - page: from the Generate button's click (dispatched in the page, timed there with
     `performance.now()`) to the image element holding the new drawing's URL, loaded and decoded
     (`img.decode()`): Gradio's queue join, its result stream, the drawing, the PNG's fetch;
   - `aigc.sample`: the wall time of `python -m aigc.sample run_id=<id> <the same request>
     out=<file>`, the whole command (start, imports, the model's load, the drawing, exit);
   - in-process: `aigc.serving.page.draw`, the page's own drawing function (`Generator.images`
     and the PNG grid written), called in this process on the same weights, warmed up once: what
     the page costs beyond the drawing is the page's time less this one.
   The page's image and `aigc.sample`'s PNG are checked to be the same pixels every pair. The
   browser's resource timings split the page's time: the queue join sent and answered, the image
   asked for and loaded; and the arrival of the result stream's `process_starts` and
   `process_completed` messages (the page's fetch of Gradio's /queue/data is teed by a script
   added to the page, which stamps each message; the page reads its own copy as before): the
   server's job is the time between the two, to set against the in-process drawing. And the CPU
   time (psutil) the server and the browser's processes (Chromium, Playwright's driver) spent
   during the click: on 2 cores, the browser's rendering competes with the drawing.
   Two requests: small (label 3, 4 images, seed 5, 3 steps: the drawing is milliseconds) and
   large (every class in turn, 64 images, seed 0, 20 steps: the drawing dominates).
2. Start (target: at most 1.5x starting `aigc.sample`). From the launch of `python -m aigc.play
   run_id=<id> port=<p>` to the page answering HTTP 200 on `/` (polled every 50 ms), and to its
   "aigc.play: http://" line; against the whole wall time of `aigc.sample`'s small request (it
   starts, loads the model, draws, writes the PNG, exits); and `python -c "import gradio"` alone.
3. Where start-up goes: the same two commands' steps, timed in a fresh process that runs them as
   the commands do (`aigc.play.play` and `aigc.sample.sample` on a config composed by Hydra),
   each step's end stamped by wrapping the function that does it. Seconds from the launch.

`--threads N` sets OMP_NUM_THREADS for every process (this one, the servers, the commands), as
the tests do on a shared 2-core machine: with torch's default (a thread per core) on cores that
other jobs also use, each drawing waits on its busiest thread and small drawings took 10-20x
longer, on both sides alike. The servers' copies of what they show (GRADIO_TEMP_DIR) go to the
temporary folder. Prints the tables; writes experiments/play.md.
"""

import argparse
import io
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# quiet and offline (as tests/test_mlflow_ui.py launches it)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TINY_DIFFUSION = [
    "model=diffusion",
    "data=mnist",
    "data.download=false",
    "model.net.channels=[8,16]",
    "model.net.norm_groups=4",
    "debug=fast",
    "trainer.max_epochs=1",
    "metrics.num_samples=10",
    "metrics.inception=false",
    "callbacks.sample_grid.num_samples=10",
]
EVERY_CLASS = "every class in turn"  # aigc.serving.page.EVERY_CLASS: aigc.sample's label=null
# the two requests: (the page's fields, aigc.sample's overrides, aigc.serving.page.draw's request)
REQUESTS = {
    "small: label 3, 4 images, 3 steps": (
        {"label": "3", "num_samples": "4", "seed": "5", "steps": "3"},
        ["label=3", "num_samples=4", "seed=5", "steps=3"],
        {"label": "3", "num_samples": 4, "seed": 5, "steps": 3},
    ),
    "large: every class, 64 images, 20 steps": (
        {"label": EVERY_CLASS, "num_samples": "64", "seed": "0", "steps": "20"},
        ["num_samples=64", "seed=0", "steps=20"],
        {"label": EVERY_CLASS, "num_samples": 64, "seed": 0, "steps": 20},
    ),
}
SMALL = next(iter(REQUESTS))

# Added to the page before its own scripts: Gradio's result stream (a fetch of /queue/data, read
# as server-sent events) teed, each message's arrival stamped with performance.now() in
# window.__messages; the page reads its own copy of the stream as before.
STAMP_MESSAGES = """
window.__messages = [];
const pageFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await pageFetch(...args);
  const url = String((args[0] && args[0].url) || args[0]);
  if (!url.includes('/queue/data') || !response.body) return response;
  const [ours, theirs] = response.body.tee();
  (async () => {
    const reader = ours.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      const now = performance.now();
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf('\\n\\n')) >= 0) {
        const found = buffer.slice(0, cut).match(/"msg":\\s*"([a-z_]+)"/);
        if (found) window.__messages.push([now, found[1]]);
        buffer = buffer.slice(cut + 2);
      }
    }
  })();
  return new Response(theirs, {status: response.status, statusText: response.statusText, headers: response.headers});
};
"""
# In the page: click Generate, wait for the new image in #output-0 loaded and decoded; times in ms
# from the click, the resource timings of the round trips it made and the stream's messages.
CLICK_AND_WAIT = """async (previous) => {
  const button = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Generate');
  performance.clearResourceTimings();
  window.__messages = [];
  const t0 = performance.now();
  button.click();
  return await new Promise((resolve, reject) => {
    const deadline = t0 + 600000;
    const check = () => {
      const img = document.querySelector('#output-0 img');
      if (img && img.src && img.src !== previous && img.complete && img.naturalWidth > 0) {
        img.decode().then(() => {
          const shown = performance.now() - t0;
          const entries = performance.getEntriesByType('resource').map(e => ({
            name: e.name, start: e.startTime - t0, end: e.responseEnd - t0}));
          const messages = window.__messages.map(([at, msg]) => ({msg, at: at - t0}));
          resolve({shown, src: img.src, entries, messages});
        }, reject);
        return;
      }
      if (performance.now() > deadline) { reject(new Error('no new image in 600 s')); return; }
      setTimeout(check, 2);
    };
    check();
  });
}"""

# Start-up step by step: a fresh process runs the command's function with the functions that do
# each step wrapped to stamp their end (time.time(), as the parent's launch stamp).
STEPS_COMMON = """
import json, sys, time
marks = []
def mark(name):
    marks.append((name, time.time()))
def timed(name, function):
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        mark(name)
        return result
    return wrapper
mark("the interpreter started")
"""
PLAY_STEPS = (
    STEPS_COMMON
    + """
import aigc.play as command
from aigc.serving import generator, registry
from aigc.tracking.store import client as store
mark("import aigc.play (torch, Lightning, MLflow, Hydra)")
import gradio
from aigc.serving import page as page_module
mark("import gradio")
from hydra import compose, initialize_config_dir
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose("play", overrides=sys.argv[2:])
mark("compose the config (Hydra)")
# the command imports these where it uses them: wrapped in their own modules
store.open_store = timed("open the MLflow store", store.open_store)
registry.weights_named = timed("fetch the weights from the run", registry.weights_named)
generator.Generator.from_file = timed("load the model (Generator.from_file)", generator.Generator.from_file)
page_module.heading = timed("read the run's heading (metrics)", page_module.heading)
page_module.build = timed("build the page (gradio.Blocks)", page_module.build)
gradio.Blocks.launch = timed("launch the server (Blocks.launch)", gradio.Blocks.launch)
page = command.play(cfg, block=False)
mark("printed its address")
print("MARKS " + json.dumps(marks), flush=True)
page.close()
"""
)
SAMPLE_STEPS = (
    STEPS_COMMON
    + """
import aigc.sample as command
import torchvision.utils
from aigc.serving import generator, registry
mark("import aigc.sample (torch, Lightning, MLflow, Hydra)")
from hydra import compose, initialize_config_dir
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose("sample", overrides=sys.argv[2:])
mark("compose the config (Hydra)")
# the command imports these where it uses them: wrapped in their own modules
registry.weights_named = timed("fetch the weights from the run", registry.weights_named)
generator.Generator.from_file = timed("load the model (Generator.from_file)", generator.Generator.from_file)
generator.Generator.images = timed("draw (Generator.images)", generator.Generator.images)
torchvision.utils.save_image = timed("write the PNG", torchvision.utils.save_image)
print(command.sample(cfg))
mark("printed its line")
print("MARKS " + json.dumps(marks), flush=True)
"""
)


def env() -> dict:
    """A user's environment (the store is the folder's SQLite file, as the commands default to)."""
    return {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train(folder: Path) -> str:
    """The tiny diffusion run's id."""
    result = subprocess.run(
        [sys.executable, "-m", "aigc.run", *TINY_DIFFUSION],
        cwd=folder,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"MLflow run ([0-9a-f]{32})", result.stdout + result.stderr)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"training the tiny model failed:\n{result.stderr[-3000:]}")
    return found.group(1)


def sample_command(folder: Path, run_id: str, overrides: list[str], out: Path) -> float:
    """Wall seconds of `python -m aigc.sample run_id=<id> <overrides> out=<out>`."""
    command = [sys.executable, "-m", "aigc.sample", f"run_id={run_id}", *overrides, f"out={out}"]
    launched = time.monotonic()
    result = subprocess.run(command, cwd=folder, env=env(), capture_output=True, text=True, check=False)
    took = time.monotonic() - launched
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return took


def stop(process: subprocess.Popen) -> None:
    """Ctrl+C, as a person stops the page; then SIGTERM, then SIGKILL."""
    for how, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Play:
    """`python -m aigc.play run_id=<id> port=<free port>`, started and timed: seconds from the
    launch to HTTP 200 on / (``http``) and to its "aigc.play: http://" line (``line``)."""

    def __init__(self, folder: Path, run_id: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.output: list[str] = []
        self.line: float | None = None
        launched = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aigc.play", f"run_id={run_id}", f"port={self.port}"],
            cwd=folder,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        reader = threading.Thread(target=self._read, args=(launched,), daemon=True)
        reader.start()
        try:
            while True:
                try:
                    with urllib.request.urlopen(self.url, timeout=10) as answer:
                        if answer.status == 200:
                            self.http = time.monotonic() - launched
                            break
                except OSError:
                    pass
                if self.process.poll() is not None or time.monotonic() - launched > 600:
                    raise RuntimeError(f"aigc.play did not start:\n{''.join(self.output)[-3000:]}")
                time.sleep(0.05)
            deadline = time.monotonic() + 120
            while self.line is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.line is None:
                raise RuntimeError(f"aigc.play answered but printed no address:\n{''.join(self.output)[-3000:]}")
        except BaseException:
            stop(self.process)
            raise

    def _read(self, launched: float) -> None:
        for line in self.process.stdout:
            if self.line is None and line.startswith("aigc.play: http://"):
                self.line = time.monotonic() - launched
            self.output.append(line)

    def stop(self) -> None:
        stop(self.process)


def time_command(command: list[str], folder: Path) -> float:
    launched = time.monotonic()
    subprocess.run(command, cwd=folder, env=env(), capture_output=True, check=True)
    return time.monotonic() - launched


def median(values) -> float:
    return statistics.median(list(values))


def ratio(tops, bottoms) -> float:
    """The median of the per-pair ratios."""
    return median(top / bottom for top, bottom in zip(tops, bottoms, strict=True))


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


# ---------------------------------------------------------------------------------------------
# 1. the first image


def set_request(page, fields: dict) -> None:
    page.get_by_label("label").click()
    page.get_by_role("option", name=fields["label"], exact=True).click()
    for name in ("num_samples", "seed", "steps"):
        page.get_by_label(name).fill(fields[name])


def cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # gone since
            pass
    return total


def click_and_wait(page, previous: str | None, server_pid: int) -> dict:
    """The click's timings, and the CPU seconds the server and the browser (Chromium and
    Playwright's driver: every other process under this one) spent during it."""
    import psutil

    server = psutil.Process(server_pid)
    server_tree = [server, *server.children(recursive=True)]
    ids = {process.pid for process in server_tree}
    browser = [process for process in psutil.Process().children(recursive=True) if process.pid not in ids]
    before = cpu_seconds(server_tree), cpu_seconds(browser)
    shown = page.evaluate(CLICK_AND_WAIT, previous)
    shown["cpu"] = cpu_seconds(server_tree) - before[0], cpu_seconds(browser) - before[1]
    status = page.locator("#status").inner_text()
    if "Error" in status:
        raise RuntimeError(f"the page refused the request: {status}")
    return shown


def round_trips(shown: dict) -> dict:
    """ms from the click: the queue join sent and answered, the server's job started and its result
    in (the stream's process_starts and process_completed), the image asked for, loaded, shown."""
    join = next(e for e in shown["entries"] if "/queue/join" in e["name"])
    image = next(e for e in shown["entries"] if e["name"].endswith(".png"))
    messages = {message["msg"]: message["at"] for message in shown["messages"]}
    return {
        "join sent": join["start"],
        "join answered": join["end"],
        "job started": messages["process_starts"],
        "result in": messages["process_completed"],
        "image asked": image["start"],
        "image loaded": image["end"],
        "image shown": shown["shown"],
        "server CPU": shown["cpu"][0] * 1000,
        "browser CPU": shown["cpu"][1] * 1000,
    }


def pixels(data: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def first_image(folder: Path, run_id: str, pairs: int) -> tuple[list[str], dict]:
    from omegaconf import OmegaConf
    from playwright.sync_api import sync_playwright

    from aigc.serving.generator import Generator
    from aigc.serving.page import Column, draw
    from aigc.serving.registry import weights_named

    request = OmegaConf.create(
        {
            "run_id": run_id,
            "model_uri": None,
            "ckpt_path": None,
            "checkpoint": "model",
            "tracking_uri": f"sqlite:///{folder}/mlflow.db",
        }
    )
    weights = folder / "weights"
    weights.mkdir()
    path, source = weights_named(request, str(weights), "sample")
    columns = [Column(Generator.from_file(path, source))]
    drawn = folder / "drawn"
    drawn.mkdir()

    lines = [
        f"| request | page: click to the new image shown (median of {pairs}) | `aigc.sample` command "
        "| in-process `draw` | page / command (median of pairs) | page / in-process | page less in-process "
        "| the first Generate after the page loaded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    trips_lines = [
        "| request | queue join sent | join answered | job started (process_starts) "
        "| result in (process_completed) | image asked for | image loaded | image shown "
        "| the job (result in less started) | page less the job | in-process `draw` "
        "| CPU during the click: server | CPU: Chromium and Playwright |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    facts = {}
    server = Play(folder, run_id)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.add_init_script(STAMP_MESSAGES)
                page.set_default_timeout(120_000)
                loaded = time.monotonic()
                page.goto(server.url)
                page.get_by_role("button", name="Generate").wait_for()
                facts["page load"] = time.monotonic() - loaded
                for name, (fields, overrides, asked) in REQUESTS.items():
                    set_request(page, fields)
                    shown_now = page.evaluate("document.querySelector('#output-0 img')?.src ?? null")
                    first = click_and_wait(page, shown_now, server.process.pid)
                    previous = first["src"]
                    draw(columns, asked, drawn)  # this process's warm-up, as the page's first Generate
                    pages, commands, inprocess, trips = [], [], [], []
                    for pair in range(pairs):
                        out = folder / f"sample-{pair}.png"
                        order = ["page", "draw", "command"]
                        for side in order if pair % 2 == 0 else order[::-1]:
                            if side == "page":
                                shown = click_and_wait(page, previous, server.process.pid)
                                previous = shown["src"]
                                pages.append(shown["shown"] / 1000)
                                trips.append(round_trips(shown))
                                on_page = page.request.get(shown["src"]).body()
                            elif side == "draw":
                                started = time.perf_counter()
                                draw(columns, asked, drawn)
                                inprocess.append(time.perf_counter() - started)
                            else:
                                commands.append(sample_command(folder, run_id, overrides, out))
                        if not (pixels(on_page) == pixels(out.read_bytes())).all():
                            raise RuntimeError(f"{name}: the page's image is not aigc.sample's")
                        print(
                            f"  {name}, pair {pair + 1}: page {pages[-1]:.3f} s, command {commands[-1]:.2f} s, "
                            f"in-process {inprocess[-1]:.3f} s",
                            flush=True,
                        )
                    page_s, inprocess_s = median(pages), median(inprocess)
                    lines.append(
                        f"| {name} | {seconds(page_s)} | {seconds(median(commands))} | {seconds(inprocess_s)} "
                        f"| {ratio(pages, commands):.3f} | {ratio(pages, inprocess):.2f} "
                        f"| {seconds(median(p - d for p, d in zip(pages, inprocess, strict=True)))} "
                        f"| {seconds(first['shown'] / 1000)} |"
                    )
                    trips_lines.append(
                        f"| {name} | "
                        + " | ".join(f"{median(t[key] for t in trips):.0f} ms" for key in list(trips[0])[:7])
                        + f" | {median(t['result in'] - t['job started'] for t in trips):.0f} ms"
                        + f" | {median(t['image shown'] - t['result in'] + t['job started'] for t in trips):.0f} ms"
                        + f" | {inprocess_s * 1000:.0f} ms"
                        + f" | {median(t['server CPU'] for t in trips):.0f} ms"
                        + f" | {median(t['browser CPU'] for t in trips):.0f} ms |"
                    )
                    print(lines[-1], flush=True)
            finally:
                browser.close()
    finally:
        server.stop()
    return lines + [
        "",
        "The page's time split (ms from the click, medians): the round trips from the browser's resource "
        "timings and the result stream's messages; the job: the server's, from `process_starts` to "
        "`process_completed`; page less the job: what Gradio and the browser add to the drawing; CPU: "
        "the CPU time the server process and the browser's processes spent during the click.",
        "",
    ] + trips_lines, facts


# ---------------------------------------------------------------------------------------------
# 2. start


def start(folder: Path, run_id: str, pairs: int) -> list[str]:
    overrides = REQUESTS[SMALL][1]
    https, lines_at, samples, gradios = [], [], [], []
    for pair in range(pairs):
        order = ["play", "sample", "gradio"]
        for side in order if pair % 2 == 0 else order[::-1]:
            if side == "play":
                server = Play(folder, run_id)
                server.stop()
                https.append(server.http)
                lines_at.append(server.line)
            elif side == "sample":
                samples.append(sample_command(folder, run_id, overrides, folder / "start.png"))
            else:
                gradios.append(time_command([sys.executable, "-c", "import gradio"], folder))
        print(
            f"  start, pair {pair + 1}: aigc.play HTTP 200 {https[-1]:.2f} s, line {lines_at[-1]:.2f} s; "
            f"aigc.sample {samples[-1]:.2f} s; import gradio {gradios[-1]:.2f} s",
            flush=True,
        )
    lines = [
        f"| from the launch to | seconds (median of {pairs}) | `aigc.sample`, small request, whole command "
        "| ratio (median of pairs) |",
        "|---|---|---|---|",
        f"| `aigc.play`: HTTP 200 on `/` | {seconds(median(https))} | {seconds(median(samples))} "
        f"| {ratio(https, samples):.2f} |",
        f"| `aigc.play`: its `aigc.play: http://` line | {seconds(median(lines_at))} | {seconds(median(samples))} "
        f"| {ratio(lines_at, samples):.2f} |",
        f'| `python -c "import gradio"`: exit | {seconds(median(gradios))} | {seconds(median(samples))} '
        f"| {ratio(gradios, samples):.2f} |",
    ]
    for line in lines[2:]:
        print(line, flush=True)
    return lines


# ---------------------------------------------------------------------------------------------
# 3. where start-up goes


def steps_of(script: str, folder: Path, overrides: list[str]) -> list[tuple[str, float]]:
    """Each step's seconds (its end less the previous step's end; the first from the launch)."""
    launched = time.time()
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "conf"), *overrides],
        cwd=folder,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    found = [line for line in result.stdout.splitlines() if line.startswith("MARKS ")]
    if result.returncode != 0 or not found:
        raise RuntimeError(f"the timed start-up failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    marks = json.loads(found[0][len("MARKS ") :])
    ends = [launched] + [at for _, at in marks]
    return [(name, ends[i + 1] - ends[i]) for i, (name, _) in enumerate(marks)]


def breakdown(folder: Path, run_id: str, pairs: int) -> list[str]:
    store = f"tracking_uri=sqlite:///{folder}/mlflow.db"
    play_overrides = [f"run_id={run_id}", f"port={free_port()}", store]
    sample_overrides = [f"run_id={run_id}", *REQUESTS[SMALL][1], f"out={folder / 'steps.png'}", store]
    plays, samples = [], []
    for pair in range(pairs):
        order = ["play", "sample"]
        for side in order if pair % 2 == 0 else order[::-1]:
            if side == "play":
                plays.append(steps_of(PLAY_STEPS, folder, play_overrides))
            else:
                samples.append(steps_of(SAMPLE_STEPS, folder, sample_overrides))
        print(f"  steps, pair {pair + 1}: {plays[-1]} / {samples[-1]}", flush=True)
    names = list(dict.fromkeys([name for name, _ in plays[0]] + [name for name, _ in samples[0]]))
    names = (
        [names[0]]
        + [n for n in names[1:] if n.startswith("import aigc")]
        + [n for n in names[1:] if not n.startswith("import aigc")]
    )

    def cell(runs, name):
        values = [dict(run)[name] for run in runs if name in dict(run)]
        return seconds(median(values)) if values else ""

    lines = [
        f"| step | `aigc.play` (median of {pairs}) | `aigc.sample`, small request |",
        "|---|---|---|",
        *[f"| {name} | {cell(plays, name)} | {cell(samples, name)} |" for name in names],
        f"| **total** | {seconds(median(sum(s for _, s in run) for run in plays))} "
        f"| {seconds(median(sum(s for _, s in run) for run in samples))} |",
    ]
    for line in lines:
        print(line, flush=True)
    return lines


# ---------------------------------------------------------------------------------------------


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    units = "AMX" if "amx_tile" in flags else ("avx512_bf16, no AMX" if "avx512_bf16" in flags else "no AMX")
    return f"{model}, {os.cpu_count()} cores ({units}), no GPU"


def versions() -> str:
    from importlib.metadata import version

    import torch

    return (
        f"Python {platform.python_version()}, torch {version('torch')} ({torch.get_num_threads()} threads), "
        f"gradio {version('gradio')}, playwright {version('playwright')}, "
        f"{subprocess.run([str(CHROMIUM), '--version'], capture_output=True, text=True).stdout.strip()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=["first_image", "start", "breakdown"])
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for every process (this one, the servers, the commands); default: torch's own",
    )
    args = parser.parse_args()
    if args.threads:  # before anything imports torch (this script imports it inside its functions)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # this process's fetch of the weights
    parts = args.only or ["first_image", "start", "breakdown"]
    started, load_before = time.time(), os.getloadavg()
    sections = {}
    with tempfile.TemporaryDirectory(prefix="aigc-play-bench-") as name:
        folder = Path(name)
        os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")  # the servers' copies of what they show
        print("training the tiny diffusion model ...", flush=True)
        run_id = train(folder)
        facts = {}
        if "first_image" in parts:
            sections["first_image"], facts = first_image(folder, run_id, args.pairs)
        if "start" in parts:
            sections["start"] = start(folder, run_id, args.pairs)
        if "breakdown" in parts:
            sections["breakdown"] = breakdown(folder, run_id, args.pairs)
    load_after = os.getloadavg()
    header = [
        "# `aigc.play` against `aigc.sample`: the first image, and start-up",
        "",
        f"`.venv/bin/python experiments/play.py --pairs {args.pairs}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --only {' '.join(args.only)}" if args.only else "")
        + f"`, {date.today().isoformat()}, {machine()}, offline; {versions()}. "
        f"The run took {(time.time() - started) / 60:.0f} minutes; the load average (1 minute) was "
        f"{load_before[0]:.1f} at its start and {load_after[0]:.1f} at its end on 2 cores: other jobs shared "
        "the machine, which the A/B interleaving spreads over both sides (absolute times are inflated, "
        "the ratios are the result).",
        "",
        "The model: a tiny class-conditional diffusion model (`python -m aigc.run "
        + " ".join(TINY_DIFFUSION)
        + "`, UNet channels 8 and 16, DPM-Solver++), its MLflow model read from a SQLite store "
        "in a temporary folder. "
        "Definitions: the docstring of experiments/play.py.",
    ]
    body = []
    if "first_image" in sections:
        body += [
            "",
            "## The first image, from a warm page (target: within 1.2x `aigc.sample`)",
            "",
            "Warm: the page loaded in headless Chromium and one Generate of the same request already "
            "done (its time is the last column). Page: the click to the new image loaded and decoded "
            "in the image element. `aigc.sample` command: the wall time of `python -m aigc.sample "
            "run_id=<id> <request> out=x.png`. In-process: `aigc.serving.page.draw` (`Generator.images` "
            "and the PNG written) in this process, warm. The page's image is checked to be "
            f"`aigc.sample`'s, pixel for pixel. Loading the page took {facts.get('page load', 0):.2f} s.",
            "",
            *sections["first_image"],
        ]
    if "start" in sections:
        body += [
            "",
            "## Start-up (target: `aigc.play` at most 1.5x `aigc.sample`)",
            "",
            "From the launch of `python -m aigc.play run_id=<id> port=<p>` to HTTP 200 on `/` and to its "
            "address line, against the whole `python -m aigc.sample run_id=<id> label=3 num_samples=4 "
            'seed=5 steps=3 out=x.png`; and `python -c "import gradio"` alone, to its exit.',
            "",
            *sections["start"],
        ]
    if "breakdown" in sections:
        body += [
            "",
            "## Where start-up goes",
            "",
            "Each step's seconds, in a fresh process that runs `aigc.play.play` (and `aigc.sample.sample`) on "
            "a config composed by Hydra, as the commands do, with the function of each step wrapped to "
            "stamp its end (the first row: from the launch to the script's first line). `import gradio` "
            "comes after `import aigc.play` here, so it is what gradio adds beyond what both commands import.",
            "",
            *sections["breakdown"],
        ]
    text = "\n".join(header + body + ["", NOTES.strip(), ""])
    print("\n".join(body))
    Path(__file__).with_suffix(".md").write_text(text)


NOTES = """
## Verdict and suggestions

Written by hand from the tables above (a rerun changes the numbers, not the shape).
"""


if __name__ == "__main__":
    main()
