"""Folding losses: AlphaFold's frame convention, and every loss minimal for a perfect prediction."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.models.esm.openfold_utils.rigid_utils import Rigid

from foldatlas.train.fold_losses import (
    LossWeights, backbone_frames, ca_clash, distogram_bins, folding_losses, lddt_ca_per_residue, pae_bins, plddt_bins,
    structural_violations,
)


@pytest.fixture(scope="module")
def tiny_outputs(tiny_model):
    torch.manual_seed(0)
    aatype = torch.randint(0, 20, (1, 24))
    aatype[0, 5] = 7  # a glycine
    with torch.no_grad():
        out = tiny_model.model(input_ids=aatype, attention_mask=torch.ones_like(aatype), num_recycles=0)
    return out, aatype


def test_backbone_frames_follow_the_structure_modules_convention(tiny_outputs):
    out, _ = tiny_outputs
    pos = out.positions[-1]
    mine = backbone_frames(pos[..., 0, :], pos[..., 1, :], pos[..., 2, :])
    theirs = Rigid.from_tensor_7(out.frames[-1], normalize_quats=True)
    torch.testing.assert_close(mine.get_trans(), theirs.get_trans(), atol=1e-4, rtol=0)
    torch.testing.assert_close(mine.get_rots().get_rot_mats(), theirs.get_rots().get_rot_mats(), atol=2e-3, rtol=0)


def _perfect(out, aatype):
    """Outputs whose every head puts all its mass on the truth, the truth being the prediction itself."""
    pos = out.positions[-1]
    cb = torch.where((aatype == 7)[..., None], pos[..., 1, :], pos[..., 4, :])
    coords = torch.cat([pos[..., :4, :], cb[..., None, :]], dim=-2)
    blocks = out.frames.shape[0]
    mask = torch.ones_like(aatype, dtype=torch.float32)
    big = 50.0
    disto = torch.nn.functional.one_hot(distogram_bins(cb), 64).float() * big
    lddt = lddt_ca_per_residue(pos[..., 1, :], pos[..., 1, :], mask)
    lddt_head = torch.zeros(*out.lddt_head.shape)
    lddt_head[-1, ..., 1, :] = torch.nn.functional.one_hot(plddt_bins(lddt), 50).float() * big
    ptm = torch.nn.functional.one_hot(pae_bins(torch.zeros(aatype.shape[0], aatype.shape[1], aatype.shape[1])),
                                      64).float() * big
    angles = torch.nn.functional.normalize(out.unnormalized_angles, dim=-1)
    perfect = SimpleNamespace(frames=out.frames[-1:].expand(blocks, *out.frames.shape[1:]),
                              positions=out.positions, distogram_logits=disto, lddt_head=lddt_head, ptm_logits=ptm,
                              unnormalized_angles=angles)
    return perfect, coords, mask


def test_every_loss_is_minimal_for_a_perfect_prediction(tiny_outputs):
    out, aatype = tiny_outputs
    perfect, coords, mask = _perfect(out, aatype)
    # The "truth" here is an untrained model's collapsed output, so it clashes; the clash term is tested below.
    losses = folding_losses(perfect, coords, aatype, mask, LossWeights(clash=0.0))
    for name in ("fape", "distogram", "plddt", "pae", "angle_norm", "bond", "loss"):
        assert float(losses[name]) < 2e-3, (name, float(losses[name]))
    assert float(losses["lddt_ca"]) == pytest.approx(1.0)
    # Any error in the structure raises FAPE and lowers lDDT; wrong bins raise the head losses.
    shifted = coords.clone()
    shifted[0, 10:] += torch.tensor([3.0, 0.0, 0.0])
    worse = folding_losses(perfect, shifted, aatype, mask, LossWeights(clash=0.0))
    assert float(worse["fape"]) > 0.05 and float(worse["distogram"]) > 1.0 and float(worse["bond"]) > 0.0
    assert float(worse["lddt_ca"]) < 0.95 and float(worse["plddt"]) > 1.0 and float(worse["pae"]) > 1.0


def test_fape_is_invariant_to_a_global_rigid_motion(tiny_outputs):
    out, aatype = tiny_outputs
    perfect, coords, mask = _perfect(out, aatype)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))[0]
    if torch.det(rot) < 0:
        rot[:, 0] = -rot[:, 0]
    moved = coords @ rot.T + torch.tensor([5.0, -3.0, 12.0])
    a, b = folding_losses(perfect, coords, aatype, mask), folding_losses(perfect, moved, aatype, mask)
    for name in ("fape", "distogram", "plddt", "pae"):
        assert float(b[name]) == pytest.approx(float(a[name]), abs=2e-3)


def test_unclamped_fape_pulls_a_collapsed_prediction_apart(tiny_outputs):
    """Clamped FAPE gives no gradient for pairs already >10 A off; the unclamped part does."""
    from foldatlas.train.fold_losses import fape

    out, aatype = tiny_outputs
    perfect, coords, mask = _perfect(out, aatype)
    frames = backbone_frames(coords[..., 0, :], coords[..., 1, :], coords[..., 2, :])
    far = coords[..., 1, :] * 0 + torch.tensor([40.0, 0.0, 0.0])  # every point far from where it belongs
    far.requires_grad_(True)
    clamped = fape(frames, far, frames, coords[..., 1, :], mask, mask)
    (grad_clamped,) = torch.autograd.grad(clamped, far)
    free = fape(frames, far, frames, coords[..., 1, :], mask, mask, clamp=None)
    (grad_free,) = torch.autograd.grad(free, far)
    assert clamped.item() == pytest.approx(1.0) and free.item() > 2.0
    assert float(grad_clamped.abs().max()) == 0.0 and float(grad_free.abs().max()) > 0.0
    # The total uses the 9:1 mix; the reported "fape" term stays the clamped one.
    shifted = coords.clone()
    shifted[0, 10:] += torch.tensor([30.0, 0.0, 0.0])
    mixed = folding_losses(perfect, shifted, aatype, mask)
    plain = folding_losses(perfect, shifted, aatype, mask, LossWeights(unclamped_fape=0.0))
    assert float(mixed["fape"]) == pytest.approx(float(plain["fape"]))
    assert float(mixed["loss"]) > float(plain["loss"])


def test_clash_is_zero_for_a_real_chain_and_large_for_a_collapsed_one():
    from foldatlas.train.fold_eval import ideal_helix_ca

    helix = torch.tensor(ideal_helix_ca(40), dtype=torch.float32)[None]
    mask = torch.ones(1, 40)
    assert float(ca_clash(helix, mask)) == 0.0
    ball = (helix * 0.2).requires_grad_(True)  # the same chain shrunk five-fold
    loss = ca_clash(ball, mask)
    (grad,) = torch.autograd.grad(loss, ball)
    assert float(loss.detach()) > 10.0 and torch.isfinite(grad).all()
    # Its gradient pushes residues apart: a small step along -grad grows the radius.
    moved = ball.detach() - 0.01 * grad
    assert (moved - moved.mean(1)).norm(dim=-1).mean() > (ball - ball.mean(1)).norm(dim=-1).mean()


def _experimental_backbone(split_dir):
    """1AX8_A's N, CA, C, O as atom14 positions ``[1, L, 14, 3]`` with its residue types."""
    from foldatlas.seq.alphabet import RESTYPE_INDEX
    from foldatlas.structure.io import ca_atoms, read_structure, residue_atoms

    atoms = read_structure(split_dir / "1AX8_A.pdb")
    index, xyz = residue_atoms(atoms, ("N", "CA", "C", "O"))
    keep = ~np.isnan(np.stack([xyz[k] for k in ("N", "CA", "C", "O")])).any((0, 2))
    pos = torch.zeros(1, int(keep.sum()), 14, 3)
    for a, k in enumerate(("N", "CA", "C", "O")):
        pos[0, :, a] = torch.tensor(xyz[k][keep], dtype=torch.float32)
    from biotite.sequence import ProteinSequence

    names = ca_atoms(atoms).res_name[keep]
    aatype = torch.tensor([[RESTYPE_INDEX.get(ProteinSequence.convert_letter_3to1(n), 20) for n in names]])
    exists = torch.zeros(1, pos.shape[1], 14)
    exists[..., :4] = 1
    return pos, exists, aatype


