"""Running a folding model on batches of records.

:func:`fold_batch` hands records to the loaded model's own ``fold_batch`` (ESMFold v1 or
ESMFold2, see :mod:`foldatlas.models`). For ESMFold v1 the forward pass is
``transformers.EsmForProteinFolding.forward`` itself; :func:`fold_esmfold_batch` builds its inputs
the way fair-esm does (complex linkers, residue-index offsets), picks a chunk size, and turns
outputs into :class:`Prediction` objects with the linker and padding removed. ESMFold2's
counterpart is :mod:`foldatlas.predict.esmfold2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldatlas.models.precision import matmul_precision
from foldatlas.predict.confidence import confidence
from foldatlas.predict.memory import auto_chunk_size
from foldatlas.predict.prediction import Prediction
from foldatlas.seq.complexes import Layout, layout
from foldatlas.seq.records import Record

__all__ = ["FoldOptions", "fold_batch", "fold_esmfold_batch", "MAX_RECYCLES", "MAX_SEED"]

MAX_RECYCLES = 24  # documented ceiling of --num-recycles and the API's num_recycles (ESMFold trained with up to 4)
MAX_SEED = 2**63 - 1  # torch.manual_seed takes any 64-bit integer


@dataclass(frozen=True)
class FoldOptions:
    """Options of one folding run.

    Attributes
    ----------
    num_recycles : int or None
        Recycling iterations after the first trunk pass, 0..:data:`MAX_RECYCLES`; None uses the model's
        own default (ESMFold v1: 3, i.e. 4 trunk passes, as in fair-esm).
    chunk_size : int or None
        Rows per chunk in the trunk's triangle attention; 0 disables chunking,
        None chooses from the length and the free memory (ESMFold v1).
    num_samples : int or None
        Diffusion samples per record (ESMFold2); None: the checkpoint's own.
    seed : int or None
        Seed of each record's fold (ESMFold2); None: 0.
    num_steps : int or None
        Length of the diffusion noise schedule (ESMFold2); None: the checkpoint's own.
    num_loops : int or None
        Trunk loops (ESMFold2); None: the checkpoint's own.

    Each model refuses the options of the other family (``check_options``).
    """

    num_recycles: int | None = None
    chunk_size: int | None = None
    num_samples: int | None = None
    seed: int | None = None
    num_steps: int | None = None
    num_loops: int | None = None

    def __post_init__(self) -> None:
        from foldatlas.errors import InvalidOptionError  # a ValueError too

        if self.num_recycles is not None and not 0 <= self.num_recycles <= MAX_RECYCLES:
            raise InvalidOptionError(f"num_recycles must be between 0 and {MAX_RECYCLES}")
        if self.chunk_size is not None and self.chunk_size < 0:
            raise InvalidOptionError("chunk_size must be >= 0 (0 disables chunking)")
        if self.num_samples is not None and self.num_samples < 1:
            raise InvalidOptionError("num_samples must be >= 1")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise InvalidOptionError(f"seed must be between 0 and {MAX_SEED}")
        if self.num_steps is not None and self.num_steps < 1:
            raise InvalidOptionError("num_steps must be >= 1")
        if self.num_loops is not None and self.num_loops < 0:
            raise InvalidOptionError("num_loops must be >= 0")


def _collate(layouts: list[Layout]):
    import torch

    n = max(lay.length for lay in layouts)
    b = len(layouts)
    aatype = torch.zeros(b, n, dtype=torch.long)
    mask = torch.zeros(b, n, dtype=torch.long)
    residx = torch.zeros(b, n, dtype=torch.long)
    for i, lay in enumerate(layouts):
        aatype[i, : lay.length] = torch.from_numpy(lay.aatype)
        mask[i, : lay.length] = 1
        residx[i, : lay.length] = torch.from_numpy(lay.residue_index)
    return aatype, mask, residx


def fold_batch(folding_model, records: list[Record], options: FoldOptions = FoldOptions()) -> list[Prediction]:
    """Fold records with any loaded folding model (its own ``fold_batch``).

    Parameters
    ----------
    folding_model : foldatlas.models.FoldingModel or foldatlas.models.esmfold2.Esmfold2FoldingModel
    records : list of Record
    options : FoldOptions

    Returns
    -------
    list of Prediction
        In the order of ``records``.

    Raises
    ------
    InvalidOptionError
        If an option does not apply to the model.
    """
    return folding_model.fold_batch(records, options)


def fold_esmfold_batch(folding_model, records: list[Record], options: FoldOptions = FoldOptions()
                       ) -> list[Prediction]:
    """Fold records in one padded batch with an ESMFold v1-architecture model (see the module docstring)."""
    import torch
    from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

    model = folding_model.model
    layouts = [layout(r) for r in records]
    aatype, mask, residx = _collate(layouts)
    n = aatype.shape[1]
    chunk = options.chunk_size
    if chunk is None:
        chunk = auto_chunk_size(n, batch=len(records), device=folding_model.device)
    model.trunk.set_chunk_size(chunk or None)
    folding_model.configure_trunk(n, len(records), chunk)
    dev = folding_model.device
    recycles = folding_model.run_settings(options)["num_recycles"]  # recorded in every output: never "the default"
    precision = folding_model.precision
    with torch.inference_mode(), matmul_precision(precision):
        out = model(aatype.to(dev), attention_mask=mask.to(dev), position_ids=residx.to(dev),
                    num_recycles=recycles)
        atom37 = atom14_to_atom37(out["positions"][-1], out).float().cpu().numpy()
        atom_mask = out["atom37_atom_exists"].float().cpu().numpy()
        atom_plddt = (out["plddt"].float() * 100.0).cpu().numpy()  # transformers' 0-1 scale -> 0-100
        ptm_logits = out["ptm_logits"]  # stays on the device: confidence is computed there
        keeps = [np.nonzero(lay.keep)[0] for lay in layouts]  # real residues: linker and padding excluded
        scores = []
        for i, keep in enumerate(keeps):  # PAE, pTM, ipTM over the real residues only
            index = torch.from_numpy(keep).to(dev)
            multi = len(records[i].chains) > 1
            scores.append(confidence(ptm_logits[i][index][:, index], layouts[i].chain_index[keep] if multi else None))
    extra = {"precision": precision.as_dict()} if precision is not None else {}
    predictions = []
    for i, (record, lay, keep) in enumerate(zip(records, layouts, keeps)):
        chain_index = lay.chain_index[keep]
        pae, max_pae, ptm, iptm = scores[i]
        residue_number = np.concatenate([np.arange(1, len(c) + 1) for c in record.chains])
        predictions.append(Prediction(
            record=record,
            aatype=lay.aatype[keep],
            positions=atom37[i, keep],
            atom_mask=atom_mask[i, keep],
            atom_plddt=atom_plddt[i, keep],
            plddt=atom_plddt[i, keep, 1],  # the Cα atom's pLDDT, as AlphaFold DB reports per residue
            pae=pae,
            max_pae=max_pae,
            ptm=ptm,
            iptm=iptm,
            chain_index=chain_index,
            residue_number=residue_number,
            model_name=folding_model.name,
            num_recycles=recycles,
            extra=dict(extra),
        ))
        predictions[-1].check_finite(f"{folding_model.name} on {folding_model.device}, "
                                     f"{precision.describe() if precision else folding_model.dtype}")
    return predictions
