"""One real-browser test: JupyterLab headless, notebooks/07_interactive_sampler.ipynb opened in
Debian's Chromium through Playwright, all cells run, Generate clicked, and a generated image
appears. The screenshot is kept as a CI artifact in outputs/browser/."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/07_interactive_sampler.ipynb"
ARTIFACTS = ROOT / "outputs" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless flags for a machine with a closed network (see the Chromium docs for each).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    environment = dict(os.environ, LDM_LITE_SMOKE="1", HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
                       JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 120 s")
    notebook = ROOT / NOTEBOOK
    committed = notebook.read_bytes()  # JupyterLab saves the notebook it opens: put it back afterwards
    try:
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        notebook.write_bytes(committed)


@pytest.mark.browser
def test_generate_in_jupyterlab(jupyter_lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make browser-deps` installs it"
    url, token = jupyter_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            select_kernel = page.locator(".jp-Dialog button:has-text('Select')")
            try:  # JupyterLab may ask which kernel to start: the notebook's own (python3)
                select_kernel.wait_for(timeout=10_000)
                select_kernel.click()
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            page.click(".jp-Notebook")
            page.keyboard.press("Escape")
            # Run > Run All Cells, through the command palette's keyboard-free path: the menu.
            page.click("text=Run", timeout=30_000)
            page.click("text=Run All Cells", timeout=30_000)
            generate = page.locator("button:has-text('Generate')").first
            generate.wait_for(timeout=240_000)
            generate.click()
            page.wait_for_selector("text=/\\d+ images, seed/", timeout=240_000)
            # Images in page order: the sampler's preview, its sample grid, then the inpainting widget's.
            samples = page.locator(".widget-image").nth(1)
            samples.scroll_into_view_if_needed()
            deadline = time.time() + 60
            while not (samples.get_attribute("src") or "").startswith(("blob:", "data:image")):
                assert time.time() < deadline, "the sample grid shows no image"
                time.sleep(0.5)
            box = samples.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
        finally:
            page.screenshot(path=str(ARTIFACTS / "interactive_sampler.png"), full_page=True)
            browser.close()