def test_structural_violations_pass_an_experimental_chain_and_flag_a_break_and_a_clash(split_dir):
    pos, exists, aatype = _experimental_backbone(split_dir)
    mask = torch.ones(aatype.shape)
    clean = structural_violations(pos, exists, aatype, mask)
    assert float(clean["c_n_bond"]) < 1e-3 and float(clean["ca_c_n_angle"]) < 1e-3
    assert float(clean["c_n_ca_angle"]) < 1e-3 and float(clean["clash"]) < 1e-3

    broken = pos.clone()
    broken[0, 30:] += torch.tensor([3.0, 0.0, 0.0])  # a planted chain break after residue 30
    bad = structural_violations(broken, exists, aatype, mask)
    assert float(bad["c_n_bond"]) > 2.0 / pos.shape[1] and float(bad["violation"]) > float(clean["violation"])
    # the same break present in the experimental chain (a gap) is not penalised
    gap = structural_violations(broken, exists, aatype, mask, broken[..., 0, :], broken[..., 2, :])
    assert float(gap["c_n_bond"]) < 1e-3

    clashing = pos.clone().requires_grad_(True)
    moved = clashing + 0  # residue 40 dropped onto residue 10
    moved = torch.cat([moved[:, :40], (moved[:, 10:11] + 0.5), moved[:, 41:]], dim=1)
    loss = structural_violations(moved, exists, aatype, mask)["clash"]
    (grad,) = torch.autograd.grad(loss, clashing)
    assert float(loss.detach()) > 10 * float(clean["clash"]) + 0.01
    assert torch.isfinite(grad).all() and grad[0, 10].abs().sum() > 0 and grad[0, 20].abs().sum() == 0


