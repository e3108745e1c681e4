"""Writing a prediction's files: PDB, mmCIF, JSON, PAE JSON and PNG, atomically.

A model that predicts the distance error (ESMFold2) adds ``{name}.pde.json``; one that
draws several samples keeps each as ``{name}_sample_{k}.pdb``, ``.cif``, ``.pae.json`` and
``.json`` (k as transformers numbers the samples, from 0), the best one also being ``{name}.*``.

The record's ``{name}.json`` is written last: its presence marks the record as
done, so a rerun skips it and a crash leaves no record half-marked.
"""

from __future__ import annotations

import json
from pathlib import Path

from foldatlas.files import atomic_write_bytes, atomic_write_text
from foldatlas.predict.plots import confidence_png
from foldatlas.predict.prediction import Prediction

__all__ = ["write_prediction", "load_done"]


def write_prediction(prediction: Prediction, folder: str | Path, stem: str, plot: bool = True,
                     extra: dict | None = None) -> dict:
    """Write every output file of one prediction.

    Parameters
    ----------
    prediction : Prediction
    folder : str or Path
    stem : str
        Safe file name stem of the record.
    plot : bool
        Also write the pLDDT/PAE PNG.
    extra : dict, optional
        More keys for ``{stem}.json`` (timing, batch).

    Returns
    -------
    dict
        The content written to ``{stem}.json``.
    """
    folder = Path(folder)
    paths = {"pdb": folder / f"{stem}.pdb", "cif": folder / f"{stem}.cif",
             "pae": folder / f"{stem}.pae.json", "json": folder / f"{stem}.json"}
    atomic_write_text(paths["pdb"], prediction.to_pdb())
    weights = (extra or {}).get("model_weights_sha256")
    atomic_write_text(paths["cif"], prediction.to_mmcif(weights=weights))
    atomic_write_text(paths["pae"], json.dumps(prediction.pae_json(), separators=(",", ":")))
    if prediction.pde is not None:
        atomic_write_text(folder / f"{stem}.pde.json", json.dumps(prediction.pde_json(), separators=(",", ":")))
    for sample in prediction.samples:
        sample_stem = f"{stem}_sample_{sample.extra['sample']}"
        atomic_write_text(folder / f"{sample_stem}.pdb", sample.to_pdb())
        atomic_write_text(folder / f"{sample_stem}.cif", sample.to_mmcif(weights=weights))
        atomic_write_text(folder / f"{sample_stem}.pae.json", json.dumps(sample.pae_json(), separators=(",", ":")))
        atomic_write_text(folder / f"{sample_stem}.json", json.dumps(sample.to_dict(include_pae=False),
                                                                    separators=(",", ":")))
    if plot:
        paths["png"] = folder / f"{stem}.png"
        atomic_write_bytes(paths["png"], confidence_png(prediction))
    data = prediction.to_dict(include_pae=True)
    data.update(extra or {})
    atomic_write_text(paths["json"], json.dumps(data, separators=(",", ":")))  # last: the done marker
    return data


def load_done(folder: str | Path, stem: str, sequence: str) -> dict | None:
    """The parsed ``{stem}.json`` if it exists for this exact sequence (a finished record), else None."""
    path = Path(folder) / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("sequence") == sequence else None
