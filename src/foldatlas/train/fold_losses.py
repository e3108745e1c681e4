"""Losses for training an ESMFold-architecture model (``transformers.EsmForProteinFolding``).

All follow AlphaFold 2 (Jumper et al. 2021, supplementary section 1.9), on what
the training data holds (backbone N, CA, C, O and C-beta per residue):

* **FAPE**: frame-aligned point error, clamped at 10 A and scaled by 10 A
  (mixed 9:1 with the unclamped error, as AlphaFold's 10% unclamped batches,
  which is what pulls a collapsed early prediction apart);
  backbone frames (CA origin, x towards C, N in the xy-plane, AlphaFold's
  convention) of every structure-module block against the CA positions, plus
  the final block's frames against all backbone atoms (N, CA, C, O), which
  supervises the backbone torsions through the atoms they place;
* **distogram**: cross-entropy of the pair head against binned pseudo-beta
  distances (C-beta, C-alpha for glycine), 64 bins from 2.3125 to 21.6875 A;
* **pLDDT**: cross-entropy of the lDDT head (C-alpha atom) against the binned
  per-residue lDDT-Ca of the final prediction (50 bins on 0-1);
* **PAE**: cross-entropy of the pTM/PAE head against the binned aligned error
  of the final prediction (64 bins, AlphaFold's breaks from 0 to 31 A);
* **angle norm**: keeps the unnormalized torsion outputs near unit length;
* **bond**: AlphaFold's between-residue bond violation on C-alpha: consecutive
  C-alpha distances off the experimental ones by more than 0.2 A; it keeps
  the chain connected while FAPE is still saturated at its clamp;
* **clash**: AlphaFold's between-residue clash violation reduced to what a
  backbone-only model places: C-alpha pairs three or more residues apart
  closer than 3.5 A, summed per residue. Without it a model that cannot yet
  place distant residues settles on the FAPE-optimal collapsed ball.
* **violation** (:func:`structural_violations`): AlphaFold's own
  between-residue terms on every atom the model places: the peptide C-N bond
  length and the CA-C-N and C-N-CA angles against Engh & Huber's values with a
  flat bottom of 12 standard deviations (AlphaFold's; ``LossWeights`` sets
  others for the bond and the angles), and heavy-atom clashes between
  residues (van der Waals radii minus 1.5 A). Peptide bonds across a gap of
  the experimental chain are left out. This is what keeps the backbone of a
  short-trained model from breaking between residues.

Every loss is zero or minimal for a perfect prediction (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from transformers.models.esm.openfold_utils.rigid_utils import Rigid

__all__ = ["LossWeights", "backbone_frames", "fape", "ca_clash", "ca_bond", "structural_violations",
           "lddt_ca_per_residue", "distogram_bins", "pae_bins", "plddt_bins", "folding_losses"]

FAPE_CLAMP = 10.0
FAPE_SCALE = 10.0
DISTOGRAM_BOUNDARIES = torch.linspace(2.3125, 21.6875, 63)
PAE_BOUNDARIES = torch.linspace(0.0, 31.0, 63)
PLDDT_BINS = 50
AF_CLASH_OVERLAP = 1.5  # A of van der Waals overlap AlphaFold's clash loss allows


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms of :func:`folding_losses` (AlphaFold's, confidence heads raised).

    ``violation`` weighs :func:`structural_violations` (0: not computed), within
    which ``violation_clash`` scales the all-atom clash part and ``violation_bond``
    the peptide C-N length part (AlphaFold: 1 for both), and
    ``violation_bond_tolerance`` and ``violation_angle_tolerance`` are the flat
    bottoms of the C-N length and of the two angle terms in standard deviations
    (AlphaFold: 12 for both; a tighter one pulls every peptide bond towards its
    ideal, not only the broken ones). ``violation_clash_overlap`` is the clash
    part's allowed van der Waals overlap in A (AlphaFold: 1.5; the geometry
    report's clashscore counts overlaps from 0.4,
    :data:`foldatlas.structure.geometry.CLASH_OVERLAP`).
    """

    fape: float = 1.0
    distogram: float = 0.3
    plddt: float = 0.1
    pae: float = 0.1
    angle_norm: float = 0.02
    unclamped_fape: float = 0.1
    clash: float = 0.1
    bond: float = 0.3
    violation: float = 0.0
    violation_clash: float = 1.0
    violation_bond: float = 1.0
    violation_bond_tolerance: float = 12.0
    violation_angle_tolerance: float = 12.0
    violation_clash_overlap: float = 1.5


