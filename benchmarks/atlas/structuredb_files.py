"""Write ProMod3's StructureDB chains as gzipped PDB files, the input of the atlas import benchmark.

Input: the NPZ written by ``src/foldatlas/train/promod3_dump.py`` (run it with Debian's ``/usr/bin/python3``,
where ``python3-promod3`` lives). Output: one ``<PDB id>_<chain>.pdb.gz`` per chain with the backbone atoms the
database holds (N, CA, C, O and CB; no CB for glycine), residues numbered from the chain's first residue number,
and a FASTA of all chains.

    /usr/bin/python3 src/foldatlas/train/promod3_dump.py /work/data/structuredb.npz
    python benchmarks/atlas/structuredb_files.py /work/data/structuredb.npz /work/data/structuredb_pdb
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz")
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)

    import biotite.structure as struc

    from foldatlas.seq.alphabet import RESTYPE_1TO3
    from foldatlas.structure.io import to_pdb_string

    data = np.load(args.npz)
    ids, offsets, sequence, coords = data["ids"], data["offsets"], str(data["sequence"]), data["coords"]
    starts = data["start_resnum"]
    n = len(ids) if args.limit is None else min(args.limit, len(ids))
    args.out.mkdir(parents=True, exist_ok=True)
    names = ("N", "CA", "C", "O", "CB")
    t0 = time.perf_counter()
    with open(args.out / "chains.fasta", "w") as fasta:
        for k in range(n):
            seq = sequence[offsets[k]:offsets[k + 1]]
            xyz = coords[offsets[k]:offsets[k + 1]]
            keep = [(i, a) for i in range(len(seq)) for a in range(5) if not (a == 4 and seq[i] == "G")]
            atoms = struc.AtomArray(len(keep))
            atoms.coord = np.array([xyz[i, a] for i, a in keep], dtype=np.float32)
            atoms.chain_id[:] = "A"
            atoms.res_id = np.array([int(starts[k]) + i for i, _ in keep])
            atoms.res_name = np.array([RESTYPE_1TO3.get(seq[i], "UNK") for i, _ in keep])
            atoms.atom_name = np.array([names[a] for _, a in keep])
            atoms.element = np.array([names[a][0] for _, a in keep])
            atoms.hetero[:] = False
            atoms.set_annotation("b_factor", np.zeros(len(keep), dtype=np.float32))
            text = to_pdb_string(atoms, remarks=[f"ProMod3 StructureDB chain {ids[k]}"])
            (args.out / f"{ids[k]}.pdb.gz").write_bytes(gzip.compress(text.encode(), compresslevel=6))
            fasta.write(f">{ids[k]}\n{seq}\n")
            if (k + 1) % 2000 == 0:
                print(f"{k + 1}/{n}", file=sys.stderr, flush=True)
    print(json.dumps({"chains": n, "residues": int(offsets[n]), "seconds": round(time.perf_counter() - t0, 1),
                      "out": str(args.out)}))


if __name__ == "__main__":
    main()
