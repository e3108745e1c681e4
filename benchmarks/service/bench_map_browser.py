"""The WebGL map at a million points in headless Chromium: layout time, bytes, time to first paint, frame time.

    python benchmarks/service/bench_map_browser.py --points 1000000 --out benchmarks/results/map_1m.json

The layout is computed by ``foldatlas.atlas.mapping.compute_layout`` (the code ``/api/v1/map/layout`` runs) from
synthetic embeddings: ``--points`` vectors of 320 dimensions (the embedded language model's width) around 5,000
cluster centres, a tenth of the entries without an embedding (placed beside their representative), pLDDT and
length drawn at random. No atlas of a million entries with embeddings exists on this machine: the layout is handed
to a live server (uvicorn) over an empty atlas, and the page loads it as it loads any atlas' map. Chromium (Debian's,
via Playwright) renders with SwiftShader (software WebGL; a machine with a GPU draws faster). Reported: layout
seconds, raw and gzip bytes, bytes transferred, fetch and first-paint milliseconds after navigation, and the mean
redraw (frame) time over 10 frames, each drawn to the end (a one-pixel ``readPixels`` waits for it), of the whole
map and of the 150,000-point sample the page draws while the map moves. A smaller ``--points`` gives a baseline.

Prints JSON (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def synthetic_layout(n: int, seed: int = 0):
    from foldatlas.atlas.mapping import compute_layout

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5000, 320)).astype(np.float32)
    family = rng.integers(0, 5000, n)
    rowids = np.arange(1, n + 1, dtype=np.int64)
    embedded = rng.random(n) >= 0.1
    family_rep = np.full(5000, -1, np.int64)  # each family's first member represents it
    order = np.argsort(family, kind="stable")
    firsts = order[np.r_[True, family[order][1:] != family[order][:-1]]]
    family_rep[family[firsts]] = rowids[firsts]
    embedded[firsts] = True
    vectors = np.empty((int(embedded.sum()), 320), np.float32)
    idx = np.flatnonzero(embedded)
    for start in range(0, len(idx), 100_000):
        part = idx[start:start + 100_000]
        vectors[start:start + len(part)] = centres[family[part]] + 0.35 * rng.normal(size=(len(part), 320))
    plddt = np.clip(rng.normal(75, 15, n), 20, 98)
    length = rng.integers(50, 1000, n)
    t = time.perf_counter()
    layout = compute_layout(rowids, embedded, vectors, plddt, length, family_rep[family], "synthetic")
    return layout, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--out")
    args = ap.parse_args()
    import gzip

    import uvicorn
    from playwright.sync_api import sync_playwright

    from foldatlas.atlas import open_atlas
    from foldatlas.service import ServiceSettings, create_app
    from foldatlas.service.map_routes import _state

    layout, layout_s = synthetic_layout(args.points)
    raw = layout.to_bytes()
    packed = gzip.compress(raw, compresslevel=6)
    folder = Path(tempfile.mkdtemp()) / "atlas"
    open_atlas(folder, create=True).close()
    app = create_app(ServiceSettings(atlas=folder, embedding_model="none"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    ctx = app.state.ctx
    ctx.map_layouts[None] = (_state(ctx.atlas, None), (layout, layout.header(), raw, packed))
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    result = {"points": len(layout), "layout_s": round(layout_s, 2), "bytes_raw": len(raw),
              "bytes_gzip": len(packed), "cpu": next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                                                      if ln.startswith("Model name")), ""),
              "renderer": "headless Chromium, SwiftShader (software WebGL)"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium,
                                    args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/map")
        page.wait_for_function("window.foldatlas.map && window.foldatlas.map.stats.first_paint_ms > 0",
                               timeout=300_000)
        result["wall_to_first_paint_s"] = round(time.perf_counter() - t, 2)
        stats = page.evaluate("window.foldatlas.map.stats")
        result["fetch_ms"] = round(stats["fetch_ms"], 1)
        result["first_paint_after_navigation_ms"] = round(stats["since_navigation_ms"], 1)
        result["transferred_bytes"] = page.evaluate(
            "performance.getEntriesByType('resource').filter(r => r.name.includes('points.bin'))"
            ".reduce((a, r) => a + r.transferSize, 0)")
        result["frame_ms"] = round(page.evaluate("window.foldatlas.mapFrameMs(10)"), 1)
        result["moving_frame_ms"] = round(page.evaluate("window.foldatlas.mapFrameMs(10, 150000)"), 1)
        page.select_option("#map-colour", "cluster")
        result["recolour_and_frame_ms"] = round(page.evaluate(
            "(() => { const t = performance.now(); document.getElementById('map-colour')"
            ".dispatchEvent(new Event('change')); const g = window.foldatlas.regl._gl;"
            " g.readPixels(0, 0, 1, 1, g.RGBA, g.UNSIGNED_BYTE, new Uint8Array(4));"
            " return performance.now() - t; })()"), 1)
        shot = os.environ.get("FOLDATLAS_ARTIFACTS", "test-artifacts")
        Path(shot).mkdir(exist_ok=True)
        page.screenshot(path=f"{shot}/map_{len(layout)}.png")
        browser.close()
    server.should_exit = True
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