def backbone_frames(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor) -> Rigid:
    """AlphaFold backbone frames from N, CA, C positions ``[*, 3]``."""
    return Rigid.from_3_points(p_neg_x_axis=2 * ca - c, origin=ca, p_xy_plane=n)


def fape(pred_frames: Rigid, pred_points: torch.Tensor, true_frames: Rigid, true_points: torch.Tensor,
         frame_mask: torch.Tensor, point_mask: torch.Tensor, clamp: float | None = FAPE_CLAMP,
         eps: float = 1e-4) -> torch.Tensor:
    """Frame-aligned point error (clamped unless ``clamp`` is None, scaled), averaged over the batch.

    Parameters
    ----------
    pred_frames, true_frames : Rigid
        Shape ``[B, F]``.
    pred_points, true_points : Tensor
        ``[B, P, 3]``.
    frame_mask, point_mask : Tensor
        ``[B, F]`` and ``[B, P]``, 1 for real entries.
    """
    local_pred = pred_frames[..., None].invert_apply(pred_points[..., None, :, :])
    local_true = true_frames[..., None].invert_apply(true_points[..., None, :, :])
    err = torch.sqrt(((local_pred - local_true) ** 2).sum(-1) + eps)
    err = (err if clamp is None else err.clamp(max=clamp)) / FAPE_SCALE
    mask = frame_mask[..., :, None] * point_mask[..., None, :]
    return ((err * mask).sum((-1, -2)) / (mask.sum((-1, -2)) + 1e-8)).mean()


def ca_clash(ca: torch.Tensor, mask: torch.Tensor, min_distance: float = 3.5,
             min_separation: int = 3) -> torch.Tensor:
    """Clash violation: sum over C-alpha pairs ``>= min_separation`` apart in sequence of
    ``relu(min_distance - d)``, per residue, averaged over the batch (0 for any real chain)."""
    d = torch.sqrt(((ca[..., :, None, :] - ca[..., None, :, :]) ** 2).sum(-1) + 1e-6)
    idx = torch.arange(ca.shape[-2], device=ca.device)
    far = ((idx[:, None] - idx[None, :]).abs() >= min_separation).to(ca.dtype)
    pair = far * mask[..., :, None] * mask[..., None, :]
    return ((torch.relu(min_distance - d) * pair).sum((-1, -2)) / (mask.sum(-1) + 1e-8)).mean()


def ca_bond(pred_ca: torch.Tensor, true_ca: torch.Tensor, mask: torch.Tensor, tolerance: float = 0.2) -> torch.Tensor:
    """Bond violation: mean over consecutive residues of ``relu(|d_pred - d_true| - tolerance)`` (C-alpha, A)."""
    def step(x):
        return torch.sqrt(((x[..., 1:, :] - x[..., :-1, :]) ** 2).sum(-1) + 1e-6)

    pair = mask[..., 1:] * mask[..., :-1]
    err = torch.relu((step(pred_ca) - step(true_ca)).abs() - tolerance)
    return (err * pair).sum() / (pair.sum() + 1e-8)


@lru_cache(maxsize=1)
def _atom14_radii() -> torch.Tensor:
    """van der Waals radius of each atom14 slot of each residue type ``[21, 14]`` (0 where no atom)."""
    from transformers.models.esm.openfold_utils import residue_constants as rc

    radii = torch.zeros(21, 14)
    for r, one in enumerate(rc.restypes):
        for a, name in enumerate(rc.restype_name_to_atom14_names[rc.restype_1to3[one]]):
            if name:
                radii[r, a] = rc.van_der_waals_radius[name[0]]
    return radii


