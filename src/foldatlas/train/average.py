"""Average the weights of several fine-tunings of one folding model ("model soup").

Fine-tunings that start from the same model and differ only in their losses stay close enough in weight space that
their parameter-by-parameter average is itself a working model, and often a better one than either (Wortsman et
al. 2022, "Model soups"). For the embedded folding model (issue 21) the geometry losses trade TM-score against
clashes: a run with a small clash weight folds better and clashes more, one with a larger weight the reverse, and
their average lands between the two on clashes while keeping most of the better one's TM-score (BENCHMARKS.md,
"The clash loss against the clashscore, and averaging two fine-tunings"). :func:`average_fold_runs` writes the
average as a run folder that ``foldatlas train fold-release`` releases like any other, and whose ``average.json``
the model card describes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from foldatlas.errors import InvalidFileError, InvalidOptionError
from foldatlas.files import atomic_write_text

__all__ = ["average_fold_runs"]


def _ingredient(run: Path) -> Path:
    """The weights file of a run folder (``model/model.safetensors``), checked."""
    path = Path(run) / "model" / "model.safetensors"
    if not path.is_file() or not (Path(run) / "config.json").is_file() or not (Path(run) / "log.jsonl").is_file():
        raise InvalidFileError(f"{run}: not a run folder of 'foldatlas train fold' (model/model.safetensors, "
                               "config.json, log.jsonl)")
    return path


def average_fold_runs(runs: list[tuple[str | Path, float]], out: str | Path) -> dict:
    """Write the weighted average of the models of ``runs`` as the run folder ``out``.

    Parameters
    ----------
    runs : list of (path, float)
        Run folders of ``foldatlas train fold`` (fine-tunings of one model: same architecture and tensors) and their
        weights (positive; normalised to sum to 1).
    out : path
        The new run folder: ``model/`` (float32; the first run's config and tokenizer files), ``config.json`` and
        ``log.jsonl`` lent by the run of the largest weight (so that ``foldatlas train fold-release`` describes its
        training) and ``average.json`` (the runs, their weights and configs).

    Returns
    -------
    dict
        The contents of ``average.json``.

    Raises
    ------
    InvalidOptionError
        Fewer than two runs, a weight that is not positive, or runs whose tensors differ in name or shape.
    InvalidFileError
        A path that is not a run folder.
    """
    import torch
    from safetensors.torch import load_file, save_file

    if len(runs) < 2:
        raise InvalidOptionError("averaging needs at least two runs")
    if any(not w > 0 for _, w in runs):
        raise InvalidOptionError("every run's weight must be positive")
    started = time.time()
    paths = [_ingredient(Path(r)) for r, _ in runs]
    total = sum(w for _, w in runs)
    weights = [w / total for _, w in runs]
    states = [load_file(str(p)) for p in paths]
    first = states[0]
    for (run, _), state in zip(runs[1:], states[1:]):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise InvalidOptionError(f"{run}: its model has other tensors than {runs[0][0]}'s: not the same "
                                     "architecture")
    averaged, differing = {}, 0
    for name, tensor in first.items():
        if not tensor.is_floating_point():
            averaged[name] = tensor
            continue
        mixed = sum(w * s[name].to(torch.float32) for w, s in zip(weights, states))
        averaged[name] = mixed.contiguous()
        differing += any(not torch.equal(s[name], tensor) for s in states[1:])
    out = Path(out)
    model_dir = out / "model"
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in paths[0].parent.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copyfile(f, tmp / f.name)
    save_file(averaged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.replace(model_dir)
    lead = max(range(len(runs)), key=lambda k: weights[k])
    for name in ("config.json", "log.jsonl"):
        shutil.copyfile(Path(runs[lead][0]) / name, out / name)
    summary = {"runs": [{"run": str(Path(r)), "weight": round(w, 6),
                         "config": json.loads((Path(r) / "config.json").read_text())}
                        for (r, _), w in zip(runs, weights)],
               "lead": lead, "tensors": len(averaged), "tensors_differing": differing,
               "seconds": round(time.time() - started, 1)}
    atomic_write_text(out / "average.json", json.dumps(summary, indent=2))
    return summary
