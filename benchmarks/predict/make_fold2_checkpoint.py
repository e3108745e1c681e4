"""Write the random-weight ESMFold2 checkpoint the ESMFold2 fold benchmark runs on.

``full``: the ESMFold2-Fast architecture (ESM C 6B bundled as ``esmc.*``, 24 folding-trunk blocks, no MSA
encoder; 6.6 B parameters) built directly in bfloat16, as the released checkpoints are stored: about 13 GB
on disk, about 15 GiB of memory while it is written. Random weights fold nothing, but cost what the real
model costs. ``tiny``: every part at a width of 32-64 (seconds; what the smoke test uses).

Prints one JSON object: the folder, size on disk, parameter count by stored dtype, seconds and the peak
resident memory of this process.

Usage::

    python benchmarks/predict/make_fold2_checkpoint.py /work/data/esmfold2_full_random --size full
    python benchmarks/predict/make_fold2_checkpoint.py /tmp/esmfold2_tiny --size tiny
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def checkpoint_info(folder: str | Path) -> dict:
    """Size on disk and parameter counts of a safetensors checkpoint, read from the file headers only.

    Parameters
    ----------
    folder : str or Path
        A folder with ``config.json`` and ``*.safetensors`` files.

    Returns
    -------
    dict
        ``size_on_disk_gb`` (all files in the folder, 10^9 bytes), ``parameters`` (total),
        ``parameters_by_dtype`` (safetensors dtype name -> count) and ``esmc_parameters`` (the bundled
        language model's share).
    """
    folder = Path(folder)
    by_dtype: dict[str, int] = {}
    esmc = 0
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in meta["shape"]:
                count *= int(dim)
            by_dtype[meta["dtype"]] = by_dtype.get(meta["dtype"], 0) + count
            esmc += count if key.startswith("esmc.") else 0
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"size_on_disk_gb": round(size / 1e9, 3), "parameters": sum(by_dtype.values()),
            "parameters_by_dtype": by_dtype, "esmc_parameters": esmc}


def make_checkpoint(folder: str | Path, size: str = "full", seed: int = 0, num_samples: int | None = None,
                    dtype: str | None = None) -> dict:
    """Write a random ESMFold2 checkpoint and describe it.

    Parameters
    ----------
    folder : str or Path
    size : {"full", "tiny"}
        See :func:`foldatlas.models.random_checkpoint.esmfold2_config_dict`.
    seed : int
    num_samples : int, optional
        The checkpoint's default number of diffusion samples (None: transformers' default, 8 for ``full``).
    dtype : {"bfloat16", "float32"}, optional
        Storage dtype (None: bfloat16 for ``full``, as released; float32 for ``tiny``).

    Returns
    -------
    dict
        :func:`checkpoint_info` plus ``folder``, ``size``, ``seed``, ``seconds`` and ``peak_rss_gib``.
    """
    import torch

    from foldatlas.models.random_checkpoint import write_random_esmfold2

    t0 = time.perf_counter()
    path = write_random_esmfold2(folder, size=size, seed=seed, num_samples=num_samples,
                                 lm_dtype=getattr(torch, dtype) if dtype else None)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"folder": str(path), "size": size, "seed": seed, **checkpoint_info(path),
            "seconds": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 2),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="where to write config.json and the safetensors shards")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=None,
                        help="the checkpoint's default diffusion samples (default: transformers', 8 for full)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                        help="storage dtype (default: bfloat16 for full, as released; float32 for tiny)")
    args = parser.parse_args()
    print(json.dumps(make_checkpoint(args.folder, args.size, args.seed, args.num_samples, args.dtype)))


if __name__ == "__main__":
    main()
