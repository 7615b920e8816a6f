"""The notebooks' widgets in a real browser: JupyterLab, headless Chromium, driven by Playwright.

The module starts JupyterLab on a free port with a token (smoke mode, on copies of notebooks 03
and 04 in a temporary folder, so the repository's notebooks stay clean), opens each notebook, runs
all cells, then moves the panels' controls as a user would and checks that the panels' outputs
follow. It stops the server and its kernels by their process ids, also when a test fails.

Needs Playwright (the dev extra) and a Chromium: `apt-get install chromium-headless-shell` on
Debian (`make test` installs it as root), or point KANGAROO_LAB_CHROMIUM at any Chromium or Chrome binary.
Playwright's own browser download is not used.

Screenshots of both panels go to $KANGAROO_LAB_SCREENSHOTS (default outputs/screenshots/), and a
full-page screenshot of the browser goes there when a test fails. To refresh the README's pictures:
    KANGAROO_LAB_SCREENSHOTS=figures/screenshots pytest -q tests/test_browser.py
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from kangaroo_lab import explore, plots, widgets

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # the `browser` fixture fails and says what to install
    sync_playwright = None

# one JupyterLab and one browser for both tests: under pytest-xdist (`make test`) both run in one process
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "figures" / "data"
SHOTS = Path(os.environ.get("KANGAROO_LAB_SCREENSHOTS", ROOT / "outputs" / "screenshots"))
NB_ETA = "03_confidence_distributions.ipynb"
NB_STEP = "04_double_early_exit_step_by_step.ipynb"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
INSTALL_BROWSER = (
    "no Chromium found for the browser test. Install one: `apt-get install chromium-headless-shell` "
    "(Debian, as root; `make test` does this), or set KANGAROO_LAB_CHROMIUM=/path/to/chromium"
)
INSTALL_PLAYWRIGHT = "Playwright is missing: pip install -e '.[dev]' (or pip install playwright)"

# Generous limits for a busy 2-core machine. The waits end as soon as their condition holds.
SERVER_START_S = 120
RUN_ALL_S = 420  # notebook 04 loads the embedded model: ~40 s the very first time (GGUF -> cached copy)
STEP_S = 120  # one widget interaction: the kernel recomputes (a figure, or a generation) and the page redraws


# ------------------------------------------------------------------------------------ the browser
def chromium_path() -> str:
    path = os.environ.get("KANGAROO_LAB_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(INSTALL_BROWSER if not path else f"KANGAROO_LAB_CHROMIUM={path} is not an executable file")
    return path


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail(INSTALL_PLAYWRIGHT)
    path = chromium_path()
    with sync_playwright() as pw:
        # as root, Chromium's sandbox cannot start; the page is our own local server
        chrome = pw.chromium.launch(executable_path=path, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield chrome
        chrome.close()


# ------------------------------------------------------------------------------------ the server
@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(pid: int) -> None:
    """Stop a process and every descendant (kernels run in their own sessions, so not by group)."""
    try:
        top = psutil.Process(pid)
        family = [top] + top.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=20)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("lab")
    (home / "notebooks").mkdir()
    for name in (NB_ETA, NB_STEP):
        shutil.copy(ROOT / "notebooks" / name, home / "notebooks" / name)
    # a private config: no announcement pop-up, no saved workspace, no user settings leak in
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = {
        **os.environ,
        "KANGAROO_LAB_SMOKE": "1",
        "KANGAROO_LAB_DATA": str(DATA_DIR),
        "KANGAROO_LAB_OUT": str(home / "outputs"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    env.pop("KANGAROO_LAB_DEVICE", None)
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={home}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = home / "jupyterlab.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    it = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        wait_for_server(it, server)
        yield it
    finally:
        stop(server.pid)


def wait_for_server(lab: Lab, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    request = urllib.request.Request(f"{lab.url}/api/status", headers={"Authorization": f"token {lab.token}"})
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # poll interval
    pytest.fail(f"JupyterLab did not answer on {lab.url} within {SERVER_START_S} s:\n{lab.log_tail()}")


# ------------------------------------------------------------------------------------ a notebook in the page
KERNEL_STATUS = """() => {
  const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
  return kernel ? kernel.status : null;
}"""

# where "run all" is: cells not yet executed, errors (with the cell's index), the kernel's status
RUN_STATE = """() => {
  const nb = window.jupyterapp.shell.currentWidget;
  const state = {status: nb.sessionContext.session.kernel.status, waiting: [], errors: []};
  nb.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    if (cell.model.executionCount === null) state.waiting.push(i);
    for (const out of cell.model.outputs.toJSON())
      if (out.output_type === 'error') state.errors.push({cell: i, ename: out.ename, evalue: out.evalue,
        traceback: (out.traceback || []).join('\\n').replace(/\\u001b\\[[0-9;]*m/g, '')});
  });
  return state;
}"""


# the SHA-256 of the bytes an <img> shows (ipywidgets sends the PNG and shows it as a blob: URL)
BLOB_SHA256 = """async img => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)))
    .map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def wait_until(page, condition: str, arg=None, what: str = "", locator=None) -> None:
    """Wait for a JavaScript condition; on time-out, fail saying what was awaited and what `locator` shows."""
    try:
        page.wait_for_function(condition, arg=arg, timeout=STEP_S * 1000)
    except PlaywrightTimeout:
        shows = f"; it shows: {flat(locator.inner_text())[:500]!r}" if locator is not None else ""
        pytest.fail(f"waited {STEP_S} s for {what or condition}{shows}")


