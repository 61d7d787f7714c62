"""The notebooks in a real browser: JupyterLab as `./lab up` starts it, Debian's chromium, Playwright.

nbconvert runs a notebook's code but never draws a widget; this test opens
JupyterLab, runs every cell the way a learner clicks "Run All Cells", waits
for sliders, outputs and charts to be drawn, moves a slider and watches the
chart change. Screenshots go to artifacts/browser/ for a human to look at.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from playwright import sync_api as playwright_api  # pinned in requirements.txt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SHOTS = REPO / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
#: JupyterLab settings for a run nobody watches: a kernel at once, no news from the internet.
SETTINGS = {
    # autosave off: the learners' notebooks are stored without outputs, and must stay so.
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autoStartDefaultKernel": True,
                                                                     "autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}
RUN_TIMEOUT_MS = 240_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(directory: Path) -> None:
    for name, values in SETTINGS.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-2000:]}")


@pytest.fixture
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on a random loopback port, as `./lab up` runs it; stopped by its PID.

    One server per test: stopping it stops the test's kernel too, so the host
    check after each test finds nothing left.
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (./lab up installs it).")
    home = tmp_path_factory.mktemp("jupyter")
    _write_settings(home / "settings")
    port, token = _free_port(), os.urandom(16).hex()
    env = {**os.environ, "JUPYTER_TOKEN": token, "LAB_FAST": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = home / "jupyter.log"
    stored = {nb: nb.read_bytes() for nb in NOTEBOOKS.glob("*.ipynb")}
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyter"), "lab", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", "--no-browser", "--allow-root",
             f"--ServerApp.root_dir={NOTEBOOKS}"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_serving(f"{base}/api/status?token={token}", server, log)
        yield f"{base}/lab/tree/{{name}}?token={token}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    changed = [nb.name for nb, data in stored.items() if nb.read_bytes() != data]
    assert not changed, f"the browser run saved over the stored notebooks: {changed}"


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator["playwright_api.BrowserContext"]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def _open_and_run_all(context: "playwright_api.BrowserContext", url: str, name: str) -> "playwright_api.Page":
    """Open a notebook, wait for its kernel to be idle, Run All Cells, wait for the last one."""
    page = context.new_page()
    page.goto(url.format(name=name))
    # Clicking Run All before the kernel is idle is silently lost: wait for the status bar.
    page.wait_for_selector(".jp-StatusBar-Widget:has-text('| Idle')", timeout=60_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    page.wait_for_function(
        """() => {
            const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
            const prompts = cells.map(c => c.querySelector('.jp-InputPrompt')?.textContent || '');
            const errors = document.querySelectorAll('.jp-OutputArea-output[data-mime-type*=error]');
            const traced = [...document.querySelectorAll('.jp-OutputArea-output')]
                .some(o => o.textContent.includes('Traceback (most recent call last)'));
            return cells.length > 0 && (errors.length > 0 || traced ||
                   prompts.every(p => /\\[\\d+\\]/.test(p)));
        }""", timeout=RUN_TIMEOUT_MS)
    return page


def _failures(page: "playwright_api.Page") -> list[str]:
    """Error outputs, widgets that failed to draw, and code cells that never ran (Run All stops
    at the first error)."""
    return page.evaluate(
        """() => {
            const out = [];
            for (const o of document.querySelectorAll('.jp-OutputArea-output')) {
                const mime = o.getAttribute('data-mime-type') || '';
                if (mime.includes('error') || o.textContent.includes('Traceback (most recent call last)'))
                    out.push('error output: ' + o.textContent.slice(0, 400));
                if (/Error displaying widget|model not found/.test(o.textContent))
                    out.push('a widget did not render: ' + o.textContent.slice(0, 200));
            }
            document.querySelectorAll('.jp-Notebook .jp-CodeCell').forEach((c, i) => {
                const p = c.querySelector('.jp-InputPrompt')?.textContent || '';
                if (!/\\[\\d+\\]/.test(p)) out.push(`code cell ${i + 1} did not run (prompt ${p.trim()})`);
            });
            return out;
        }""")


def _shoot(page: "playwright_api.Page", name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def test_welcome_runs_in_the_browser(jupyter: str, browser) -> None:
    page = _open_and_run_all(browser, jupyter, "00_welcome.ipynb")
    try:
        assert _failures(page) == []
        assert page.locator(".jp-OutputArea-output").count() > 3
        assert "Passed" in page.inner_text(".jp-Notebook") or "Not yet" in page.inner_text(".jp-Notebook")
        _shoot(page, "00_welcome")
    finally:
        page.close()


def test_cgroups_widgets_move(jupyter: str, browser) -> None:
    page = _open_and_run_all(browser, jupyter, "08_cgroups.ipynb")
    try:
        assert _failures(page) == []
        slider = page.locator(".widget-slider").first
        slider.scroll_into_view_if_needed()
        page.wait_for_selector(".widget-output img", timeout=30_000)
        readout = slider.locator(".widget-readout")
        chart = page.locator(".widget-output img").first
        before = (readout.inner_text(), chart.get_attribute("src"))
        slider.scroll_into_view_if_needed()
        _shoot(page, "08_cgroups_slider_before")
        slider.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([old]) => { const i = document.querySelector('.widget-output img');"
            " return i && i.getAttribute('src') !== old; }", arg=[before[1]], timeout=30_000)
        after = (readout.inner_text(), chart.get_attribute("src"))
        assert after[0] != before[0], f"the readout stayed at {before[0]}"
        assert after[1] != before[1], "the chart did not change after the slider moved"
        _shoot(page, "08_cgroups_slider_after")
        monitor = page.locator(".widget-image").first
        monitor.scroll_into_view_if_needed()
        assert monitor.evaluate("img => img.complete && img.naturalWidth > 100"), \
            "the live monitor drew no chart"
        _shoot(page, "08_cgroups_monitor")
    finally:
        page.close()


def test_vms_vs_containers_notebook_runs_and_its_budget_knob_turns(jupyter: str, browser) -> None:
    """Notebook 13: every cell runs, the charts draw, and the memory-budget slider recomputes
    how many containers and VMs fit (its table and chart change)."""
    page = _open_and_run_all(browser, jupyter, "13_vms_vs_containers.ipynb")
    try:
        assert _failures(page) == []
        assert page.locator(".jp-OutputArea-output img").count() >= 3, "the benchmark charts"
        slider = page.locator(".widget-slider").first
        slider.scroll_into_view_if_needed()
        page.wait_for_selector(".widget-output img", timeout=30_000)
        readout = slider.locator(".widget-readout")
        output = page.locator(".widget-output").first
        before = (readout.inner_text(), output.inner_text())
        _shoot(page, "13_budget_before")
        slider.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([old]) => { const o = document.querySelector('.widget-output');"
            " return o && o.innerText !== old && o.querySelector('img'); }",
            arg=[before[1]], timeout=30_000)
        assert readout.inner_text() != before[0], f"the readout stayed at {before[0]}"
        assert "Idle instances that fit in" in output.inner_text()
        _shoot(page, "13_budget_after")
    finally:
        page.close()


def test_the_book_reads_in_a_browser_without_the_lab(browser, tmp_path: Path) -> None:
    """`labsupport book` pages: opened as plain files, with outputs and the machine named."""
    from labsupport.course import book

    pages = book.write(tmp_path / "book", ["02"], progress=False)
    assert pages and not pages[0].errors, pages
    page = browser.new_page()
    try:
        page.goto((tmp_path / "book" / "index.html").as_uri())
        assert "doctor" in page.inner_text("body")
        page.click(f"a[href='{pages[0].file.name}']")
        text = page.inner_text("body")
        assert "Run on:" in text and "kernel" in text
        assert page.locator(".jp-OutputArea-output").count() > 3, "the page shows no outputs"
        _shoot(page, "book_02")
    finally:
        page.close()
