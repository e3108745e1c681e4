"""Load on ``foldatlas serve``: 32 concurrent clients on loopback, cached lookups and folds. Prints JSON.

Starts the real server (``foldatlas serve``, uvicorn, one process) on a copy of an atlas, then

* **lookups**: ``wrk`` (Debian package ``wrk``) with 32 connections for ``--seconds`` against
  ``GET /fetchPredictedStructure/{id}`` (PDB text) and ``GET /api/v1/entries/{id}`` (JSON), rotating over every
  entry ID of the atlas; throughput, latency percentiles, non-2xx answers;
* **folds**: 32 client threads, each posting new sequences (never folded before) to ``POST /foldSequence/v1/pdb/``
  with the embedded model; a 503 (queue full) is the intended answer beyond the queue and the client retries after a
  short pause; folds per second, fold latency p50/p99 (submission to PDB), 503s, any other error;
* the server's resident memory (``VmRSS``) before, during and after each phase.

wrk and the server share the machine's cores, so lookup numbers are a lower bound of what the server alone
does. Usage::

    python benchmarks/service/bench_load.py --atlas /work/data/atlas_build200 [--seconds 20] [--fold-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

AA = "ACDEFGHIKLMNPQRSTVWY"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(atlas: Path, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "foldatlas.cli.main", "serve", "--atlas", str(atlas), "--port", str(port),
           "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/info", timeout=1).read()
            return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
    raise RuntimeError("server did not start in 120 s")


def parse_wrk(text: str) -> dict:
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
        return round(float(number) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit], 3)

    out = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s))", text)
        out[f"p{pct}_ms"] = ms(m.group(1)) if m else None
    total = re.search(r"(\d+) requests in", text)
    out["requests"] = int(total.group(1)) if total else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(bad.group(1)) if bad else 0
    errors = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = errors.group(1) if errors else "none"
    return out


def run_wrk(base: str, paths: list[str], seconds: int, connections: int, work: Path) -> dict:
    script = work / "paths.lua"
    listing = ", ".join(json.dumps(p) for p in paths)
    script.write_text("local paths = {" + listing + "}\nlocal i = 0\n"
                      "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    text = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
                          capture_output=True, text=True, check=True).stdout
    return parse_wrk(text)


def fold_load(base: str, clients: int, seconds: float, length: int, seed: int) -> dict:
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "busy_503": 0, "other_errors": 0}
    errors: list[str] = []
    stop = time.time() + seconds

    def client(k: int) -> None:
        local = random.Random(seed * 1000 + k)
        while time.time() < stop:
            seq = "".join(local.choice(AA) for _ in range(length))
            start = time.perf_counter()
            req = urllib.request.Request(base + "/foldSequence/v1/pdb/", data=seq.encode(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=900) as r:
                    r.read()
                with lock:
                    counts["ok"] += 1
                    latencies.append(time.perf_counter() - start)
            except urllib.error.HTTPError as e:
                with lock:
                    if e.code == 503:
                        counts["busy_503"] += 1
                    else:
                        counts["other_errors"] += 1
                        errors.append(f"{e.code} {e.read()[:200]!r}")
                if e.code == 503:
                    time.sleep(min(float(e.headers.get("Retry-After", 1)), 2.0) * local.random())
            except Exception as e:  # connection failures count as errors
                with lock:
                    counts["other_errors"] += 1
                    errors.append(repr(e)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

    return {"clients": clients, "length": length, "wall_seconds": round(wall, 1), **counts,
            "folds_per_second": round(counts["ok"] / wall, 3), "latency_p50_s": pct(0.5), "latency_p99_s": pct(0.99),
            "errors_sample": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--atlas", type=Path, required=True, help="An atlas built with the embedded model (copied)")
    parser.add_argument("--seconds", type=int, default=20, help="Duration of each lookup run")
    parser.add_argument("--fold-seconds", type=float, default=120)
    parser.add_argument("--fold-length", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--queue-size", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    from foldatlas.atlas import open_atlas

    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    atlas = work / "atlas"
    shutil.copytree(args.atlas, atlas)
    with open_atlas(atlas, readonly=True) as a:
        ids = [m["id"] for m in a.iter_metadata(("id",))]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(atlas, port, ["--queue-size", str(args.queue_size)])
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": date.today().isoformat(),
              "entries": len(ids), "connections": args.connections, "server": "foldatlas serve (uvicorn, 1 process)"}
    try:
        memory = {"start": rss_mib(proc.pid)}
        # warm the render cache once (a first request renders; later ones are cached lookups)
        for i in ids:
            urllib.request.urlopen(f"{base}/fetchPredictedStructure/{i}").read()
        memory["after_warmup"] = rss_mib(proc.pid)
        lookups = {}
        for name, template in (("fetchPredictedStructure", "/fetchPredictedStructure/{}"),
                               ("api_entry_json", "/api/v1/entries/{}")):
            lookups[name] = run_wrk(base, [template.format(i) for i in ids], args.seconds, args.connections, work)
            memory[f"after_{name}"] = rss_mib(proc.pid)
        again = run_wrk(base, [f"/fetchPredictedStructure/{i}" for i in ids], args.seconds, args.connections, work)
        lookups["fetchPredictedStructure_repeat"] = again
        memory["after_repeat"] = rss_mib(proc.pid)
        result["lookups"] = lookups
        samples: list[float] = []
        sampler_stop = threading.Event()

        def sample():
            while not sampler_stop.wait(2.0):
                samples.append(rss_mib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result["folds"] = fold_load(base, args.connections, args.fold_seconds, args.fold_length, seed=1)
        sampler_stop.set()
        memory["during_folds_min_max"] = [min(samples), max(samples)] if samples else None
        memory["after_folds"] = rss_mib(proc.pid)
        result["memory_mib"] = memory
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