def _ca_only(points, residue="G"):
    """Residues of one type with only their C-alpha (or a cysteine's SG) placed at ``points``."""
    from foldatlas.seq.alphabet import RESTYPE_INDEX

    pos = torch.zeros(1, len(points), 14, 3)
    exists = torch.zeros(1, len(points), 14)
    slot = 5 if residue == "C" else 1
    pos[0, :, slot] = torch.tensor(points, dtype=torch.float32)
    exists[..., slot] = 1
    return pos, exists, torch.full((1, len(points)), RESTYPE_INDEX[residue]), torch.ones(1, len(points))


def test_a_smaller_clash_overlap_penalises_the_shallow_clashes_the_clashscore_counts():
    # residues 0 and 4 2.8 A apart: 0.6 A of overlap, a clash to the geometry report (0.4) but not to AlphaFold (1.5)
    shallow = _ca_only([[0, 0, 0], [3.8, 0, 0], [3.8, 3.8, 0], [0, 3.8, 2.8], [0, 0, 2.8]])
    assert float(structural_violations(*shallow)["clash"]) == 0.0
    assert float(structural_violations(*shallow, clash_overlap=0.4)["clash"]) == pytest.approx(2 * 0.2 / 5, rel=1e-3)
    # consecutive residues 2.9 A apart keep AlphaFold's allowance: covalent geometry, not a clash
    neighbours = _ca_only([[0, 0, 0], [2.9, 0, 0], [2.9, 3.8, 0]])
    assert float(structural_violations(*neighbours, clash_overlap=0.4)["clash"]) == 0.0
    # so does a disulfide (two cysteine SGs 2.04 A apart)
    disulfide = _ca_only([[0, 0, 0], [20, 0, 0], [40, 0, 0], [2.04, 0, 0]], residue="C")
    assert float(structural_violations(*disulfide, clash_overlap=0.4)["clash"]) == pytest.approx(
        float(structural_violations(*disulfide)["clash"]))