def wait_idle(page, after: str, quiet_s: float = 1.0) -> None:
    """Wait until the kernel has been idle for `quiet_s` in a row.

    The kernel goes busy for each widget message it handles, and the page sends a slider's changes
    one at a time (the next once the kernel is done with the previous), so a single idle reading
    can fall between two of them."""
    deadline, since = time.monotonic() + STEP_S, None
    while time.monotonic() < deadline:
        now = time.monotonic()
        idle = page.evaluate(KERNEL_STATUS) == "idle"
        since = (now if since is None else since) if idle else None
        if since is not None and now - since >= quiet_s:
            return
        page.wait_for_timeout(100)  # poll interval
    pytest.fail(f"the kernel was still busy {STEP_S} s after {after}")


def wait_text(page, locator, text: str, what: str) -> None:
    """Wait until `locator`'s text contains `text` (white space collapsed)."""
    wait_until(
        page,
        "([el, text]) => el.innerText.split(/\\s+/).join(' ').includes(text)",
        arg=[locator.element_handle(), text],
        what=f"{what}: {text!r}",
        locator=locator,
    )


def find_panel(page, css: str):
    """The panel displayed by the notebook, once the widget manager has rendered it."""
    wait_until(
        page,
        f"() => document.querySelector('{css}') !== null",
        what=f"the panel ({css}) to render; if the cell shows 'Error displaying widget', "
        "the ipywidgets extension for JupyterLab (jupyterlab_widgets) is missing",
    )
    return page.locator(css)


def wait_rounds(page, panel, n: int, what: str) -> None:
    rounds = panel.locator(".kangaroo-rounds")
    wait_until(
        page,
        "([el, n]) => el.querySelectorAll('.kangaroo-round').length === n",
        arg=[rounds.element_handle(), n],
        what=f"{n} rounds shown after {what}",
        locator=rounds,
    )


def run_all(page, name: str) -> None:
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline, state = time.monotonic() + RUN_ALL_S, None
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE)
        if state["errors"]:
            e = state["errors"][0]
            pytest.fail(f"{name}, cell {e['cell']} raised {e['ename']}: {e['evalue']}\n{e['traceback'][-3000:]}")
        if not state["waiting"] and state["status"] == "idle":
            return
        page.wait_for_timeout(500)  # poll interval
    pytest.fail(
        f"{name}: run all did not finish within {RUN_ALL_S} s; cells not yet run: {state and state['waiting']}, "
        f"kernel {state and state['status']}"
    )


@contextmanager
def notebook(browser, lab: Lab, name: str):
    """A page with `name` open, all its cells run; a screenshot of the page if the block fails."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(STEP_S * 1000)
    try:
        page.goto(f"{lab.url}/lab/tree/notebooks/{name}?reset&token={lab.token}", timeout=STEP_S * 1000)
        wait_until(page, f"() => ({KERNEL_STATUS})() === 'idle'", what=f"{name} to open with an idle kernel")
        run_all(page, name)
        yield page
    except BaseException as exc:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"failed-{Path(name).stem}.png"
        try:
            page.screenshot(path=shot, full_page=True)
            where = f"screenshot of the page: {shot}"
        except PlaywrightError as err:  # the page itself may be what failed; keep the original error
            where = f"no screenshot ({err})"
        note = f"{where}\nJupyterLab log (tail):\n{lab.log_tail(20)}"
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(note)
        else:
            print(note)
        raise
    finally:
        try:  # free the kernel's CPU for the next notebook (stopping the server stops it too)
            page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except PlaywrightError as err:  # keep the test's own error, if any
            print(f"could not shut down the kernel of {name} from the page: {err}")
        page.close()


def save_panel(locator, name: str) -> Path:
    """A small PNG of one panel (palette colours, optimised)."""
    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=path)
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


def text_of(html: str) -> str:
    """HTML as the browser's innerText shows it, up to white space."""
    import html as html_lib

    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", html)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


def press(page, slider, key: str, times: int = 1) -> None:
    """Move a slider with the keyboard, as a user can: focus its handle and press `key`."""
    slider.locator(".noUi-handle").focus()
    for _ in range(times):
        page.keyboard.press(key)


