"""ESMFold2 fold benchmark: foldatlas against plain transformers on the same checkpoint, and the longest sequence.

For each length, three configurations run, each in its own fresh subprocess (so that its maximum resident set
size, loading included, is that configuration's peak) and with a timeout:

* ``foldatlas``: ``load_folding_model(folder, device="cpu")`` (16-bit weights loaded without a float32 copy,
  trunk and heads cast to float32, ESM C's layers streamed to float32 one at a time), then
  ``fold_batch(model, [record], FoldOptions(seed=0, num_samples=N))``;
* ``transformers_bf16``: transformers exactly as its documentation shows:
  ``EsmFold2Model.from_pretrained(folder, dtype=torch.bfloat16)``, ``torch.manual_seed(0)``,
  ``model.infer_protein(seq)``. The documentation adds ``device_map="auto"``; it is left out here: it needs
  ``accelerate`` (not installed) and on a CPU-only machine it places everything on the CPU anyway;
* ``transformers_fp32``: the same with ``dtype=torch.float32``, the precision foldatlas computes in on a CPU,
  so the like-for-like accuracy reference (foldatlas equals it exactly on float32 checkpoints). Skipped, with
  the reason, when its float32 weights alone exceed the memory available (the full model's do on a 24 GiB
  machine: 6.6 B parameters are 26 GB in float32).

Outputs are compared over every diffusion sample with foldatlas' best sample reported separately: real atoms'
coordinates (transformers' atom order rebuilt from foldatlas' atom37 slots), per-atom pLDDT (0-100),
PAE and pTM. A configuration killed for memory (SIGKILL, ``MemoryError``) is reported as
``{"status": "out of memory"}``, one past its timeout as ``{"status": "timed out"}``.

``--max-length-search`` then looks for the longest sequence foldatlas folds with its defaults within the
memory budget, as ``bench_max_length.py`` does for ESMFold v1: each probe is a fresh process. The memory peak
of an ESMFold2 fold is reached in every trunk loop and every diffusion step alike, so by default a probe runs
one trunk pass (``num_loops=0``) and two diffusion steps with the default number of samples (the confidence
head, which holds one pair representation per sample, is the usual peak): same peak, a fraction of the time
(``--search-full-fold`` runs the complete defaults). Lengths: ``--search-lengths`` first, then the length where
a fit ``peak = a + b L^2`` through the successful probes reaches the budget (at most double the longest
success), then bisection, until the bracket is narrower than ``--search-step`` or ``--search-seconds`` run out.

The sequence is the CASP14 evaluation domains (``../shared/eval/structure/targets.fasta``) joined in file
order and cut to the length: protein-like and deterministic.

Cost on the 2-core AVX2 machine (one full-size trunk layer, timed alone, shared machine: float32 1.2 s at
L=64 and 5.9 s at L=128, bfloat16 3.9 s at L=64; a fold runs about 310 of them plus the confidence head, ESM C
and 68 diffusion steps of 8 samples): foldatlas about 15 min at 64 and 45 min at 128, transformers bfloat16
several times that. The search's probes cost one trunk pass each, but grow as L^2 to L^3.

Prints one JSON object (progress lines go to stderr). Usage::

    python benchmarks/predict/make_fold2_checkpoint.py /work/data/esmfold2_full_random --size full  # once, 13 GB
    python benchmarks/predict/bench_fold2.py --checkpoint /work/data/esmfold2_full_random --lengths 64 128
    python benchmarks/predict/bench_fold2.py --checkpoint /work/data/esmfold2_full_random --lengths \\
        --max-length-search
    python benchmarks/predict/bench_fold2.py --size tiny --lengths 16 24   # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ROOT.parent / "shared" / "eval" / "structure" / "targets.fasta"
# Used where the evaluation data is not beside the checkout (the ESMFold v1 benchmarks' sequence).
_FALLBACK = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHD"
_AMINO = set("ACDEFGHIKLMNPQRSTVWY")
TRANSFORMERS_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
_OOM_MARKERS = ("MemoryError", "can't allocate memory", "not enough memory", "out of memory")


def protein_sequence(length: int) -> tuple[str, str]:
    """A deterministic protein-like sequence of ``length`` residues.

    Returns
    -------
    (str, str)
        The sequence and where it comes from.
    """
    if TARGETS.is_file():
        names, chains = [], []
        for block in TARGETS.read_text().split(">")[1:]:
            head, *lines = block.splitlines()
            names.append(head.split()[0])
            chains.append("".join(c for c in "".join(lines).upper() if c in _AMINO))
        joined, used = "", []
        for name, chain in zip(names, chains):
            if len(joined) >= length:
                break
            joined += chain
            used.append(name)
        if len(joined) >= length:
            return joined[:length], f"CASP14 domains {'+'.join(used)} joined, cut to {length}"
    repeats = length // len(_FALLBACK) + 1
    return (_FALLBACK * repeats)[:length], f"fixed 86-residue sequence repeated, cut to {length}"


def _rss_now_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2)  # kB on Linux


def _child_fold(tool: str, checkpoint: str, length: int, npz: str, num_samples: int | None, seed: int,
                num_loops: int | None = None, num_steps: int | None = None) -> dict:
    """Load and fold in this process; save every sample's outputs in transformers' atom order to ``npz``."""
    import numpy as np
    import torch

    seq, _ = protein_sequence(length)
    t0 = time.perf_counter()
    if tool == "foldatlas":
        from foldatlas.models.loading import load_folding_model
        from foldatlas.predict.engine import FoldOptions, fold_batch
        from foldatlas.predict.esmfold2 import _atom37_slots
        from foldatlas.seq.records import make_record

        model = load_folding_model(checkpoint, device="cpu")
        load_s, rss_loaded = time.perf_counter() - t0, _rss_now_gib()
        record = make_record("q", seq)
        t1 = time.perf_counter()
        pred = fold_batch(model, [record], FoldOptions(seed=seed, num_samples=num_samples, num_loops=num_loops,
                                                       num_steps=num_steps))[0]
        fold_s = time.perf_counter() - t1
        tokens, slots = _atom37_slots(record)  # each real atom in feature (= transformers') order
        samples = pred.samples
        coords = np.stack([p.positions[tokens, slots] for p in samples])  # [S, n_atoms, 3]
        plddt = np.stack([p.atom_plddt[tokens, slots] for p in samples])  # [S, n_atoms], 0-100
        pae = np.stack([p.pae for p in samples])  # [S, L, L]
        ptm = np.array([p.ptm for p in samples])
        best = int(pred.extra["sample"])
        extra = {"precision_note": model.precision_note}
    else:
        from transformers import EsmFold2Model
        from transformers.models.esmfold2 import protein_utils as pu

        dtype = getattr(torch, TRANSFORMERS_DTYPES[tool.removeprefix("transformers_")])
        model = EsmFold2Model.from_pretrained(checkpoint, dtype=dtype)  # the documented call, less device_map
        load_s, rss_loaded = time.perf_counter() - t0, _rss_now_gib()
        kwargs = {k: v for k, v in (("num_diffusion_samples", num_samples), ("num_loops", num_loops),
                                    ("num_sampling_steps", num_steps)) if v is not None}
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        out = model.infer_protein(seq, **kwargs)
        fold_s = time.perf_counter() - t1
        n_atoms = sum(len(pu.PROTEIN_HEAVY_ATOMS[pu.PROTEIN_1TO3.get(c, "UNK")]) for c in seq)
        coords = out.sample_atom_coords.float()[:, :n_atoms].numpy()
        plddt = out.plddt_per_atom.float()[:, :n_atoms].numpy() * 100.0  # 0-1 -> 0-100
        pae = out.pae.float()[:, :length, :length].numpy()
        ptm = out.ptm.float().numpy()
        best = int(np.argmax(ptm))  # the sample transformers' output_to_pdb picks
        extra = {"dtype": str(dtype).removeprefix("torch.")}
    np.savez(npz, coords=coords, plddt=plddt, pae=pae, ptm=ptm, best=best)
    return {"tool": tool, "length": length, "status": "ok", "load_s": round(load_s, 2), "fold_s": round(fold_s, 2),
            "peak_rss_gib": _peak_gib(), "rss_after_load_gib": rss_loaded, "num_samples": int(ptm.shape[0]),
            "best_sample": best, "threads": torch.get_num_threads(), **extra}


def _child_search(checkpoint: str, length: int, num_samples: int | None, seed: int, full_fold: bool) -> dict:
    """One max-length probe: foldatlas' defaults (fewer loops and steps unless ``full_fold``), peak memory."""
    from foldatlas.models.loading import load_folding_model
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.seq.records import make_record

    model = load_folding_model(checkpoint, device="cpu")
    rss_loaded = _rss_now_gib()
    cut = {} if full_fold else {"num_loops": 0, "num_steps": 2}  # same tensors each loop/step: same peak
    options = FoldOptions(seed=seed, num_samples=num_samples, **cut)
    t0 = time.perf_counter()
    fold_batch(model, [make_record("long", protein_sequence(length)[0])], options)
    return {"length": length, "status": "ok", "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gib": _peak_gib(), "rss_after_load_gib": rss_loaded, "run_settings": model.run_settings(options),
            "foldatlas_activation_estimate_gib": round(model.estimate_peak_bytes(length, options) / 2**30, 2)}


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run one measured configuration in a fresh process; its last stdout line is its JSON result.

    Returns
    -------
    dict
        The child's result, or ``{"status": "out of memory" | "timed out" | "failed", ...}``.
    """
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # the child is killed
        return {"status": "timed out", "timeout_s": round(timeout)}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else ""
    if proc.returncode in (-9, 137) or any(m in proc.stderr for m in _OOM_MARKERS):
        return {"status": "out of memory", "returncode": proc.returncode, "error": tail}
    return {"status": "failed", "returncode": proc.returncode, "error": tail}


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) * 1024
    return out


def machine_info() -> dict:
    """CPU model, bfloat16-relevant flags, cores, memory, package versions and the date."""
    lscpu = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        lscpu = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
    except (OSError, subprocess.SubprocessError):
        pass
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    mem = _meminfo()
    versions = {}
    for package in ("torch", "transformers", "safetensors", "numpy", "foldatlas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": lscpu.get("Model name", platform.processor()), "architecture": platform.machine(),
            "cpus": os.cpu_count(), "threads_per_core": lscpu.get("Thread(s) per core"),
            "cpu_flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")},
            "memory_total_gib": round(mem["MemTotal"] / 2**30, 2),
            "memory_available_gib": round(mem["MemAvailable"] / 2**30, 2), "python": platform.python_version(),
            **versions, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def compare(ours: str, reference: str) -> dict:
    """Largest absolute differences between two tools' saved outputs (foldatlas' best sample, then all samples).

    Parameters
    ----------
    ours, reference : str
        ``.npz`` files written by :func:`_child_fold`.

    Returns
    -------
    dict
        Coordinates and PAE in Å, pLDDT on the 0-100 scale, pTM; ``same_best_sample`` says whether both
        tools rank the same sample first.
    """
    import numpy as np

    x, y = np.load(ours), np.load(reference)
    if x["coords"].shape != y["coords"].shape:
        return {"error": f"output shapes differ: {x['coords'].shape} against {y['coords'].shape}"}
    k = int(x["best"])

    def diff(a, b) -> float:
        return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0

    keys = (("coords", "coords_angstrom"), ("plddt", "plddt"), ("pae", "pae_angstrom"), ("ptm", "ptm"))
    best = {name: diff(x[key][k], y[key][k]) for key, name in keys}
    best["coords_mean_abs_angstrom"] = float(np.mean(np.abs(x["coords"][k].astype(np.float64) - y["coords"][k])))
    return {"sample": k, "same_best_sample": k == int(y["best"]), **best,
            "all_samples": {name: diff(x[key], y[key]) for key, name in keys}}


def _ratios(ours: dict, reference: dict) -> dict:
    """transformers over foldatlas: seconds to load, seconds to fold, peak memory."""
    return {key: round(reference[key] / ours[key], 3) if ours[key] else None
            for key in ("load_s", "fold_s", "peak_rss_gib")}


def _child_cmd(args: argparse.Namespace, checkpoint: str, *mode: str) -> list[str]:
    cmd = [sys.executable, __file__, "--checkpoint", checkpoint, "--seed", str(args.seed), *mode]
    if args.num_samples is not None:
        cmd += ["--num-samples", str(args.num_samples)]
    if args.num_loops is not None:
        cmd += ["--num-loops", str(args.num_loops)]
    if args.num_steps is not None:
        cmd += ["--num-steps", str(args.num_steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def _log(obj: dict) -> None:
    print(json.dumps(obj), file=sys.stderr, flush=True)


def bench_lengths(args: argparse.Namespace, checkpoint: str, info: dict, tmp: str) -> list[dict]:
    """Measure every tool at every length (see the module docstring).

    Returns
    -------
    list of dict
        One row per length: each tool's result, ``max_abs_diff`` and ``ratios`` against each transformers run.
    """
    tools = ["foldatlas"] + ([] if args.skip_transformers else [f"transformers_{d}" for d in args.transformers])
    weight_bytes = {"foldatlas": info["size_on_disk_gb"] * 1e9, "transformers_bf16": info["parameters"] * 2,
                    "transformers_fp32": info["parameters"] * 4}
    rows = []
    for length in args.lengths:
        row: dict = {"length": length, "sequence": protein_sequence(length)[1]}
        for tool in tools:
            available = _meminfo()["MemAvailable"]
            if weight_bytes[tool] > available and not args.no_memory_check:
                row[tool] = {"status": "skipped", "reason": f"its weights alone need "
                             f"{weight_bytes[tool] / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available "
                             f"(--no-memory-check tries anyway)"}
            else:
                npz = os.path.join(tmp, f"{tool}_{length}.npz")
                row[tool] = run_child(_child_cmd(args, checkpoint, "--child", tool, str(length), npz), args.timeout)
            _log({"length": length, "tool": tool, **row[tool]})
        ours = row["foldatlas"]
        for tool in tools[1:]:
            if ours.get("status") == "ok" and row[tool].get("status") == "ok":
                row.setdefault("max_abs_diff", {})[f"vs_{tool}"] = compare(
                    os.path.join(tmp, f"foldatlas_{length}.npz"), os.path.join(tmp, f"{tool}_{length}.npz"))
                row.setdefault("ratios", {})[f"{tool}_over_foldatlas"] = _ratios(ours, row[tool])
        rows.append(row)
    return rows


def _fit(probes: list[dict]) -> tuple[float, float] | None:
    """Least-squares ``peak_gib = a + b L^2`` through the successful probes (None below two lengths)."""
    points = sorted({(p["length"], p["peak_rss_gib"]) for p in probes if p.get("status") == "ok"})
    if len({length for length, _ in points}) < 2:
        return None
    xs, ys = [length**2 for length, _ in points], [peak for _, peak in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def search_max_length(args: argparse.Namespace, checkpoint: str) -> dict:
    """The longest sequence foldatlas folds with its defaults within the memory budget (see the module docstring).

    Returns
    -------
    dict
        ``budget_gib``, every probe, the fit, ``longest_within_budget`` (measured) and
        ``predicted_max_length`` (from the fit).
    """
    budget = args.memory_gib if args.memory_gib else round(_meminfo()["MemAvailable"] / 2**30, 2)
    deadline = time.monotonic() + args.search_seconds
    queue = sorted(args.search_lengths)
    probes: list[dict] = []
    good, bad = 0, None  # longest length within the budget, shortest one over it

    def next_length() -> int | None:
        while queue:
            length = queue.pop(0)
            if length > good and (bad is None or length < bad):
                return length
        step, fit = args.search_step, _fit(probes)
        midpoint = None if bad is None else (good + bad) // 2 // step * step
        if fit and fit[1] > 0:  # where the fit reaches the budget, at most double the longest success
            target = min(int(math.sqrt(max(budget - fit[0], 0.0) / fit[1])) // step * step, 2 * good)
            if bad is not None and target >= bad:
                target = midpoint  # the fit overshoots a measured failure: bisect
        else:
            target = 2 * good if bad is None else midpoint
        target = min(target or 0, args.search_max_length)
        converged = target - good < step or (bad is not None and target >= bad)
        return None if converged else target

    while (length := next_length()) is not None:
        remaining = deadline - time.monotonic()
        if remaining < 1:
            break
        cmd = _child_cmd(args, checkpoint, "--child-search", str(length))
        if args.search_full_fold:
            cmd.append("--search-full-fold")
        probe = run_child(cmd, min(args.timeout, remaining))
        probe.setdefault("length", length)
        probes.append(probe)
        _log({"search": True, **probe})
        if probe["status"] == "ok" and probe["peak_rss_gib"] <= budget:
            good = max(good, length)
        elif probe["status"] in ("ok", "out of memory"):
            bad = length if bad is None else min(bad, length)
        else:
            break  # timed out or failed: nothing more to learn in the time left
    fit = _fit(probes)
    predicted = None
    if fit and fit[1] > 0 and budget > fit[0]:
        predicted = int(math.sqrt((budget - fit[0]) / fit[1]))
    return {"budget_gib": budget, "full_fold": args.search_full_fold, "probes": probes,
            "fit_peak_gib": None if fit is None else {"a": round(fit[0], 3), "b_per_length_squared": fit[1]},
            "longest_within_budget": good or None, "shortest_over_budget": bad, "predicted_max_length": predicted}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="an ESMFold2 checkpoint folder (make_fold2_checkpoint.py)")
    p.add_argument("--size", choices=("tiny",), help="build a tiny random checkpoint in a temporary folder instead")
    p.add_argument("--tiny-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="storage dtype of the --size tiny checkpoint (bfloat16 as the full one)")
    p.add_argument("--lengths", type=int, nargs="*", default=[64, 128])
    p.add_argument("--num-samples", type=int, default=None, help="diffusion samples (default: the checkpoint's)")
    p.add_argument("--num-loops", type=int, default=None, help="trunk loops, both tools (default: the checkpoint's)")
    p.add_argument("--num-steps", type=int, default=None,
                   help="noise-schedule length, both tools (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads in each run (default: torch's)")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--transformers", nargs="+", choices=tuple(TRANSFORMERS_DTYPES), default=["bf16", "fp32"],
                   help="which plain-transformers precisions to run")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per measured configuration")
    p.add_argument("--no-memory-check", action="store_true",
                   help="run a configuration even when its weights alone exceed the available memory")
    p.add_argument("--max-length-search", action="store_true")
    p.add_argument("--search-lengths", type=int, nargs="+", default=[128, 256], help="first probe lengths")
    p.add_argument("--search-step", type=int, default=32, help="stop when the bracket is narrower than this")
    p.add_argument("--search-max-length", type=int, default=4096)
    p.add_argument("--search-seconds", type=float, default=4 * 3600, help="time cap of the whole search")
    p.add_argument("--search-full-fold", action="store_true",
                   help="probe with the complete default loops and steps (same peak, many times the time)")
    p.add_argument("--memory-gib", type=float, default=None, help="search budget (default: available at start)")
    p.add_argument("--child", nargs=3, metavar=("TOOL", "LENGTH", "NPZ"), help=argparse.SUPPRESS)
    p.add_argument("--child-search", type=int, help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = _parser().parse_args()
    if args.child or args.child_search:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.child:
            tool, length, npz = args.child
            result = _child_fold(tool, args.checkpoint, int(length), npz, args.num_samples, args.seed,
                                 args.num_loops, args.num_steps)
        else:
            result = _child_search(args.checkpoint, args.child_search, args.num_samples, args.seed,
                                   args.search_full_fold)
        print(json.dumps(result))
        return
    if not args.checkpoint and not args.size:
        raise SystemExit("give --checkpoint FOLDER (make_fold2_checkpoint.py) or --size tiny")
    from make_fold2_checkpoint import checkpoint_info  # this script's sibling

    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            import torch

            from foldatlas.models.random_checkpoint import write_random_esmfold2

            checkpoint = str(write_random_esmfold2(Path(tmp) / "checkpoint", size=args.size,
                                                   lm_dtype=getattr(torch, args.tiny_dtype)))
        info = checkpoint_info(checkpoint)
        config = json.loads((Path(checkpoint) / "config.json").read_text())
        info["default_num_samples"] = config.get("structure_head", {}).get("num_diffusion_samples")
        info["num_loops"] = config.get("num_loops")
        info["num_steps"] = config.get("structure_head", {}).get("inference_num_steps")
        summary = {"benchmark": "fold2", "checkpoint": args.checkpoint or f"random {args.size} ({args.tiny_dtype})",
                   **info, "num_samples": args.num_samples or info["default_num_samples"], "seed": args.seed,
                   "run_num_loops": args.num_loops, "run_num_steps": args.num_steps,
                   "threads": args.threads, "timeout_s": args.timeout, "machine": machine,
                   "results": bench_lengths(args, checkpoint, info, tmp)}
        if args.max_length_search:
            summary["max_length_search"] = search_max_length(args, checkpoint)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