def test_violation_weight_adds_the_terms_to_the_total(tiny_outputs):
    out, aatype = tiny_outputs
    perfect, coords, mask = _perfect(out, aatype)
    perfect.atom14_atom_exists = out.atom14_atom_exists
    plain = folding_losses(perfect, coords, aatype, mask)
    with_violation = folding_losses(perfect, coords, aatype, mask, LossWeights(violation=1.0))
    assert "violation" not in plain
    assert float(with_violation["loss"]) == pytest.approx(float(plain["loss"] + with_violation["violation"]),
                                                          rel=1e-5)


def test_the_violation_parts_are_scaled_on_their_own(tiny_outputs):
    out, aatype = tiny_outputs
    perfect, coords, mask = _perfect(out, aatype)
    perfect.atom14_atom_exists = out.atom14_atom_exists
    perfect.positions = perfect.positions.clone()
    perfect.positions[-1, :, 8:] += 1.5  # residues 8 on moved: one broken peptide bond
    base = folding_losses(perfect, coords, aatype, mask, LossWeights(violation=1.0))
    assert float(base["c_n_bond"]) > 0.01
    for part, key in (("violation_bond", "c_n_bond"), ("violation_clash", "atom_clash")):
        scaled = folding_losses(perfect, coords, aatype, mask, LossWeights(violation=1.0, **{part: 5.0}))
        assert float(scaled["loss"]) == pytest.approx(float(base["loss"] + 4 * base[key]), rel=1e-5)


def test_a_tighter_violation_tolerance_penalises_a_stretched_peptide_bond(split_dir):
    pos, exists, aatype = _experimental_backbone(split_dir)
    mask = torch.ones(aatype.shape)
    bond = pos[0, 30, 0] - pos[0, 29, 2]
    stretched = pos.clone()
    stretched[0, 30:] += 0.1 * bond / bond.norm()  # C-N 0.1 A longer (7 sigma), both angles unchanged
    loose = structural_violations(stretched, exists, aatype, mask)  # AlphaFold's 12 sigma: within the flat bottom
    tight = structural_violations(stretched, exists, aatype, mask, tolerance=4.0)
    assert float(loose["c_n_bond"]) < 1e-3
    assert float(tight["c_n_bond"]) > 0.02 / pos.shape[1]
    assert float(tight["ca_c_n_angle"]) < 1e-3 and float(tight["c_n_ca_angle"]) < 1e-3
    assert float(structural_violations(pos, exists, aatype, mask, tolerance=4.0)["c_n_bond"]) < 1e-3
    # the C-N length's own flat bottom
    assert float(structural_violations(stretched, exists, aatype, mask, bond_tolerance=4.0)["c_n_bond"]) == \
        pytest.approx(float(tight["c_n_bond"]))
    assert float(structural_violations(stretched, exists, aatype, mask, tolerance=4.0, bond_tolerance=12.0)[
        "c_n_bond"]) < 1e-3


def test_a_run_config_gives_its_loss_weights():
    from foldatlas.train.fold import FoldTrainConfig

    cfg = FoldTrainConfig(violation=3.0, violation_clash=0.2, violation_bond=5.0, violation_bond_tolerance=4.0,
                          unclamped_fape=0.3)
    assert cfg.loss_weights(distogram=0.0, pae=0.0) == LossWeights(
        distogram=0.0, pae=0.0, violation=3.0, violation_clash=0.2, violation_bond=5.0, violation_bond_tolerance=4.0,
        violation_angle_tolerance=12.0, unclamped_fape=0.3)
    assert FoldTrainConfig(violation_clash_overlap=0.4).loss_weights().violation_clash_overlap == 0.4
