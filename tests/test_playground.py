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


@pytest.fixture(scope="module")
def bundle3(tmp_path_factory):
    """A tiny Llama (char tokenizer) with three random vertex experts a, b, c and a router at the centroid."""
    import torch

    from hoe.experts.targets import find_target_modules
    from hoe.io.adapters import LoraWeights
    from hoe.model.hoe_model import ExpertSpec, HoEModel

    from conftest import build_model, save_model
    from tiny_lm import char_tokenizer

    root = tmp_path_factory.mktemp("playground3")
    base = save_model(build_model("llama"), root / "base")
    char_tokenizer().save_pretrained(base)
    g = torch.Generator().manual_seed(5)
    modules = find_target_modules(build_model("llama"))
    weights = [
        {m.name: LoraWeights(A=0.5 * torch.randn(2, m.in_features, generator=g),
                             B=0.5 * torch.randn(m.out_features, 2, generator=g)) for m in modules}
        for _ in range(3)
    ]  # fmt: skip
    specs = [ExpertSpec(n, tuple(float(i == k) for i in range(3))) for k, n in enumerate("abc")]
    model = HoEModel(build_model("llama"), ["a", "b", "c"], specs, weights, str(base))
    model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.save_pretrained(root / "bundle")


def test_the_simplex_picker_the_routing_and_compare_mode(bundle3):
    """Three objectives: the triangle replaces the sliders; a click at a corner picks that objective alone and
    the routing line says which expert it reaches; the arrow keys move the point; three preferences compared
    in one request give columns whose texts are what the same request gives without the browser; on a
    narrow screen the columns stack."""
    browser_path = chromium()
    app, served = load(bundle3, name="tiny3", limits=Limits(max_tokens=16), scores=False)
    url, server = start(app)
    sent: list[dict] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.method == "POST" else None)
            page.goto(url + "/")
            page.wait_for_selector("#simplex #marker")
            assert page.locator("#sliders input").count() == 0
            assert page.inner_text("#lambda") == "λ = a 0.33, b 0.33, c 0.33"
            page.wait_for_selector("#route[data-preference='0.33,0.33,0.33']")
            assert "router centre 1.00 (mixes a, b, c per token)" in page.inner_text("#route")
            page.click("#simplex", position={"x": 15, "y": 185})  # the corner of a
            page.wait_for_selector("#route[data-preference='1.00,0.00,0.00']")
            assert page.inner_text("#lambda") == "λ = a 1.00, b 0.00, c 0.00"
            assert page.inner_text("#route") == "Reaches: expert a 1.00"
            page.click("#add")
            page.focus("#simplex")
            for _ in range(5):
                page.keyboard.press("ArrowRight")  # along the bottom edge, toward b
            moved = page.inner_text(
                "#lambda"
            )  # about a third of the way: 5 steps of 6 of the edge's 190 units
            a, b, c = (float(part.split()[1]) for part in moved.removeprefix("λ = ").split(", "))
            assert 0.1 < b < 0.2 and c == 0 and a == pytest.approx(1 - b)
            page.wait_for_selector(f"#route[data-preference='{a:.2f},{b:.2f},{c:.2f}']")
            page.click("#add")
            page.click("#simplex", position={"x": 110, "y": 21})  # near the top corner, c
            page.click("#add")
            assert page.locator("#chips .chip").count() == 3
            page.fill("#temperature", "0")
            page.click("#compare")
            page.wait_for_selector("#columns[data-done='true']", timeout=30_000)
            headers = page.locator("#columns h3").all_inner_texts()
            texts = page.locator("#columns .text").all_inner_texts()
            page.set_viewport_size({"width": 360, "height": 800})
            boxes = [page.locator("#columns .column").nth(i).bounding_box() for i in range(3)]
            browser.close()
    finally:
        server.should_exit = True
        served.engine.close()
    request = [b for b in sent if "preferences" in b][0]
    assert len(request["preferences"]) == 3 and request["temperature"] == 0 and "stream" not in request
    assert headers[0] == "a 1.00, b 0.00, c 0.00" and headers[1] == moved.removeprefix("λ = ")
    assert boxes[0]["x"] == boxes[1]["x"] == boxes[2]["x"]  # one column per row on a narrow screen
    with served_client(bundle3) as client:  # the same request without the browser
        expected = client.post("/v1/chat/completions", json=request).json()
    assert texts == [c["message"]["content"] for c in expected["choices"]] and all(texts)