def structural_violations(pos: torch.Tensor, atom_exists: torch.Tensor, aatype: torch.Tensor,
                          mask: torch.Tensor, true_n: torch.Tensor | None = None,
                          true_c: torch.Tensor | None = None, tolerance: float = 12.0,
                          clash_overlap: float = AF_CLASH_OVERLAP, eps: float = 1e-6,
                          bond_tolerance: float | None = None) -> dict[str, torch.Tensor]:
    """AlphaFold 2's between-residue violation losses (supplement 1.9.11) on atom14 positions.

    Parameters
    ----------
    pos : Tensor
        ``[B, L, 14, 3]`` predicted atoms (atom14 order: N, CA, C, O, then the side chain).
    atom_exists : Tensor
        ``[B, L, 14]``, 1 for atoms the residue type has.
    aatype : Tensor
        ``[B, L]`` residue types (AlphaFold order, 20 = unknown).
    mask : Tensor
        ``[B, L]``, 1 for real residues.
    true_n, true_c : Tensor, optional
        ``[B, L, 3]`` experimental N and C: a peptide bond whose experimental
        C-N distance is over 2 A (a gap in the chain) is not scored.
    tolerance : float
        Flat bottom in standard deviations (AlphaFold: 12).
    clash_overlap : float
        Allowed overlap of van der Waals radii, A (AlphaFold: 1.5). Pairs of atoms of consecutive residues and
        cysteine SG pairs (disulfides) keep the larger of this and AlphaFold's 1.5 A: covalent geometry puts them
        closer than van der Waals contact.
    bond_tolerance : float, optional
        The C-N length's own flat bottom in standard deviations (default: ``tolerance``).

    Returns
    -------
    dict
        ``c_n_bond``, ``ca_c_n_angle``, ``c_n_ca_angle`` (means over peptide bonds), ``clash`` (summed clash
        depth per atom) and ``violation`` (their sum, AlphaFold's violation loss); each 0 for ideal geometry.
    """
    from transformers.models.esm.openfold_utils import residue_constants as rc

    mask = mask.to(pos.dtype)
    n, ca, c = pos[..., 0, :], pos[..., 1, :], pos[..., 2, :]
    pair = mask[..., :-1] * mask[..., 1:]
    if true_n is not None and true_c is not None:
        gap = torch.sqrt(((true_c[..., :-1, :] - true_n[..., 1:, :]) ** 2).sum(-1) + eps) > 2.0
        pair = pair * (~gap).to(pos.dtype)
    proline = (aatype[..., 1:] == rc.restype_order["P"]).to(pos.dtype)
    length_ideal = rc.between_res_bond_length_c_n[0] * (1 - proline) + rc.between_res_bond_length_c_n[1] * proline
    length_sd = (rc.between_res_bond_length_stddev_c_n[0] * (1 - proline)
                 + rc.between_res_bond_length_stddev_c_n[1] * proline)
    c_n = n[..., 1:, :] - c[..., :-1, :]
    c_n_len = torch.sqrt((c_n ** 2).sum(-1) + eps)
    c_n_unit = c_n / c_n_len[..., None]
    c_ca = ca[..., :-1, :] - c[..., :-1, :]
    c_ca_unit = c_ca / torch.sqrt((c_ca ** 2).sum(-1) + eps)[..., None]
    n_ca = ca[..., 1:, :] - n[..., 1:, :]
    n_ca_unit = n_ca / torch.sqrt((n_ca ** 2).sum(-1) + eps)[..., None]

    def flat_bottom(value, ideal, sd, sigmas=tolerance):
        err = torch.sqrt((value - ideal) ** 2 + eps)
        return (torch.relu(err - sigmas * sd) * pair).sum() / (pair.sum() + eps)

    bond = flat_bottom(c_n_len, length_ideal, length_sd, tolerance if bond_tolerance is None else bond_tolerance)
    ca_c_n = flat_bottom((c_ca_unit * c_n_unit).sum(-1), *rc.between_res_cos_angles_ca_c_n)
    c_n_ca = flat_bottom((-c_n_unit * n_ca_unit).sum(-1), *rc.between_res_cos_angles_c_n_ca)

    b_, l_ = mask.shape
    radii = _atom14_radii().to(pos)[aatype.clamp(max=20)] * atom_exists.to(pos.dtype)  # [B, L, 14]
    exists = atom_exists.to(pos.dtype) * mask[..., None]
    xyz = pos.reshape(b_, l_ * 14, 3)
    ex, rad = exists.reshape(b_, l_ * 14), radii.reshape(b_, l_ * 14)
    res = torch.arange(l_, device=pos.device).repeat_interleave(14)
    slot = torch.arange(14, device=pos.device).repeat(l_)
    between = res[:, None] < res[None, :]  # each pair of atoms of different residues once
    neighbours = res[None, :] == res[:, None] + 1
    peptide = neighbours & (slot[:, None] == 2) & (slot[None, :] == 0)
    keep = (between & ~peptide).to(pos.dtype)
    d = torch.sqrt(((xyz[:, :, None, :] - xyz[:, None, :, :]) ** 2).sum(-1) + 1e-10)
    lower = rad[:, :, None] + rad[:, None, :] - clash_overlap
    if clash_overlap < AF_CLASH_OVERLAP:  # consecutive residues and disulfides keep AlphaFold's allowance
        sg = torch.arange(14, device=pos.device) == 5  # a cysteine's SG in atom14 order
        cys_sg = ((aatype == rc.restype_order["C"])[..., None] & sg).reshape(b_, -1)
        wide = neighbours[None] | (cys_sg[:, :, None] & cys_sg[:, None, :])
        lower = lower - (AF_CLASH_OVERLAP - clash_overlap) * wide.to(pos.dtype)
    depth = torch.relu(lower - d) * keep * ex[:, :, None] * ex[:, None, :]
    clash = (2 * depth.sum((-1, -2)) / (ex.sum(-1) + eps)).mean()  # each pair counted for both atoms
    return {"c_n_bond": bond, "ca_c_n_angle": ca_c_n, "c_n_ca_angle": c_n_ca, "clash": clash,
            "violation": bond + ca_c_n + c_n_ca + clash}