# ------------------------------------------------------------------------------------ the tests
def test_eta_panel_of_03_follows_the_slider(browser, lab):
    trace = explore.read_stored(DATA_DIR, "bench/draft_trace.csv")
    with notebook(browser, lab, NB_ETA) as page:
        panel = find_panel(page, ".kangaroo-threshold-panel")
        slider, summary, figure = (panel.locator(c) for c in (".kangaroo-eta", ".kangaroo-summary", ".kangaroo-figure"))
        assert "η = 0.60" in summary.inner_text()  # the notebook's ETA
        before = figure.get_attribute("src")
        assert before, "the η panel shows no figure"

        press(page, slider, "ArrowLeft", 6)  # 0.60 -> 0.30 in steps of 0.05; each step redraws
        # the summary the panel's own code writes at η = 0.30, as the browser shows it
        wait_text(page, summary, text_of(widgets.ThresholdPanel(trace, 0.3).summary.value), "the η panel's summary")
        wait_idle(page, "the η slider")  # the figure follows the summary in the same update
        assert slider.locator(".widget-readout").inner_text().strip() == "0.30"
        shares = plots.threshold_tradeoff(trace, 0.3)
        assert f"{shares['drafts_per_round']:.2f} drafts per round" in flat(summary.inner_text())
        assert figure.get_attribute("src") != before, "the figure was not redrawn for the new η"
        shown = page.evaluate(BLOB_SHA256, figure.element_handle())
        assert shown == hashlib.sha256(widgets.figure_png(plots.eta_tradeoff(trace, 0.3))).hexdigest(), (
            "the figure shown is not the one for η = 0.30"
        )
        save_panel(panel, "eta_panel_03.png")


def rounds_in(status: str) -> int:
    found = re.search(r"(\d+) rounds", status)
    assert found, f"no round count in the status line: {status!r}"
    return int(found.group(1))


def drafts_per_round(panel) -> list[int]:
    blocks = panel.locator(".kangaroo-rounds .kangaroo-round")
    return [blocks.nth(i).locator('span[title^="draft "]').count() for i in range(blocks.count())]


def test_step_panel_of_04_follows_its_controls(browser, lab):
    with notebook(browser, lab, NB_STEP) as page:
        panel = find_panel(page, ".kangaroo-step-panel")
        status, rounds, summary = (
            panel.locator(c) for c in (".kangaroo-status", ".kangaroo-rounds .kangaroo-round", ".kangaroo-summary")
        )
        next_button, all_button = panel.locator(".kangaroo-next"), panel.locator(".kangaroo-all")
        # the notebook's last cell generated with the defaults and revealed two rounds
        first = flat(status.inner_text())
        assert "exit layer 2, η = 0.60, γ = 6:" in first
        total = rounds_in(first)
        assert total >= 3, f"expected a few rounds in smoke mode: {first}"
        assert rounds.count() == 2

        next_button.click()  # the step control: one more round
        wait_rounds(page, panel, 3, "next round")
        wait_idle(page, "next round")
        assert rounds.nth(2).inner_text().startswith("round 3")
        assert all(1 <= n <= 6 for n in drafts_per_round(panel))
        save_panel(panel, "step_panel_04.png")

        # η = 0 never stops early and γ = 3: every round drafts 3 tokens (fewer only at the token budget)
        press(page, panel.locator(".kangaroo-eta"), "ArrowLeft", 12)  # 0.60 -> 0.00
        press(page, panel.locator(".kangaroo-gamma"), "ArrowLeft", 3)  # 6 -> 3
        wait_idle(page, "the η and γ sliders")  # the kernel has their new values before "generate" reads them
        panel.locator(".kangaroo-generate").click()
        wait_text(page, status, "exit layer 2, η = 0.00, γ = 3:", "the status after generate")
        wait_idle(page, "generate")
        assert rounds.count() == 0 and summary.inner_text().strip() == ""
        regenerated = rounds_in(flat(status.inner_text()))

        next_button.click()
        wait_rounds(page, panel, 1, "next round")
        wait_idle(page, "next round")
        assert drafts_per_round(panel) == [3]
        assert "drafting stopped: γ drafts were made" in rounds.nth(0).inner_text()

        all_button.click()
        wait_text(page, summary, "identical to greedy autoregressive decoding", "the summary after all rounds")
        wait_idle(page, "all rounds")
        assert f"in {regenerated} rounds" in flat(summary.inner_text())
        shown = drafts_per_round(panel)
        assert len(shown) == regenerated, "the panel shows a different number of rounds than its status says"
        for i, n in enumerate(shown):  # γ drafts, or fewer where the token budget ends the drafting; η never does
            why = rounds.nth(i).inner_text()
            assert (n == 3 and "γ drafts were made" in why) or (n < 3 and "max new tokens reached" in why), (i, n, why)
        assert next_button.is_disabled() and all_button.is_disabled()
