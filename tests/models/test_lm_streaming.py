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


def test_streamed_layers_are_thread_safe(tmp_path, tiny_checkpoint):
    """Threads running the same streamed layers at once see the compute weights, and the 16-bit ones come back."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "fp16lm"
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["esmfold_config"]["fp16_esm"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    ours = load_folding_model(str(folder), device="cpu")
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMDNLLKPCAEW", "MKTAYIAKQRQ", "WWWPPPGGGSSS"]
    with torch.no_grad():
        alone = [ours.model.infer([s])["positions"] for s in seqs * 2]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda s: ours.model.infer([s])["positions"], seqs * 2))
    for a, b in zip(alone, together):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert next(ours.model.esm.encoder.layer[0].parameters()).dtype == torch.float16
