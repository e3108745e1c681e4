"""Folding losses: AlphaFold's frame convention, and every loss minimal for a perfect prediction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.models.esm.openfold_utils.rigid_utils import Rigid

from foldatlas.train.fold_losses import (
    LossWeights, backbone_frames, ca_clash, distogram_bins, folding_losses, lddt_ca_per_residue, pae_bins, plddt_bins,
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
    assert float(loss) > 10.0 and torch.isfinite(grad).all()
    # Its gradient pushes residues apart: a small step along -grad grows the radius.
    moved = ball.detach() - 0.01 * grad
    assert (moved - moved.mean(1)).norm(dim=-1).mean() > (ball - ball.mean(1)).norm(dim=-1).mean()
