"""An atlas entry: what is stored for one structure, and its output formats (numpy and biotite only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from foldatlas.atlas import codec

__all__ = ["NewEntry", "AtlasEntry", "EntrySample", "SampleScores", "ENTRY_KINDS"]

ENTRY_KINDS = ("predicted", "imported")


@dataclass(frozen=True)
class EntrySample:
    """One sample of a prediction that draws several (ESMFold2's diffusion samples), to store with its entry.

    Attributes
    ----------
    sample : int
        The sample's index in the prediction (``Prediction.extra["sample"]``), 0-based.
    structure : bytes
        :func:`foldatlas.atlas.codec.encode_structure` of the sample's structure (pLDDT B-factors).
    plddt : ndarray of float, shape (L,), or None
        Per-residue pLDDT (0-100).
    ptm, iptm, ranking_score : float or None
        The sample's pTM, interface pTM (complexes) and the score the best sample was chosen by.
    """

    sample: int
    structure: bytes
    plddt: np.ndarray | None = None
    ptm: float | None = None
    iptm: float | None = None
    ranking_score: float | None = None

    @property
    def mean_plddt(self) -> float | None:
        """Mean per-residue pLDDT, or None."""
        return None if self.plddt is None or len(self.plddt) == 0 else float(np.mean(self.plddt))


@dataclass(frozen=True)
class SampleScores:
    """A stored sample's scores, as :meth:`foldatlas.atlas.Atlas.samples` lists them (no structure).

    Attributes
    ----------
    sample : int
        The sample's index in its prediction.
    mean_plddt, ptm, iptm, ranking_score : float or None
    """

    sample: int
    mean_plddt: float | None
    ptm: float | None
    iptm: float | None
    ranking_score: float | None

    def to_dict(self) -> dict:
        """The scores as a JSON-ready dict, rounded as an entry's are."""
        return {"sample": self.sample,
                "ptm": None if self.ptm is None else round(self.ptm, 5),
                "iptm": None if self.iptm is None else round(self.iptm, 5),
                "mean_plddt": None if self.mean_plddt is None else round(self.mean_plddt, 3),
                "ranking_score": None if self.ranking_score is None else round(self.ranking_score, 5)}


@dataclass(frozen=True)
class NewEntry:
    """An entry to insert, its payload already encoded where it is a structure.

    Attributes
    ----------
    id : str
        The entry ID (FASTA header's first word, file name stem, or given).
    sequence : str
        Chains joined by ``:``.
    kind : {"predicted", "imported"}
    model : str
        The folding model's name, or ``"experimental"`` / the source for imports.
    model_version : str or None
        The folding model's weights SHA-256 (None for imports).
    structure : bytes
        :func:`foldatlas.atlas.codec.encode_structure` of the structure.
    plddt : ndarray of float, shape (L,), or None
        Per-residue pLDDT (0-100).
    ptm, iptm, max_pae : float or None
    pae : ndarray of float, shape (L, L), or None
    embedding : ndarray of float, shape (D,), or None
        Mean language-model embedding.
    description, source : str
        FASTA header or file name; where the entry came from (input file).
    provenance : dict
        JSON-ready details (foldatlas version, recycles, timing, substitutions, ...).
    samples : tuple of EntrySample
        Every sample of a prediction that draws several (ESMFold2), this entry's own one included; empty for
        ESMFold v1 and imports.
    """

    id: str
    sequence: str
    kind: str
    model: str
    structure: bytes
    model_version: str | None = None
    plddt: np.ndarray | None = None
    ptm: float | None = None
    iptm: float | None = None
    pae: np.ndarray | None = None
    max_pae: float | None = None
    embedding: np.ndarray | None = None
    description: str = ""
    source: str = ""
    provenance: dict = field(default_factory=dict)
    samples: tuple[EntrySample, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ENTRY_KINDS:
            raise ValueError(f"kind must be one of {ENTRY_KINDS}")
        n = len(self.sequence.replace(":", ""))
        if self.plddt is not None and len(self.plddt) != n:
            raise ValueError(f"entry {self.id}: {len(self.plddt)} pLDDT values for {n} residues")
        if self.pae is not None and np.shape(self.pae) != (n, n):
            raise ValueError(f"entry {self.id}: PAE of shape {np.shape(self.pae)} for {n} residues")
        object.__setattr__(self, "samples", tuple(self.samples))
        indices = [s.sample for s in self.samples]
        if len(set(indices)) != len(indices) or any(k < 0 for k in indices):
            raise ValueError(f"entry {self.id}: sample indices must be distinct and >= 0, not {indices}")
        for s in self.samples:
            if s.plddt is not None and len(s.plddt) != n:
                raise ValueError(f"entry {self.id}: sample {s.sample} has {len(s.plddt)} pLDDT values for "
                                 f"{n} residues")

    @property
    def length(self) -> int:
        """Residues over all chains."""
        return len(self.sequence.replace(":", ""))

    @property
    def mean_plddt(self) -> float | None:
        """Mean per-residue pLDDT, or None."""
        return None if self.plddt is None or len(self.plddt) == 0 else float(np.mean(self.plddt))


@dataclass
class AtlasEntry:
    """An entry read from an atlas.

    Attributes
    ----------
    id : str
        The entry ID (an alias given to :meth:`Atlas.get` resolves to it).
    checksum : str
        MD5 of the sequence (the deduplication key).
    crc64 : str
        UniProt-style CRC64 of the sequence (the ESM Atlas ``sequenceChecksum``).
    sequence : str
        Chains joined by ``:``.
    length : int
    kind, model, model_version, description, source, created : str
    mean_plddt, ptm, iptm, max_pae : float or None
    plddt : ndarray of float32, shape (L,), or None
    pae : ndarray of float32, shape (L, L), or None
        Loaded only when asked for.
    embedding : ndarray of float32, shape (D,), or None
    provenance : dict
    has_pae : bool
        Whether the atlas stores a PAE matrix for the entry.
    structure_blob : bytes
        The stored structure (see :mod:`foldatlas.atlas.codec`).
    sample : int or None
        Set on what :meth:`foldatlas.atlas.Atlas.get_sample` reads: the entry with one stored sample's structure
        and scores in place of its own (no PAE, no embedding). None for the entry itself.
    """

    id: str
    checksum: str
    crc64: str
    sequence: str
    length: int
    kind: str
    model: str
    model_version: str | None
    mean_plddt: float | None
    ptm: float | None
    iptm: float | None
    max_pae: float | None
    plddt: np.ndarray | None
    pae: np.ndarray | None
    embedding: np.ndarray | None
    description: str
    source: str
    provenance: dict
    created: str
    has_pae: bool = False
    structure_blob: bytes = field(repr=False, default=b"")
    sample: int | None = None

    @property
    def chains(self) -> list[str]:
        """Chain sequences."""
        return self.sequence.split(":")

    def atoms(self):
        """The structure as a biotite ``AtomArray`` (B-factors as stored: pLDDT for predictions)."""
        return codec.decode_structure(self.structure_blob)

    def _remarks(self) -> list[str]:
        what = f"foldatlas atlas entry {self.id}: {self.kind} by {self.model}"
        if self.sample is not None:
            what += f", sample {self.sample}"
        lines = [what]
        if self.mean_plddt is not None:
            lines.append(f"mean pLDDT {self.mean_plddt:.2f}" + (f"  pTM {self.ptm:.4f}" if self.ptm is not None else "")
                         + (f"  ipTM {self.iptm:.4f}" if self.iptm is not None else ""))
            lines.append("B-factor column: per-atom pLDDT on the 0-100 scale")
        return lines

    def to_pdb(self) -> str:
        """PDB text (REMARK 250 lines name the entry, the model and its confidence)."""
        from foldatlas.structure.io import to_pdb_string

        return to_pdb_string(self.atoms(), remarks=self._remarks(), title=self._model_info(False).title)

    def to_mmcif(self, pae: bool = False) -> str:
        """ModelCIF text (:mod:`foldatlas.structure.modelcif`): a prediction's pLDDT as per-residue QA metrics and
        pTM/ipTM as global ones, the model and its weights' hash; with ``pae`` (and a stored PAE), PAE as pairwise
        metrics."""
        from foldatlas.structure.modelcif import modelcif_text

        return modelcif_text(self.atoms(), self._model_info(pae))

    def to_bcif(self) -> bytes:
        """The same content as :meth:`to_mmcif` as BinaryCIF."""
        from foldatlas.structure.modelcif import modelcif_bcif

        return modelcif_bcif(self.atoms(), self._model_info(False))

    def _model_info(self, pae: bool):
        from foldatlas.structure.modelcif import ModelInfo

        which = "" if self.sample is None else f", sample {self.sample}"
        name = self.id if self.sample is None else f"{self.id}_sample{self.sample}"
        plddt = self.plddt if self.plddt is not None and len(self.plddt) == self.length else None
        parameters = {k: v for k, v in (self.provenance or {}).items()
                      if k in ("num_recycles", "seed", "num_samples", "num_steps", "num_loops")}
        return ModelInfo(name=name, title=f"foldatlas atlas entry {self.id}: {self.kind} by {self.model}{which}",
                         model=self.model, weights=self.model_version, predicted=self.kind == "predicted",
                         plddt=plddt, ptm=self.ptm, iptm=self.iptm,
                         pae=self.pae if pae and self.pae is not None else None, parameters=parameters)

    def pae_json(self) -> list[dict]:
        """PAE in AlphaFold DB's JSON form; raises ValueError when the entry has none."""
        if self.pae is None:
            raise ValueError(f"entry {self.id} has no PAE")
        return [{"predicted_aligned_error": np.round(self.pae.astype(np.float64), 3).tolist(),
                 "max_predicted_aligned_error": self.max_pae}]

    def geometry_dict(self) -> dict:
        """Geometry of the stored structure (:func:`foldatlas.structure.geometry.geometry_report`) as JSON,
        with ``plausible`` and the one-line ``warning`` (None when plausible)."""
        from foldatlas.structure.geometry import geometry_report, geometry_summary

        return geometry_summary(geometry_report(self.atoms()), self.ptm, self.mean_plddt)

    def to_dict(self, include_pae: bool = False, include_embedding: bool = False,
                include_geometry: bool = False) -> dict:
        """Metadata and confidence as a JSON-ready dict (``include_geometry``: :meth:`geometry_dict` too)."""
        out = {
            "id": self.id, "checksum": self.checksum, "crc64": self.crc64, "sequence": self.sequence,
            "length": self.length, "chains": len(self.chains), "kind": self.kind, "model": self.model,
            "model_version": self.model_version, "description": self.description, "source": self.source,
            "created": self.created,
            "mean_plddt": None if self.mean_plddt is None else round(self.mean_plddt, 3),
            "ptm": None if self.ptm is None else round(self.ptm, 5),
            "iptm": None if self.iptm is None else round(self.iptm, 5),
            "plddt": None if self.plddt is None else np.round(self.plddt.astype(np.float64), 2).tolist(),
            "has_pae": self.has_pae,
            "provenance": self.provenance,
        }
        if self.sample is not None:
            out["sample"] = self.sample
        if include_pae and self.pae is not None:
            out.update(self.pae_json()[0])
        if include_embedding and self.embedding is not None:
            out["embedding"] = np.round(self.embedding.astype(np.float64), 5).tolist()
        if include_geometry:
            out["geometry"] = self.geometry_dict()
        return out

    def to_json(self, **kwargs) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(**kwargs), separators=(",", ":"))
