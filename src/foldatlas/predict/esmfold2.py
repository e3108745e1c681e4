"""ESMFold2 inputs and outputs: multi-chain protein features, and predictions from the model's samples.

transformers' ``prepare_protein_features`` covers one protein chain. :func:`protein_features`
builds the same tensors for any number of protein chains, with the residue data (heavy atoms,
reference conformers, charges, token ids) taken from that module rather than copied:

* every residue is one token; ``token_index`` counts tokens over the whole complex;
* ``residue_index`` restarts at 0 in each chain; ``asym_id`` numbers the chains 0, 1, ...;
* ``entity_id`` numbers distinct chain sequences from 1 in order of appearance (identical
  chains share it) and ``sym_id`` counts the copies of an entity from 0, as AlphaFold 3-style
  models expect of homomers;
* no linker: chains are separate molecules, their atoms padded together to a multiple of 32.

For one chain the tensors equal ``prepare_protein_features`` exactly (a test checks each one).

The model returns ``num_samples`` diffusion samples; :func:`predictions_from_output` turns each
into a :class:`Prediction` (atom37 coordinates, per-atom pLDDT on the 0-100 scale, PAE, PDE,
pTM, ipTM, per-chain-pair ipTM) and ranks them: pTM for one chain, ``0.8 ipTM + 0.2 pTM`` for a
complex (AlphaFold-Multimer's ranking, which ColabFold and Boltz use too). For one chain this is
the sample transformers' own ``output_to_pdb`` picks.
"""

from __future__ import annotations

import math

import numpy as np

from foldatlas.predict.prediction import Prediction
from foldatlas.seq.alphabet import RESTYPE_INDEX
from foldatlas.seq.records import Record
from foldatlas.structure.atoms import ATOM37_NAMES, CA_INDEX

__all__ = ["protein_features", "predictions_from_output", "ranking_score", "best_sample", "ATOM_BLOCK"]

ATOM_BLOCK = 32  # the atom axis is padded to a multiple of this (the atom encoder's window blocks)
_ATOM37_INDEX = {name: i for i, name in enumerate(ATOM37_NAMES)}
_ELEMENTS = {"C": 6, "N": 7, "O": 8, "S": 16}


def _encode_atom_name(name: str) -> list[int]:
    return [ord(c) - 32 if c != " " else 0 for c in name.ljust(4)[:4]]


def protein_features(record: Record, device=None) -> dict:
    """ESMFold2 input tensors of a record of protein chains (batch of one).

    Parameters
    ----------
    record : Record
        Validated chains over ``ACDEFGHIKLMNPQRSTVWYX``.
    device : torch.device or str, optional

    Returns
    -------
    dict of str to torch.Tensor
        The keyword arguments of ``EsmFold2Model.fold`` (as ``prepare_protein_features`` names them).
    """
    import torch
    from transformers.models.esmfold2 import protein_utils as pu

    token_chain: list[int] = []
    residue_index: list[int] = []
    entity_of: dict[str, int] = {}
    entity: list[int] = []
    sym: list[int] = []
    copies: dict[str, int] = {}
    res_type: list[int] = []
    input_ids: list[int] = []
    rep_atom: list[int] = []
    atoms: list[tuple[int, str, str, tuple[float, float, float]]] = []  # token, name, residue, reference position
    for chain_number, chain in enumerate(record.chains):
        entity_id = entity_of.setdefault(chain, len(entity_of) + 1)
        copy = copies.get(chain, 0)
        copies[chain] = copy + 1
        for position, letter in enumerate(chain):
            token = len(res_type)
            three = pu.PROTEIN_1TO3.get(letter, "UNK")
            names = pu.PROTEIN_HEAVY_ATOMS[three]
            rep_atom.append(len(atoms) + names.index("CB" if "CB" in names else "CA"))
            atoms.extend((token, name, three, pu.PROTEIN_REF_POS[three][name]) for name in names)
            token_chain.append(chain_number)
            residue_index.append(position)
            entity.append(entity_id)
            sym.append(copy)
            res_type.append(pu.PROTEIN_RESIDUE_TO_RES_TYPE.get(three, pu.PROTEIN_UNK_RES_TYPE))
            input_ids.append(pu.ESM_PROTEIN_VOCAB.get(letter, pu.ESM_PROTEIN_VOCAB["X"]))
    n_tokens = len(res_type)
    n_atoms = max(1, math.ceil(len(atoms) / ATOM_BLOCK)) * ATOM_BLOCK
    ref_pos = np.zeros((n_atoms, 3), dtype=np.float32)
    ref_element = np.zeros(n_atoms, dtype=np.int64)
    ref_charge = np.zeros(n_atoms, dtype=np.int8)
    ref_chars = np.zeros((n_atoms, 4), dtype=np.int64)
    ref_space_uid = np.zeros(n_atoms, dtype=np.int64)
    atom_mask = np.zeros(n_atoms, dtype=bool)
    atom_to_token = np.zeros(n_atoms, dtype=np.int64)
    for i, (token, name, three, pos) in enumerate(atoms):
        ref_pos[i] = pos
        ref_element[i] = _ELEMENTS[name[0]]
        ref_charge[i] = pu.PROTEIN_CHARGED_ATOMS.get((three, name), 0)
        ref_chars[i] = _encode_atom_name(name)
        ref_space_uid[i] = token
        atom_mask[i] = True
        atom_to_token[i] = token
    res_type_t = torch.tensor(res_type, dtype=torch.int64)
    features = {
        "token_index": torch.arange(n_tokens, dtype=torch.int64),
        "residue_index": torch.tensor(residue_index, dtype=torch.int64),
        "asym_id": torch.tensor(token_chain, dtype=torch.int64),
        "sym_id": torch.tensor(sym, dtype=torch.int64),
        "entity_id": torch.tensor(entity, dtype=torch.int64),
        "mol_type": torch.full((n_tokens,), pu.MOL_TYPE_PROTEIN, dtype=torch.int64),
        "res_type": res_type_t,
        "input_ids": torch.tensor(input_ids, dtype=torch.int64),
        "token_bonds": torch.zeros(n_tokens, n_tokens, 1, dtype=torch.float32),
        "attention_mask": torch.ones(n_tokens, dtype=torch.bool),
        "ref_pos": torch.from_numpy(ref_pos),
        "ref_element": torch.from_numpy(ref_element),
        "ref_charge": torch.from_numpy(ref_charge),
        "ref_atom_name_chars": torch.from_numpy(ref_chars),
        "ref_space_uid": torch.from_numpy(ref_space_uid),
        "atom_attention_mask": torch.from_numpy(atom_mask),
        "atom_to_token": torch.from_numpy(atom_to_token),
        "distogram_atom_idx": torch.tensor(rep_atom, dtype=torch.int64),
        "msa": res_type_t.unsqueeze(0),  # a single-sequence MSA: row 0 is the query
        "msa_attention_mask": torch.ones(1, n_tokens, dtype=torch.bool),
        "has_deletion": torch.zeros(1, n_tokens, dtype=torch.bool),
        "deletion_value": torch.zeros(1, n_tokens, dtype=torch.float32),
        "deletion_mean": torch.zeros(n_tokens, dtype=torch.float32),
    }
    return {k: v.unsqueeze(0).to(device) for k, v in features.items()}


