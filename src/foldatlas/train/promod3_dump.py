"""Dump ProMod3's StructureDB to one NPZ file.

Run by Debian's ``/usr/bin/python3`` (where ``python3-promod3`` lives), not by
the project's virtual environment, so it imports nothing from foldatlas:
``/usr/bin/python3 promod3_dump.py OUT.npz [--limit N]``.

Arrays written (residues of all chains concatenated, chain ``k`` spanning
``offsets[k]:offsets[k+1]``):

* ``ids`` (str): ``"<PDB id>_<chain>"``; ``start_resnum`` (int32);
* ``offsets`` (int64, n_chains + 1);
* ``sequence``, ``dssp`` (one str each, concatenated);
* ``coords`` (float32, n_res x 5 x 3): N, CA, C, O, CB in angstroms;
* ``profile`` (float16, n_res x 20): the StructureDB's per-residue sequence
  profile frequencies, columns in the order ``ARNDCQEGHILKMFPSTWYV``.
"""

import argparse
import os
import sys

import numpy as np

DB_PATH = "/usr/share/promod3/loop_data/structure_db.dat"
PROFILE_ORDER = "ARNDCQEGHILKMFPSTWYV"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--db", default=DB_PATH)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    from promod3 import loop

    db = loop.StructureDB.Load(args.db)
    n = db.GetNumCoords() if args.limit is None else min(args.limit, db.GetNumCoords())
    ids, starts, offsets, seqs, dssps, coords, profiles = [], [], [0], [], [], [], []
    for k in range(n):
        info = db.GetCoordInfo(k)
        seq = db.GetSequence(k)
        bb = db.GetBackboneList(k)
        prof = db.GetSequenceProfile(k)
        m = len(seq)
        xyz = np.empty((m, 5, 3), dtype=np.float32)
        for i in range(m):
            for a, get in enumerate((bb.GetN, bb.GetCA, bb.GetC, bb.GetO, bb.GetCB)):
                v = get(i)
                xyz[i, a] = (v[0], v[1], v[2])
        freq = np.array([[col.GetFreq(c) for c in PROFILE_ORDER] for col in prof.columns], dtype=np.float32)
        ids.append(f"{info.id}_{info.chain_name}")
        starts.append(info.start_resnum)
        offsets.append(offsets[-1] + m)
        seqs.append(seq)
        dssps.append(db.GetDSSPStates(k))
        coords.append(xyz)
        profiles.append(freq.astype(np.float16))
        if (k + 1) % 2000 == 0:
            print(f"{k + 1}/{n} chains", file=sys.stderr, flush=True)
    tmp = args.out + ".tmp.npz"
    np.savez_compressed(
        tmp, ids=np.array(ids), start_resnum=np.array(starts, dtype=np.int32),
        offsets=np.array(offsets, dtype=np.int64), sequence=np.array("".join(seqs)),
        dssp=np.array("".join(dssps)), coords=np.concatenate(coords), profile=np.concatenate(profiles),
    )
    os.replace(tmp, args.out)
    print(f"{n} chains, {offsets[-1]} residues -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
