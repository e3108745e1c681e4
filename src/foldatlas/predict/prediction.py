"""The typed result of folding one record (numpy only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from foldatlas.seq.records import Record

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """A predicted structure with its confidence, linkers removed.

    Attributes
    ----------
    record : Record
        What was folded.
    aatype : ndarray of int, shape (L,)
        Residue types (``RESTYPES_WITH_X`` order) of the real residues.
    positions : ndarray of float32, shape (L, 37, 3)
        atom37 coordinates (Å).
    atom_mask : ndarray of float32, shape (L, 37)
    atom_plddt : ndarray of float32, shape (L, 37)
        Per-atom pLDDT on the 0-100 scale (the B-factor column).
    plddt : ndarray of float32, shape (L,)
        Per-residue pLDDT, 0-100 (the Cα atom's, as in AlphaFold DB).
    pae : ndarray of float32, shape (L, L)
        Predicted aligned error (Å).
    max_pae : float
    ptm : float
    iptm : float or None
        Interface pTM of a complex; None for a single chain.
    chain_index : ndarray of int, shape (L,)
    residue_number : ndarray of int, shape (L,)
        1-based residue number within each chain.
    model_name : str
    num_recycles : int or None
        Recycles that ran (ESMFold v1); None for models that do not recycle.
    extra : dict
        More keys for the JSON (ESMFold2: seed, samples, steps, loops, ranking score, ...).
    pde : ndarray of float32, shape (L, L), or None
        Predicted distance error (Å), where the model predicts it (ESMFold2).
    samples : list of Prediction
        Every sample of a model that draws several (ESMFold2), this one included; empty otherwise.
    """

    record: Record
    aatype: np.ndarray
    positions: np.ndarray
    atom_mask: np.ndarray
    atom_plddt: np.ndarray
    plddt: np.ndarray
    pae: np.ndarray
    max_pae: float
    ptm: float
    iptm: float | None
    chain_index: np.ndarray
    residue_number: np.ndarray
    model_name: str
    num_recycles: int | None = None
    extra: dict = field(default_factory=dict)
    pde: np.ndarray | None = None
    samples: list = field(default_factory=list)
    _geometry: object = field(default=None, repr=False, compare=False)

    def check_finite(self, context: str = "") -> None:
        """Refuse NaN or infinite coordinates, pLDDT, PAE, PDE or scores: a numerical failure of the model
        (reported on some back ends and precisions) must never be written as a structure.

        Raises
        ------
        NonFiniteOutputError
        """
        from foldatlas.errors import NonFiniteOutputError

        arrays = {"coordinates": self.positions[self.atom_mask > 0], "pLDDT": self.atom_plddt, "PAE": self.pae,
                  "PDE": self.pde, "pTM": np.array([self.ptm]),
                  "ipTM": None if self.iptm is None else np.array([self.iptm])}
        bad = [what for what, values in arrays.items() if values is not None and not np.isfinite(values).all()]
        if bad:
            raise NonFiniteOutputError(f"record '{self.name}': the model produced non-finite {', '.join(bad)}"
                                       f"{f' ({context})' if context else ''}; nothing was written for it")

    @property
    def name(self) -> str:
        """The record's name."""
        return self.record.name

    @property
    def mean_plddt(self) -> float:
        """Mean per-residue pLDDT (0-100)."""
        return float(np.mean(self.plddt))

    @property
    def ca_positions(self) -> np.ndarray:
        """Cα coordinates, shape (L, 3)."""
        return self.positions[:, 1]

    def to_atoms(self):
        """The structure as a biotite ``AtomArray`` with pLDDT B-factors."""
        from foldatlas.structure.atoms import structure_from_atom37

        return structure_from_atom37(self.aatype, self.positions, self.atom_mask, self.atom_plddt,
                                     self.chain_index, self.residue_number)

    def _remarks(self) -> list[str]:
        settings = (f"num_recycles {self.num_recycles}" if self.num_recycles is not None else
                    ", ".join(f"{k} {self.extra[k]}" for k in ("seed", "num_samples", "sample", "num_steps", "num_loops")
                              if k in self.extra))
        lines = [f"foldatlas prediction of {self.name} by model {self.model_name}, {settings}"]
        if self.record.description and self.record.description != self.name:
            lines.append(f"record: {self.record.description}")
        lines.append(f"mean pLDDT {self.mean_plddt:.2f}  pTM {self.ptm:.4f}"
                     + (f"  ipTM {self.iptm:.4f}" if self.iptm is not None else ""))
        precision = self.extra.get("precision")
        if precision:
            lines.append(f"precision {precision['mode']}: language model {precision['language_model']}, "
                         f"trunk {precision['trunk']}" + (f" ({precision['autocast']} autocast)"
                                                          if precision.get("autocast") else ""))
        lines.append("B-factor column: per-atom pLDDT on the 0-100 scale")
        return lines

    def to_pdb(self) -> str:
        """PDB text, pLDDT (0-100) in the B-factor column."""
        from foldatlas.structure.io import to_pdb_string

        return to_pdb_string(self.to_atoms(), remarks=self._remarks(),
                             title=f"foldatlas prediction of {self.name} by {self.model_name}")

    def to_mmcif(self, weights: str | None = None, pae: bool = False) -> str:
        """ModelCIF text (:mod:`foldatlas.structure.modelcif`): pLDDT (0-100) in ``B_iso_or_equiv`` and as
        per-residue QA metrics, mean pLDDT, pTM and ipTM as global ones, the model (``weights``: its hash) and the
        prediction's settings; with ``pae``, PAE as pairwise metrics too."""
        from foldatlas.structure.modelcif import modelcif_text

        return modelcif_text(self.to_atoms(), self._model_info(weights, pae))

    def _model_info(self, weights: str | None, pae: bool):
        from foldatlas.structure.modelcif import ModelInfo

        parameters = {k: self.extra[k] for k in ("seed", "num_samples", "sample", "num_steps", "num_loops")
                      if k in self.extra}
        if self.num_recycles is not None:
            parameters["num_recycles"] = self.num_recycles
        if self.extra.get("precision"):
            parameters["precision"] = self.extra["precision"]["mode"]
        return ModelInfo(name=self.name, title=f"foldatlas prediction of {self.name} by {self.model_name}",
                         model=self.model_name, weights=weights, plddt=self.plddt, ptm=self.ptm, iptm=self.iptm,
                         pae=self.pae if pae else None, parameters=parameters)

    def pae_json(self) -> list[dict]:
        """PAE in AlphaFold DB's JSON form (a one-element list)."""
        return [{"predicted_aligned_error": np.round(self.pae.astype(np.float64), 2).tolist(),
                 "max_predicted_aligned_error": self.max_pae}]

    def pde_json(self) -> dict:
        """The predicted distance error matrix as JSON (``predicted_distance_error``, Å)."""
        return {"predicted_distance_error": np.round(self.pde.astype(np.float64), 2).tolist()}

    def geometry(self):
        """:class:`~foldatlas.structure.geometry.GeometryReport` of the structure (computed once)."""
        if self._geometry is None:
            from foldatlas.structure.geometry import geometry_report

            self._geometry = geometry_report(self.to_atoms())
        return self._geometry

    def geometry_dict(self) -> dict:
        """The geometry report as JSON, with ``plausible`` and the one-line ``warning`` (None when plausible)."""
        from foldatlas.structure.geometry import geometry_summary

        return geometry_summary(self.geometry(), self.ptm, self.mean_plddt)

    def to_dict(self, include_pae: bool = True) -> dict:
        """Confidence, geometry and provenance as a JSON-ready dict."""
        rec = self.record
        out = {
            "name": rec.name,
            "description": rec.description,
            "model": self.model_name,
            "sequence": rec.sequence,
            "length": rec.length,
            "chains": [{"id": cid, "sequence": seq, "length": len(seq)} for cid, seq in zip(rec.chain_ids, rec.chains)],
            "substitutions": [{"chain": c, "position": p, "original": o, "folded_as": f}
                              for c, p, o, f in rec.substitutions],
            "mean_plddt": round(self.mean_plddt, 3),
            "ptm": round(self.ptm, 5),
            "iptm": None if self.iptm is None else round(self.iptm, 5),
            "plddt": np.round(self.plddt.astype(np.float64), 2).tolist(),
            "geometry": self.geometry_dict(),
        }
        if self.num_recycles is not None:  # models that recycle (ESMFold v1); ESMFold2 records its loops in extra
            out["num_recycles"] = self.num_recycles
        out.update(self.extra)
        if include_pae:
            out.update(self.pae_json()[0])
        return out

    def to_json(self, include_pae: bool = True) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(include_pae=include_pae), separators=(",", ":"))
