"""How to store an entry's structure and PAE: sizes and speeds of candidate encodings, measured.

Structures: the 19 CASP14 domains of ../shared/eval/structure (experimental, all atoms) and the predictions of the
embedded folding model for their sequences (all atoms, per-atom pLDDT in the B-factors). For each: PDB text and
mmCIF text compressed with zstd, BinaryCIF as biotite writes it, BinaryCIF with biotite's search of the smallest
encoding per column (``compress``), BinaryCIF as the atlas encodes it (``codec.encode_structure``: a fixed encoding
chain per column type), each of those with zstd; encode times of the last two and the decode time of the
atlas'. PAE of the same predictions: float16, uint16 hundredths and uint8 eighths of an Angstrom, each
zstd-compressed, and the largest error of each. Prints JSON.

    python benchmarks/atlas/bench_codec.py [--eval ../shared/eval/structure]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def _structure_sizes(atoms) -> dict:
    import zstandard
    from biotite.structure.io import pdbx

    from foldatlas.atlas import codec
    from foldatlas.structure.io import to_mmcif_string, to_pdb_string

    z = zstandard.ZstdCompressor(level=9)
    pdb = to_pdb_string(atoms).encode()
    cif = to_mmcif_string(atoms).encode()
    plain = pdbx.BinaryCIFFile()
    pdbx.set_structure(plain, atoms)
    buf = io.BytesIO()
    plain.write(buf)
    bcif = buf.getvalue()
    t = time.perf_counter()
    blob = codec.encode_structure(atoms)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    codec.decode_structure(blob)
    decode_s = time.perf_counter() - t
    t = time.perf_counter()  # biotite's search of the smallest encoding per column (the atlas' earlier choice)
    searched = pdbx.compress(plain)
    buf = io.BytesIO()
    searched.write(buf)
    searched_blob = z.compress(buf.getvalue())
    compress_s = time.perf_counter() - t
    t = time.perf_counter()
    from biotite.structure.io import pdb as pdbio

    pdbio.PDBFile.read(io.StringIO(zstandard.ZstdDecompressor().decompress(z.compress(pdb)).decode())).get_structure(
        model=1, extra_fields=["b_factor"])
    pdb_decode_s = time.perf_counter() - t
    return {"atoms": atoms.array_length(), "pdb": len(pdb), "pdb_zstd": len(z.compress(pdb)),
            "mmcif_zstd": len(z.compress(cif)), "bcif": len(bcif), "bcif_zstd": len(z.compress(bcif)),
            "bcif_encoded_zstd": len(blob), "encode_ms": encode_s * 1e3, "decode_ms": decode_s * 1e3,
            "bcif_compress_search_zstd": len(searched_blob), "compress_search_encode_ms": compress_s * 1e3,
            "pdb_zstd_decode_ms": pdb_decode_s * 1e3}


def _pae_sizes(pae: np.ndarray) -> dict:
    import zstandard

    z = zstandard.ZstdCompressor(level=9)
    f16 = pae.astype(np.float16)
    u16 = np.round(pae * 100).astype(np.uint16)
    u8 = np.round(pae * 8).clip(0, 255).astype(np.uint8)
    return {"residues": pae.shape[0], "float16_zstd": len(z.compress(f16.tobytes())),
            "uint16_hundredths_zstd": len(z.compress(u16.tobytes())),
            "uint8_eighths_zstd": len(z.compress(u8.tobytes())),
            "float16_max_error": float(np.abs(f16.astype(np.float32) - pae).max()),
            "uint16_max_error": float(np.abs(u16 / 100 - pae).max()),
            "uint8_max_error": float(np.abs(u8 / 8 - pae).max())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=Path(__file__).resolve().parents[3] / "shared/eval/structure")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N domains.")
    args = parser.parse_args(argv)

    from foldatlas.api import load_model
    from foldatlas.predict.engine import fold_batch
    from foldatlas.seq.fasta import read_fasta
    from foldatlas.structure.io import read_structure

    model = load_model()
    experimental, predicted, pae = [], [], []
    for rec in read_fasta(args.eval / "targets.fasta")[:args.limit]:
        experimental.append(_structure_sizes(read_structure(args.eval / "pdb" / f"{rec.name}.pdb")))
        pred = fold_batch(model, [rec])[0]
        predicted.append(_structure_sizes(pred.to_atoms()))
        pae.append(_pae_sizes(pred.pae))

    def summary(rows: list[dict]) -> dict:
        out = {"structures": len(rows)}
        atoms = sum(r["atoms"] for r in rows)
        for key in rows[0]:
            if key == "atoms":
                continue
            if key.endswith("_ms"):
                out[key] = round(float(np.mean([r[key] for r in rows])), 2)
            else:
                out[f"{key}_bytes_per_atom"] = round(sum(r[key] for r in rows) / atoms, 2)
        return out

    pae_summary = {"matrices": len(pae), "residues_squared": int(sum(r["residues"] ** 2 for r in pae))}
    for key in ("float16_zstd", "uint16_hundredths_zstd", "uint8_eighths_zstd"):
        pae_summary[f"{key}_bytes_per_value"] = round(sum(r[key] for r in pae) / pae_summary["residues_squared"], 3)
    for key in ("float16_max_error", "uint16_max_error", "uint8_max_error"):
        pae_summary[key] = round(max(r[key] for r in pae), 4)
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"),
                      "experimental": summary(experimental), "predicted_by_embedded_model": summary(predicted),
                      "pae": pae_summary}, indent=1))


if __name__ == "__main__":
    main()
