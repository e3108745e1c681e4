"""Keeping a 16-bit language model and computing it in float32 layer by layer equals .float()."""

import json

import torch

from foldatlas.models.loading import load_folding_model


def test_streamed_fp16_lm_equals_float32_copy(tmp_path, tiny_checkpoint):
    import shutil

    from transformers import EsmForProteinFolding

    folder = tmp_path / "fp16lm"
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["esmfold_config"]["fp16_esm"] = True  # as the released ESMFold v1 checkpoint
    (folder / "config.json").write_text(json.dumps(cfg))
    ours = load_folding_model(str(folder), device="cpu")
    assert next(ours.model.esm.encoder.layer[0].parameters()).dtype == torch.float16  # stays 16-bit at rest

    reference = EsmForProteinFolding.from_pretrained(folder).eval()
    reference.esm.float()  # fair-esm's CPU path: the whole LM in float32
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    with torch.no_grad():
        ref = reference.infer([seq])
        got = ours.model.infer([seq])
    torch.testing.assert_close(got["positions"], ref["positions"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["plddt"], ref["plddt"], atol=1e-6, rtol=0)
    assert next(ours.model.esm.encoder.layer[0].parameters()).dtype == torch.float16  # restored after use
