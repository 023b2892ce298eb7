"""The playground in a real headless Chromium: load the page, move a slider, generate, see the text stream in.

Debian's ``chromium`` driven by Playwright (OFFLINE.md); installed with apt-get when missing and this runs as
root; skipped, saying why, only where no browser can be had."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from hoe.server import Limits, load  # noqa: E402
from test_serve import bundle, start  # noqa: E402,F401  (the tiny bundle fixture and the server starter)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium, and apt-get cannot install it here (not root, or no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)} failed: {done.stderr[-300:]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed no chromium binary")


def test_move_a_slider_generate_and_watch_it_stream(bundle):  # noqa: F811
    browser_path = chromium()
    app, served = load(bundle, name="tiny", limits=Limits(max_tokens=24), scores=False)
    url, server = start(app)
    sent: list[dict] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=ARGS)
            page = browser.new_page()
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.method == "POST" else None)
            page.goto(url + "/")
            page.wait_for_selector("#w-harmless")
            assert page.inner_text("#v-helpful") == "0.50"  # the default: uniform
            page.fill("#w-harmless", "100")  # helpful 50, harmless 100 -> shown on the simplex
            page.fill("#w-helpful", "0")
            assert page.inner_text("#v-harmless") == "1.00" and page.inner_text("#v-helpful") == "0.00"
            page.fill("#temperature", "0")
            page.click("#generate")
            page.wait_for_selector("#response[data-done='true']", timeout=30_000)
            text = page.inner_text("#response")
            browser.close()
    finally:
        server.should_exit = True
        served.engine.close()
    assert sent and sent[0]["preference"] == {"helpful": 0.0, "harmless": 1.0} and sent[0]["stream"] is True
    with served_client(bundle) as client:  # the same request without the browser gives the same text
        expected = client.post("/v1/chat/completions", json={**sent[0], "stream": False}).json()
    assert text == expected["choices"][0]["message"]["content"] and text


def served_client(bundle):  # noqa: F811
    from fastapi.testclient import TestClient

    app, _ = load(bundle, name="tiny", limits=Limits(max_tokens=24), scores=False)
    return TestClient(app)
