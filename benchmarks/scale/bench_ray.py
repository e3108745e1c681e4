"""Atlas build throughput on Ray with 1 and 2 workers against the single-machine build. Prints JSON.

Folds the same records (the embedded model, embeddings on) into fresh atlases:

* ``single``: ``build_atlas`` in this process with all CPU threads;
* ``ray_1x1``: a local Ray cluster, 1 worker with 1 thread;
* ``ray_1x2``: 1 worker with 2 threads;
* ``ray_2x1``: 2 workers with 1 thread each.

Each Ray run is repeated on its finished atlas (nothing left to fold) to measure the fixed cost (cluster start,
model loading in every worker); folding throughput is records / (wall - fixed). Scaling efficiency:
throughput of 2 workers over twice that of 1 worker (1 thread each); also 2 workers against 1 worker using both
cores, and against the single-machine build. Usage::

    python benchmarks/scale/bench_ray.py [--records 40] [--length 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--model", default="foldatlas-fold-small")
    args = parser.parse_args()

    from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
    from foldatlas.models.embedding import load_embedder
    from foldatlas.models.loading import load_folding_model
    from foldatlas.models.registry import DEFAULT_LM
    from foldatlas.scale.ray_build import RayOptions, build_atlas_ray
    from foldatlas.seq.records import make_record

    rng = random.Random(0)
    records = [make_record(f"R{k:03d}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(args.length)))
               for k in range(args.records)]
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    options = BuildOptions()
    quiet = dict(progress=False, log=lambda m: None)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": date.today().isoformat(),
           "model": args.model, "records": args.records, "length": args.length, "runs": {}}
    try:
        start = time.perf_counter()
        model = load_folding_model(args.model, threads=os.cpu_count())
        embedder = load_embedder(DEFAULT_LM)
        loaded = time.perf_counter() - start
        with open_atlas(work / "single", create=True) as atlas:
            start = time.perf_counter()
            build_atlas(atlas, records, model, embedder, options, **quiet)
            seconds = time.perf_counter() - start
        out["runs"]["single"] = {"fold_seconds": round(seconds, 1), "load_seconds": round(loaded, 1),
                                 "records_per_second": round(args.records / seconds, 3)}
        for name, workers, cpus in (("ray_1x1", 1, 1), ("ray_1x2", 1, 2), ("ray_2x1", 2, 1)):
            folder = work / name
            ray_options = RayOptions(workers=workers, cpus_per_worker=cpus)
            walls = []
            for _ in range(2):  # the second run folds nothing: the fixed cost
                with open_atlas(folder, create=True) as atlas:
                    start = time.perf_counter()
                    build_atlas_ray(atlas, records, args.model, DEFAULT_LM, options, ray_options, **quiet)
                    walls.append(time.perf_counter() - start)
            fold = walls[0] - walls[1]
            out["runs"][name] = {"wall_seconds": round(walls[0], 1), "fixed_seconds": round(walls[1], 1),
                                 "fold_seconds": round(fold, 1), "records_per_second": round(args.records / fold, 3)}
        r = out["runs"]
        out["scaling_efficiency_2_workers"] = round(
            r["ray_2x1"]["records_per_second"] / (2 * r["ray_1x1"]["records_per_second"]), 3)
        out["ray_2x1_over_ray_1x2"] = round(r["ray_2x1"]["records_per_second"] / r["ray_1x2"]["records_per_second"], 3)
        out["ray_2x1_over_single"] = round(r["ray_2x1"]["records_per_second"] / r["single"]["records_per_second"], 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
