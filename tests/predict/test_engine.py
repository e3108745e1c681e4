"""Parity with transformers' own forward pass, padding invariance, complexes."""

import numpy as np
import pytest
import torch

from foldatlas.predict.confidence import expected_aligned_error, predicted_tm
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.seq import make_record
from foldatlas.seq.complexes import LINKER

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def test_parity_with_transformers_forward(tiny_model, tiny_checkpoint):
    from transformers import EsmForProteinFolding
    from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

    model = EsmForProteinFolding.from_pretrained(tiny_checkpoint).eval()  # transformers' own, untouched
    with torch.no_grad():
        ref = model.infer([SEQ])
    ref_atom37 = atom14_to_atom37(ref["positions"][-1], ref)[0].numpy()
    pred = fold_batch(tiny_model, [make_record("x", SEQ)], FoldOptions(chunk_size=0))[0]
    mask = pred.atom_mask > 0
    np.testing.assert_allclose(pred.positions[mask], ref_atom37[mask], atol=1e-4)
    # pLDDT on the 0-100 scale: 1e-3 is float32 rounding of the 0-1 values (1e-5) times 100.
    np.testing.assert_allclose(pred.atom_plddt, ref["plddt"][0].numpy() * 100, atol=1e-3)
    np.testing.assert_allclose(pred.plddt, ref["plddt"][0, :, 1].numpy() * 100, atol=1e-3)
    np.testing.assert_allclose(pred.pae, ref["predicted_aligned_error"][0].numpy(), atol=1e-4)
    assert pred.max_pae == pytest.approx(31.75)
    # Unpadded single sequence: transformers' own pTM agrees with ours.
    assert pred.ptm == pytest.approx(float(ref["ptm"]), abs=1e-5)
    assert 0 < pred.mean_plddt < 100


def test_chunking_does_not_change_outputs(tiny_model):
    rec = make_record("x", SEQ)
    a = fold_batch(tiny_model, [rec], FoldOptions(chunk_size=0))[0]
    b = fold_batch(tiny_model, [rec], FoldOptions(chunk_size=4))[0]
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)
    np.testing.assert_allclose(a.pae, b.pae, atol=1e-4)


def test_alone_or_in_padded_batch_gives_same_outputs(tiny_model):
    short = make_record("short", SEQ[:17])
    long = make_record("long", SEQ + "GSGSGSAAAKLLV")
    alone = fold_batch(tiny_model, [short], FoldOptions(chunk_size=0))[0]
    batched = fold_batch(tiny_model, [long, short], FoldOptions(chunk_size=0))[1]
    np.testing.assert_allclose(batched.positions, alone.positions, atol=1e-4)
    np.testing.assert_allclose(batched.plddt, alone.plddt, atol=1e-4)
    np.testing.assert_allclose(batched.pae, alone.pae, atol=1e-4)
    assert batched.ptm == pytest.approx(alone.ptm, abs=1e-5)


def test_complex_two_chains_linker_removed(tiny_model):
    rec = make_record("dimer", "MKTAYIAKQR:GSHMLEDPVV")
    pred = fold_batch(tiny_model, [rec], FoldOptions(chunk_size=0))[0]
    assert pred.positions.shape[0] == 20  # 25-residue linker removed
    assert pred.pae.shape == (20, 20)
    atoms = pred.to_atoms()
    assert sorted(set(atoms.chain_id.tolist())) == ["A", "B"]
    for chain in "AB":
        ids = sorted(set(atoms.res_id[atoms.chain_id == chain].tolist()))
        assert ids == list(range(1, 11))
    assert pred.iptm is not None and 0 <= pred.iptm <= 1
    assert "GGGGGGGGGGGGGGGGGGGGGGGGG" not in pred.to_pdb()
    assert len(LINKER) == 25


def test_ptm_formula_small_case():
    # All probability in the first bin (centre 0.25 Å): every pair scores ~1.
    logits = np.full((5, 5, 64), -1e4)
    logits[..., 0] = 0.0
    assert predicted_tm(logits) == pytest.approx(1 / (1 + (0.25 / (1.24 * 4 ** (1 / 3) - 1.8)) ** 2), rel=1e-6)
    pae, max_pae = expected_aligned_error(logits)
    np.testing.assert_allclose(pae, 0.25, atol=1e-6)
    assert max_pae == pytest.approx(31.75)
    assert np.isnan(predicted_tm(logits, np.zeros(5, int), interface=True))


def test_lean_trunk_equals_transformers_block_forward(tiny_checkpoint, monkeypatch):
    from foldatlas.models import trunk
    from foldatlas.models.loading import load_folding_model

    monkeypatch.setattr(trunk, "_ROWS", 5)  # several row chunks even on short inputs

    lean = load_folding_model(str(tiny_checkpoint), device="cpu", lean_trunk=True)
    plain = load_folding_model(str(tiny_checkpoint), device="cpu", lean_trunk=False)
    recs = [make_record("m", SEQ + "WWPLKD"), make_record("d", "MKTAYIAKQRQ:GSHMLEDPVVKL")]
    for chunk in (0, 3):
        a = fold_batch(lean, recs, FoldOptions(chunk_size=chunk))
        b = fold_batch(plain, recs, FoldOptions(chunk_size=chunk))
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.positions, y.positions, atol=1e-4)
            np.testing.assert_allclose(x.atom_plddt, y.atom_plddt, atol=1e-4)
            np.testing.assert_allclose(x.pae, y.pae, atol=1e-4)
            assert x.ptm == pytest.approx(y.ptm, abs=1e-5)