def ranking_score(ptm: float, iptm: float | None) -> float:
    """The score that picks the best sample: pTM for one chain, ``0.8 ipTM + 0.2 pTM`` for a complex."""
    return float(ptm) if iptm is None else 0.8 * float(iptm) + 0.2 * float(ptm)


def _atom37_slots(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """For each real atom in feature order: its token and its atom37 slot."""
    from transformers.models.esmfold2 import protein_utils as pu

    tokens, slots = [], []
    token = 0
    for chain in record.chains:
        for letter in chain:
            for name in pu.PROTEIN_HEAVY_ATOMS[pu.PROTEIN_1TO3.get(letter, "UNK")]:
                tokens.append(token)
                slots.append(_ATOM37_INDEX[name])
            token += 1
    return np.array(tokens, dtype=np.int64), np.array(slots, dtype=np.int64)


def predictions_from_output(record: Record, output, model_name: str, settings: dict) -> list[Prediction]:
    """One :class:`Prediction` per diffusion sample, in sample order.

    Parameters
    ----------
    record : Record
    output : transformers' ``EsmFold2Output`` of :func:`protein_features` of ``record``
    model_name : str
    settings : dict
        What ran (seed, num_samples, num_steps, num_loops), stored in each prediction's ``extra``.

    Returns
    -------
    list of Prediction
        ``extra`` holds ``sample`` (the index), ``ranking_score`` and, for a complex,
        ``chain_pair_iptm``; ``pde`` holds the predicted distance error.
    """
    tokens, slots = _atom37_slots(record)
    n_atoms = len(tokens)
    length = record.length
    multi = len(record.chains) > 1
    aatype = np.array([RESTYPE_INDEX[c] for c in "".join(record.chains)], dtype=np.int64)
    chain_index = np.concatenate([np.full(len(c), k) for k, c in enumerate(record.chains)])
    residue_number = np.concatenate([np.arange(1, len(c) + 1) for c in record.chains])
    coords = output.sample_atom_coords.float().cpu().numpy()[:, :n_atoms]
    atom_plddt = output.plddt_per_atom.float().cpu().numpy()[:, :n_atoms] * 100.0  # 0-1 -> 0-100
    pae = output.pae.float().cpu().numpy()
    pde = output.pde.float().cpu().numpy()
    ptm = output.ptm.float().cpu().numpy()
    iptm = output.iptm.float().cpu().numpy()
    pair_iptm = output.pair_chains_iptm.float().cpu().numpy()
    num_bins = int(output.pae_logits.shape[-1])
    max_pae = 32.0 - 16.0 / num_bins  # the last PAE bin's centre (bins span 0-32 Å)
    predictions = []
    for k in range(coords.shape[0]):
        positions = np.zeros((length, 37, 3), dtype=np.float32)
        mask = np.zeros((length, 37), dtype=np.float32)
        b = np.zeros((length, 37), dtype=np.float32)
        positions[tokens, slots] = coords[k]
        mask[tokens, slots] = 1.0
        b[tokens, slots] = atom_plddt[k]
        sample_iptm = float(iptm[k]) if multi else None
        extra = {**settings, "sample": k, "ranking_score": round(ranking_score(ptm[k], sample_iptm), 5)}
        if multi:
            extra["chain_pair_iptm"] = np.round(pair_iptm[k].astype(np.float64), 5).tolist()
        predictions.append(Prediction(
            record=record, aatype=aatype, positions=positions, atom_mask=mask, atom_plddt=b,
            plddt=b[:, CA_INDEX].copy(),  # the Cα atom's pLDDT, as for ESMFold v1 and AlphaFold DB
            pae=pae[k, :length, :length], max_pae=max_pae, ptm=float(ptm[k]), iptm=sample_iptm,
            chain_index=chain_index, residue_number=residue_number, model_name=model_name,
            pde=pde[k, :length, :length], extra=extra))
    return predictions


def best_sample(samples: list[Prediction]) -> int:
    """Index of the best sample by :func:`ranking_score` (the first one on a tie, as ``argmax``)."""
    return int(np.argmax([ranking_score(p.ptm, p.iptm) for p in samples]))