def lddt_ca_per_residue(pred_ca: torch.Tensor, true_ca: torch.Tensor, mask: torch.Tensor,
                        cutoff: float = 15.0) -> torch.Tensor:
    """Per-residue lDDT-Ca on 0-1 (thresholds 0.5, 1, 2, 4 A; pairs within ``cutoff`` in the truth)."""
    d_true = torch.cdist(true_ca, true_ca)
    d_pred = torch.cdist(pred_ca, pred_ca)
    eye = torch.eye(true_ca.shape[-2], dtype=true_ca.dtype, device=true_ca.device)
    pair = (d_true < cutoff).to(true_ca.dtype) * (1 - eye) * mask[..., :, None] * mask[..., None, :]
    diff = (d_true - d_pred).abs()
    score = sum((diff < t).to(true_ca.dtype) for t in (0.5, 1.0, 2.0, 4.0)) / 4
    return (score * pair).sum(-1) / (pair.sum(-1) + 1e-8)


def distogram_bins(pseudo_beta: torch.Tensor) -> torch.Tensor:
    """Distogram bin index of each pair (0-63)."""
    d = torch.cdist(pseudo_beta, pseudo_beta)
    return torch.bucketize(d, DISTOGRAM_BOUNDARIES.to(d), right=True)


def pae_bins(errors: torch.Tensor) -> torch.Tensor:
    """PAE bin index (0-63) of aligned errors in angstroms."""
    return torch.bucketize(errors, PAE_BOUNDARIES.to(errors), right=True)


def plddt_bins(lddt: torch.Tensor) -> torch.Tensor:
    """pLDDT bin index (0-49) of lDDT values on 0-1."""
    return (lddt * PLDDT_BINS).long().clamp(max=PLDDT_BINS - 1)


def _masked_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           reduction="none").reshape(target.shape)
    return (ce * mask).sum() / (mask.sum() + 1e-8)


