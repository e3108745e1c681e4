"""The public Python API: foldatlas.fold / foldatlas.compare and the Prediction type."""


import numpy as np
import pytest

import foldatlas
from foldatlas.errors import InvalidSequenceError, SequenceTooLongError


def test_fold_returns_typed_predictions(tiny_checkpoint, tmp_path):
    pred = foldatlas.fold("MKTAYIAKQRQISFV", model=str(tiny_checkpoint), device="cpu")
    assert isinstance(pred, foldatlas.Prediction)
    assert pred.plddt.shape == (15,) and pred.pae.shape == (15, 15) and 0 <= pred.ptm <= 1
    assert pred.iptm is None
    preds = foldatlas.fold(["MKT", "GAVL:KK"], model=str(tiny_checkpoint), device="cpu", names=["a", "b"])
    assert [p.name for p in preds] == ["a", "b"] and preds[1].iptm is not None
    # PDB and mmCIF carry the same coordinates and 0-100 pLDDT B-factors
    from foldatlas.structure import read_structure

    for text, suffix in ((pred.to_pdb(), "pdb"), (pred.to_mmcif(), "cif")):
        path = tmp_path / f"p.{suffix}"
        path.write_text(text)
        atoms = read_structure(path)
        ca = atoms[atoms.atom_name == "CA"]
        np.testing.assert_allclose(ca.coord, pred.ca_positions, atol=1e-3)
        np.testing.assert_allclose(ca.b_factor, pred.plddt, atol=0.01)
    a = tmp_path / "a.pdb"
    a.write_text(pred.to_pdb())
    assert foldatlas.compare(a, tmp_path / "p.cif").tm_score == pytest.approx(1.0, abs=1e-4)


def test_fold_errors(tiny_checkpoint):
    with pytest.raises(InvalidSequenceError, match="position 4"):
        foldatlas.fold("MKT7", model=str(tiny_checkpoint), device="cpu")
    with pytest.raises(SequenceTooLongError, match="exceed the limit of 10"):
        foldatlas.fold("M" * 11, model=str(tiny_checkpoint), device="cpu", max_length=10)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, foldatlas, foldatlas.structure, foldatlas.seq, foldatlas.predict.prediction; " \
           "print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_fold_with_esmfold2_returns_best_sample_and_all_samples(tiny_fold2_checkpoint):
    import foldatlas
    from foldatlas.errors import InvalidOptionError

    pred = foldatlas.fold("MKTAYIAKQRQISFVKSH:GSHMDNLLK", model=str(tiny_fold2_checkpoint), device="cpu", seed=3,
                          num_samples=2)
    assert len(pred.samples) == 2 and any(s is pred for s in pred.samples) and pred.iptm is not None
    assert pred.extra["seed"] == 3 and pred.to_pdb().count(" CA ") == 27
    with pytest.raises(InvalidOptionError):
        foldatlas.fold("MKTAYIAKQR", model=str(tiny_fold2_checkpoint), device="cpu", num_recycles=1)
