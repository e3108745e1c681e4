"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright, against a live uvicorn server.

Screenshots are kept in ``$FOLDATLAS_ARTIFACTS`` (default ``test-artifacts/`` in the repository). Without a
Chromium the tests are skipped, unless ``FOLDATLAS_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"

CHROMIUM = os.environ.get("FOLDATLAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("FOLDATLAS_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"

if CHROMIUM is None or not Path(CHROMIUM).exists():
    if os.environ.get("FOLDATLAS_REQUIRE_BROWSER") == "1":
        raise RuntimeError("FOLDATLAS_REQUIRE_BROWSER=1 but no chromium found (apt-get install chromium)")
    pytest.skip("no Chromium on this machine (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(seeded_atlas, tmp_path_factory, folding_model, embedder):
    """A uvicorn server on a free loopback port over a copy of the seeded atlas; yields its base URL."""
    import uvicorn

    from foldatlas.service import ServiceSettings, create_app

    atlas = tmp_path_factory.mktemp("browser") / "atlas"
    shutil.copytree(seeded_atlas, atlas)
    app = create_app(ServiceSettings(atlas=atlas, max_length=400), folding_model=folding_model, embedder=embedder)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(300):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def live_server(seeded_atlas, tmp_path_factory, tiny_model, lm_embedder):
    """The service on the tiny ESMFold checkpoint, live; yields its base URL."""
    with _serve(seeded_atlas, tmp_path_factory, tiny_model, lm_embedder) as url:
        yield url


@pytest.fixture(scope="module")
def fold2_server(seeded_atlas, tmp_path_factory, tiny_fold2_model, lm_embedder):
    """The service on the tiny ESMFold2 checkpoint (3 samples per fold), live; yields its base URL."""
    with _serve(seeded_atlas, tmp_path_factory, tiny_fold2_model, lm_embedder) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
          else errors.append(f"request off the machine: {r.url}"))  # everything is vendored
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors


def _api(base: str, path: str, body: dict | None = None):
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=90) as r:
        return json.loads(r.read())


def _text(base: str, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(base + path, timeout=30) as r:
        return r.read().decode()


def _coloured_fraction(png: bytes) -> float:
    """Share of pixels that are neither white nor grey (the cartoon in pLDDT colours)."""
    import matplotlib.image as mpimg

    rgb = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    spread = rgb.max(-1) - rgb.min(-1)
    return float(np.mean(spread > 0.15))


def test_fold_on_the_page_renders_the_model_and_its_confidence(live_server, page):
    page.goto(live_server + "/")
    page.fill("#sequence", f">page_test\n{SEQ}")
    page.click("#fold-button")
    page.wait_for_url("**/entry/*", timeout=60_000)
    page.wait_for_function("document.getElementById('mean-plddt').textContent.length > 0", timeout=30_000)
    entry_id = page.url.rsplit("/", 1)[1]
    entry = _api(live_server, f"/api/v1/entries/{entry_id}")
    assert page.text_content("#mean-plddt") == f"{entry['mean_plddt']:.2f}"
    assert page.text_content("#entry-length") == str(len(SEQ))
    geo = entry["geometry"]  # the page shows the entry's geometry and, when implausible, the warning
    plural = "" if geo["chain_breaks"] == 1 else "s"
    shown = f"{geo['chain_breaks']} break{plural}, clashscore {geo['clashscore']:.1f}"
    assert page.text_content("#entry-geometry") == shown
    assert page.is_visible("#geometry-warning") == (geo["warning"] is not None)
    if geo["warning"]:
        assert page.text_content("#geometry-warning") == f"Warning: {geo['warning']}"
    page.wait_for_timeout(500)  # the viewer draws on the next animation frame
    canvas = page.locator("#viewer canvas")
    assert canvas.count() >= 1
    assert _coloured_fraction(page.locator("#viewer").screenshot()) > 0.01
    assert page.locator("#plddt-plot polyline").count() == 1
    assert page.eval_on_selector("#pae-canvas", "c => c.width") == len(SEQ)
    for link, suffix in (("#dl-pdb", "structure.pdb"), ("#dl-cif", "structure.cif"), ("#dl-pae", "pae.json")):
        assert suffix in page.get_attribute(link, "href")


def test_deep_link_folds_and_shows_the_sequence(live_server, page):
    page.goto(live_server + "/?fasta_header=deep_link&sequence=GAVLIKKWMKTAYIAKQ")
    page.wait_for_url("**/entry/*", timeout=60_000)
    page.wait_for_function("document.getElementById('mean-plddt').textContent.length > 0")
    assert page.text_content("#entry-length") == "17"
    assert "deep_link" in page.text_content("#entry-description")


def test_search_returns_hits_that_open_their_entries(live_server, page):
    from foldatlas.structure.io import ca_trace, read_structure

    seq = ca_trace(read_structure(DATA / "1BUN_B.pdb"))[1]
    page.goto(live_server + "/search")
    page.fill("#search-sequence", seq)
    page.click("#seqsearch-form button")
    page.wait_for_selector("#search-results tbody tr", timeout=30_000)
    assert "/search?sequence=" in page.url  # the search has its own URL
    first = page.locator("#search-results tbody tr a").first
    assert first.text_content() == "1BUN_B"
    first.click()
    page.wait_for_url("**/entry/1BUN_B")
    page.wait_for_function("document.getElementById('entry-title').textContent === '1BUN_B'")
    page.goto(live_server + "/search?entry=1FHG_A")
    page.wait_for_selector("#search-results tbody tr", timeout=30_000)
    assert page.locator("#search-results tbody tr a").first.text_content() == "1FHG_A"


def test_a_map_point_opens_its_entry(live_server, page):
    page.goto(live_server + "/map")
    page.wait_for_function("window.foldatlas.map !== null", timeout=30_000)
    target = "1AX8_A"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "map_before_click.png"))
    x, y = page.evaluate(f"window.foldatlas.mapPixelOf('{target}')")
    box = page.locator("#map-canvas").bounding_box()
    width = page.eval_on_selector("#map-canvas", "c => c.width")
    ratio = box["width"] / width
    page.mouse.click(box["x"] + x * ratio, box["y"] + y * ratio)
    page.wait_for_url(f"**/entry/{target}", timeout=30_000)
    page.wait_for_function(f"document.getElementById('entry-title').textContent === '{target}'")