def folding_losses(outputs, coords: torch.Tensor, aatype: torch.Tensor, mask: torch.Tensor,
                   weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """All training losses of an ``EsmForProteinFolding`` forward pass.

    Parameters
    ----------
    outputs : EsmForProteinFoldingOutput
        The model's outputs (``frames``, ``positions``, ``distogram_logits``,
        ``lddt_head``, ``ptm_logits``, ``unnormalized_angles``).
    coords : Tensor
        True backbone ``[B, L, 5, 3]``: N, CA, C, O, C-beta.
    aatype : Tensor
        ``[B, L]`` residue indices in AlphaFold's order (glycine = 7).
    mask : Tensor
        ``[B, L]``, 1 for real residues with coordinates.
    weights : LossWeights

    Returns
    -------
    dict
        ``loss`` (weighted total) and each term (``fape``: the clamped one); ``distogram``, ``plddt`` and ``pae``
        only when their weight is not 0 (``outputs`` may then lack their logits).
    """
    mask = mask.to(coords.dtype)
    true_frames = backbone_frames(coords[..., 0, :], coords[..., 1, :], coords[..., 2, :])
    frames = Rigid.from_tensor_7(outputs.frames, normalize_quats=True)  # [blocks, B, L]
    blocks = outputs.frames.shape[0]
    pos = outputs.positions[-1]  # [B, L, 14, 3]; atom14 0-3 are N, CA, C, O
    b_, l_ = mask.shape
    pred_bb = pos[..., :4, :].reshape(b_, l_ * 4, 3)
    true_bb = coords[..., :4, :].reshape(b_, l_ * 4, 3)
    bb_mask = mask[..., None].expand(b_, l_, 4).reshape(b_, l_ * 4)

    def backbone_fape(clamp):
        per_block = torch.stack([fape(frames[b], frames[b].get_trans(), true_frames, coords[..., 1, :], mask, mask,
                                      clamp=clamp) for b in range(blocks)]).mean()
        return 0.5 * per_block + 0.5 * fape(frames[-1], pred_bb, true_frames, true_bb, mask, bb_mask, clamp=clamp)

    fape_loss = backbone_fape(FAPE_CLAMP)
    fape_train = fape_loss
    if weights.unclamped_fape:
        fape_train = (1 - weights.unclamped_fape) * fape_loss + weights.unclamped_fape * backbone_fape(None)

    heads = {}  # the head terms, each computed only when weighed (a structure module run alone has no pair heads)
    pair_mask = mask[..., :, None] * mask[..., None, :]
    if weights.distogram:
        is_gly = (aatype == 7)[..., None]
        pseudo_beta = torch.where(is_gly, coords[..., 1, :], coords[..., 4, :])
        heads["distogram"] = _masked_ce(outputs.distogram_logits, distogram_bins(pseudo_beta), pair_mask)

    pred_ca = pos[..., 1, :].detach()
    lddt = lddt_ca_per_residue(pred_ca, coords[..., 1, :], mask)
    if weights.plddt:
        heads["plddt"] = _masked_ce(outputs.lddt_head[-1][..., 1, :], plddt_bins(lddt), mask)

    if weights.pae:
        final = frames[-1]
        local_pred = final[..., None].invert_apply(pred_ca[..., None, :, :])
        local_true = true_frames[..., None].invert_apply(coords[..., None, :, 1, :])
        errors = torch.sqrt(((local_pred.detach() - local_true) ** 2).sum(-1) + 1e-8)
        heads["pae"] = _masked_ce(outputs.ptm_logits, pae_bins(errors), pair_mask)

    norms = torch.sqrt((outputs.unnormalized_angles ** 2).sum(-1) + 1e-8)
    angle_norm = ((norms - 1).abs() * mask[None, ..., None]).sum() / (mask.sum() * norms.shape[0] * norms.shape[-1])

    clash = ca_clash(pos[..., 1, :], mask)
    bond = ca_bond(pos[..., 1, :], coords[..., 1, :], mask)

    total = (weights.fape * fape_train + sum(getattr(weights, k) * v for k, v in heads.items())
             + weights.angle_norm * angle_norm + weights.clash * clash + weights.bond * bond)
    extra = {}
    if weights.violation:
        viol = structural_violations(pos, outputs.atom14_atom_exists, aatype, mask, coords[..., 0, :],
                                     coords[..., 2, :], tolerance=weights.violation_angle_tolerance,
                                     bond_tolerance=weights.violation_bond_tolerance,
                                     clash_overlap=weights.violation_clash_overlap)
        scaled = (viol["violation"] - (1 - weights.violation_clash) * viol["clash"]
                  - (1 - weights.violation_bond) * viol["c_n_bond"])
        total = total + weights.violation * scaled
        extra = {"violation": viol["violation"], "c_n_bond": viol["c_n_bond"], "atom_clash": viol["clash"]}
    return {"loss": total, "fape": fape_loss, **heads, "angle_norm": angle_norm, "clash": clash, "bond": bond, **extra,
            "lddt_ca": (lddt * mask).sum() / mask.sum()}
