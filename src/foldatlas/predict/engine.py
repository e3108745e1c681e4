"""Running an ESMFold model on batches of records.

The forward pass is ``transformers.EsmForProteinFolding.forward`` itself; this
module builds its inputs the way fair-esm does (complex linkers, residue-index
offsets), picks a chunk size, and turns outputs into :class:`Prediction` objects
with the linker and padding removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldatlas.predict.confidence import confidence
from foldatlas.predict.memory import auto_chunk_size
from foldatlas.predict.prediction import Prediction
from foldatlas.seq.complexes import Layout, layout
from foldatlas.seq.records import Record

__all__ = ["FoldOptions", "fold_batch", "MAX_RECYCLES"]

MAX_RECYCLES = 24  # documented ceiling of --num-recycles and the API's num_recycles (ESMFold trained with up to 4)


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
        None chooses from the length and the free memory.
    """

    num_recycles: int | None = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        from foldatlas.errors import InvalidOptionError  # a ValueError too

        if self.num_recycles is not None and not 0 <= self.num_recycles <= MAX_RECYCLES:
            raise InvalidOptionError(f"num_recycles must be between 0 and {MAX_RECYCLES}")
        if self.chunk_size is not None and self.chunk_size < 0:
            raise InvalidOptionError("chunk_size must be >= 0 (0 disables chunking)")


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
    """Fold records in one padded batch.

    Parameters
    ----------
    folding_model : foldatlas.models.FoldingModel
    records : list of Record
    options : FoldOptions

    Returns
    -------
    list of Prediction
        In the order of ``records``.
    """
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
    dev = folding_model.device
    recycles = folding_model.recycles(options.num_recycles)  # recorded in every output: never "the default"
    with torch.inference_mode():
        out = model(aatype.to(dev), attention_mask=mask.to(dev), position_ids=residx.to(dev),
                    num_recycles=recycles)
        atom37 = atom14_to_atom37(out["positions"][-1], out).float().cpu().numpy()
        atom_mask = out["atom37_atom_exists"].float().cpu().numpy()
        atom_plddt = (out["plddt"].float() * 100.0).cpu().numpy()  # transformers' 0-1 scale -> 0-100
        ptm_logits = out["ptm_logits"].float().cpu().numpy()
    predictions = []
    for i, (record, lay) in enumerate(zip(records, layouts)):
        keep = np.nonzero(lay.keep)[0]  # real residues of this record, linker and padding excluded
        logits = ptm_logits[i][np.ix_(keep, keep)]
        chain_index = lay.chain_index[keep]
        multi = len(record.chains) > 1
        pae, max_pae, ptm, iptm = confidence(logits, chain_index if multi else None)
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
        ))
    return predictions
