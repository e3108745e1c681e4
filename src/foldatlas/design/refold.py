"""Self-consistency of designs: fold each designed sequence and compare the prediction with the target backbone.

A design "comes back" when the folding model, given only its sequence, predicts the structure it was designed for:
the field reports the TM-score of the prediction to the target (scTM, by the target's length; > 0.5 is the usual
bar) and the C-alpha RMSD over the residues (design and target have the same residues, so they pair one to one),
next to the prediction's own confidence (mean pLDDT, pTM). The answer is only as good as the folding model: the
embedded model (``foldatlas-fold-small``) folds even native sequences poorly, so its scTM says little; ESMFold
(``--refold facebook/esmfold_v1``) is the field's choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Refolded", "refold_designs"]


@dataclass(frozen=True)
class Refolded:
    """One refolded sequence.

    Attributes
    ----------
    index : int
        The design's index (0: the input's own sequence).
    sequence : str
    sc_tm : float
        TM-score of the prediction to the target (TM-align, normalised by the target's length).
    rmsd : float
        C-alpha RMSD (A) of the prediction to the target, residues paired one to one, after superposition.
    plddt : float
        Mean pLDDT (0-100) of the prediction.
    ptm : float
    """

    index: int
    sequence: str
    sc_tm: float
    rmsd: float
    plddt: float
    ptm: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def refold_designs(result, atoms, model, include_native: bool = True, keep=None) -> list[Refolded]:
    """Fold the designs of a :class:`~foldatlas.design.mpnn.DesignResult` and compare them with the target.

    Parameters
    ----------
    result : DesignResult
    atoms : biotite.structure.AtomArray
        The target (the structure the designs were made for).
    model : str or FoldingModel
        A folding model: a registered name, hub id or checkpoint folder, or one already loaded (a server's).
    include_native : bool
        Also refold the input's own sequence (index 0), the baseline a design is compared with.
    keep : callable, optional
        Called with ``(index, prediction, superposed)`` for each refolded sequence, ``superposed`` being the
        prediction's atoms moved onto the target by TM-align (to write or show the models).

    Returns
    -------
    list of Refolded
        Best first (highest scTM).
    """
    import tmtools

    from foldatlas.design.features import backbone
    from foldatlas.structure.metrics import superposed_rmsd

    bb = backbone(atoms)
    target = bb.coords[:, 1].astype(np.float64)
    read = bb.mask > 0
    jobs = ([(0, result.native)] if include_native else []) + [(d.index, d.sequence) for d in result.designs]
    names = [f"{result.name}_{k}" for k, _ in jobs]
    if isinstance(model, str):
        from foldatlas.api import fold

        predictions = fold([s for _, s in jobs], model=model, names=names)
    else:
        from foldatlas.predict.engine import FoldOptions, fold_batch
        from foldatlas.seq.records import make_record

        predictions = [fold_batch(model, [make_record(n, s)], FoldOptions())[0] for n, (_, s) in zip(names, jobs)]
    out = []
    for (index, sequence), pred in zip(jobs, predictions):
        ca = np.asarray(pred.ca_positions, dtype=np.float64)
        n = min(len(ca), len(target))  # equal unless the model could not place a residue: pair as far as they go
        flat = sequence.replace(":", "")[:n]
        tm = tmtools.tm_align(ca[:n], target[:n], flat, bb.sequence[:n])
        rmsd = superposed_rmsd(ca[:n][read[:n]], target[:n][read[:n]])
        out.append(Refolded(index=index, sequence=sequence, sc_tm=round(float(tm.tm_norm_chain2), 4),
                            rmsd=round(float(rmsd), 3), plddt=round(float(pred.mean_plddt), 2),
                            ptm=round(float(pred.ptm), 4)))
        if keep is not None:
            superposed = pred.to_atoms()
            superposed.coord = (superposed.coord.astype(np.float64) @ tm.u.T + tm.t).astype(np.float32)
            keep(index, pred, superposed)
    return sorted(out, key=lambda r: -r.sc_tm)