def _map_pixels(page) -> np.ndarray:
    """The map canvas' pixels (RGB) from a screenshot of it."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator("#map-canvas").screenshot())).convert("RGB"))


def test_the_webgl_map_colours_and_highlights_search_hits(live_server, page):
    page.goto(live_server + "/search?sequence=" + _api(live_server, "/fetchSequence/1FHG_A")["sequence"])
    page.wait_for_selector("#search-results tbody tr", timeout=60_000)
    page.click("#search-on-map")
    page.wait_for_function("window.foldatlas.map && window.foldatlas.map.stats.first_paint_ms > 0",
                           timeout=30_000)
    assert "highlighted" in page.text_content("#map-highlight")
    stats = page.evaluate("window.foldatlas.map.stats")
    entries = _api(live_server, "/api/v1/info")["atlas_entries"]  # the module's server: earlier tests fold too
    assert stats["points"] == entries >= 4 and stats["bytes"] == entries * 11
    pixels = _map_pixels(page)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 90)
    assert red.sum() > 20  # the highlighted hit is drawn, in red
    assert page.evaluate("window.foldatlas.mapFrameMs(3)") > 0
    before = pixels[~red].reshape(-1, 3)
    page.select_option("#map-colour", "cluster")
    after = _map_pixels(page)[~red].reshape(-1, 3)
    assert (before != after).any()  # the colours changed


def test_superposition_on_an_experimental_structure(live_server, page):
    page.goto(live_server + "/entry/1DFU_C")
    page.wait_for_function("document.getElementById('entry-title').textContent === '1DFU_C'")
    page.set_input_files("#superpose-file", str(DATA / "1DFU_C.pdb"))
    page.click("#superpose-form button")
    page.wait_for_selector("#superpose-tm", timeout=30_000)
    assert float(page.text_content("#superpose-tm")) > 0.99
    assert page.is_visible("#legend-reference")


def test_design_panel_shows_designs_and_a_refolded_model(live_server, page):
    page.goto(live_server + "/entry/1BUN_B")
    page.wait_for_function("document.getElementById('entry-title').textContent === '1BUN_B'")
    page.fill("#design-count", "2")
    page.fill("#design-omit", "C")
    page.click("#design-form button")
    page.wait_for_selector("#design-table:not([hidden])", timeout=240_000)
    rows = page.query_selector_all("#design-table tbody tr")
    assert len(rows) == 3  # the input and two designs
    sequences = [r.query_selector(".design-seq").text_content() for r in rows]
    assert all(len(s) == len(sequences[0]) for s in sequences) and all("C" not in s for s in sequences[1:])
    assert "refolded with" in page.text_content("#design-status")
    page.click("#design-table tbody tr[data-index='1'] .design-show")
    page.wait_for_function("window.foldatlas.shownDesign === 1", timeout=30_000)
    assert page.is_visible("#legend-reference")
    assert page.evaluate("window.foldatlas.viewer.getModel(1) !== null")  # the target drawn with the design


def test_errors_are_shown_not_thrown(live_server, page):
    page.goto(live_server + "/entry/NO_SUCH_ENTRY")
    page.wait_for_selector("#message:not([hidden])")
    assert "no entry 'NO_SUCH_ENTRY'" in page.text_content("#message")
    page.goto(live_server + "/")
    page.fill("#sequence", "MKTJJ")
    page.click("#fold-button")
    page.wait_for_selector("#message:not([hidden])")
    assert "invalid residue 'J' at position 4" in page.text_content("#message")


def test_api_docs_render_offline(live_server, page):
    page.goto(live_server + "/docs")
    page.wait_for_selector("#swagger-ui .info .title", timeout=30_000)
    assert "foldatlas" in page.text_content("#swagger-ui .info .title")
    assert page.locator("text=/foldSequence/v1/pdb/").count() >= 1


_FIRST_ATOM = ("(() => { const a = window.foldatlas.viewer.getModel(0).selectedAtoms({})[0]; "
               "return [a.x, a.y, a.z]; })()")  # the first atom of the model the viewer shows


def _first_atom(pdb: str) -> list[float]:
    line = next(line for line in pdb.splitlines() if line.startswith("ATOM"))
    return [float(line[30:38]), float(line[38:46]), float(line[46:54])]


def test_stepping_through_the_samples_of_an_esmfold2_entry(fold2_server, page):
    job = _api(fold2_server, "/api/v1/fold", {"sequence": SEQ, "name": "stepper", "wait": 60})
    assert job["status"] == "done", job
    samples = _api(fold2_server, job["links"]["samples"])
    best, listed = samples["best_sample"], samples["samples"]
    assert len(listed) == 3
    page.goto(fold2_server + job["links"]["page"])
    page.wait_for_selector("#sample-stepper:not([hidden])", timeout=30_000)
    label = page.locator("#sample-label")
    first = listed[best]
    assert label.text_content().startswith(f"Sample {best + 1} of 3, pTM {first['ptm']:.3f}, "
                                           f"mean pLDDT {first['mean_plddt']:.2f}")
    assert page.locator("#sample-label .best-badge").count() == 1
    assert page.evaluate(_FIRST_ATOM) == pytest.approx(_first_atom(_text(fold2_server, first["links"]["pdb"])),
                                                       abs=1e-3)
    step, target = ("#sample-next", best + 1) if best < 2 else ("#sample-prev", best - 1)
    assert page.is_disabled("#sample-next") == (best == 2) and page.is_disabled("#sample-prev") == (best == 0)
    page.click(step)
    page.wait_for_function(f"window.foldatlas.shownSample === {target}", timeout=30_000)
    chosen = listed[target]
    assert label.text_content() == (f"Sample {target + 1} of 3, pTM {chosen['ptm']:.3f}, "
                                    f"mean pLDDT {chosen['mean_plddt']:.2f}")
    assert page.locator("#sample-label .best-badge").count() == 0
    shown = page.evaluate(_FIRST_ATOM)
    assert shown == pytest.approx(_first_atom(_text(fold2_server, chosen["links"]["pdb"])), abs=1e-3)
    assert shown != pytest.approx(_first_atom(_text(fold2_server, first["links"]["pdb"])), abs=1e-3)
    assert page.get_attribute("#dl-sample-pdb", "href").endswith(f"/samples/{target}/structure.pdb?download=true")
    page.wait_for_timeout(500)  # the viewer draws on the next animation frame
    assert _coloured_fraction(page.locator("#viewer").screenshot()) > 0.01
