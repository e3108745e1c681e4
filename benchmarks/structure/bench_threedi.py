"""Foldseek 3Di states per chain: biotite's ``Encoder().encode`` (masked arrays) against
:func:`foldatlas.structure.threedi.backbone_states` (the same geometry, descriptors and network on plain arrays).

Chains: every PDB file in a folder (default the 19 CASP14 domains of ../shared/eval/structure/pdb), each encoded
as is and with 5% of its N, C, CA and CB atoms removed. Reports milliseconds per chain of each, their ratio, and
how many residues got a different state (0 expected). Prints JSON.

    python benchmarks/structure/bench_threedi.py [--pdb DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    from biotite.structure.alphabet.encoder import Encoder

    from foldatlas.structure.io import read_structure
    from foldatlas.structure.threedi import UNDEFINED, _backbone, backbone_states

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdb", type=Path, default=Path(__file__).resolve().parents[3] / "shared/eval/structure/pdb")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    chains = []
    for path in sorted(args.pdb.glob("*.pdb*")):
        backbone = _backbone(read_structure(path))
        chains.append(backbone)
        holes = tuple(x.copy() for x in backbone)
        for arr in holes:
            arr[rng.choice(len(arr), max(1, len(arr) // 20), replace=False)] = np.nan
        chains.append(holes)

    def biotite(ca, cb, n, c):
        with np.errstate(invalid="ignore", divide="ignore"):
            codes = Encoder().encode(ca, cb, n, c)
        return np.where(np.ma.getmaskarray(codes), UNDEFINED, np.ma.getdata(codes))

    out = {}
    results = {}
    for name, fn in (("biotite_ms_per_chain", biotite), ("foldatlas_ms_per_chain", backbone_states)):
        fn(*chains[0])
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            results[name] = [fn(*chain) for chain in chains]
            best = min(best, time.perf_counter() - start)
        out[name] = round(best / len(chains) * 1000, 3)
    a, b = results.values()
    out.update(chains=len(chains), residues=int(sum(len(x) for x in a)),
               residues_differing=int(sum((x != y).sum() for x, y in zip(a, b))),
               speedup=round(out["biotite_ms_per_chain"] / out["foldatlas_ms_per_chain"], 2),
               machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
               date=time.strftime("%Y-%m-%d"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
