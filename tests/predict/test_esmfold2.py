"""ESMFold2 through foldatlas: features, parity with transformers, samples and seeds, complexes, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foldatlas.errors import InvalidOptionError, WeightsIntegrityError
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.predict.esmfold2 import _atom37_slots, protein_features
from foldatlas.seq.records import make_record

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGW"
SEQ_B = "GSHMDNLLKXCPAE"


def _reference(folder, dtype=torch.float32):
    from transformers import EsmFold2Model

    return EsmFold2Model.from_pretrained(str(folder), dtype=dtype).eval()


def _transformers_order(prediction):
    tokens, slots = _atom37_slots(prediction.record)
    return tokens, slots


def test_one_chain_features_equal_transformers_featurizer_tensor_for_tensor():
    from transformers.models.esmfold2.protein_utils import prepare_protein_features

    ours = protein_features(make_record("q", SEQ + "X"))
    ref = prepare_protein_features(SEQ + "X")
    assert set(ours) == set(ref)
    for name, tensor in ref.items():
        assert ours[name].dtype == tensor.dtype, name
        assert torch.equal(ours[name], tensor), name


def test_complex_features_are_separate_chains_without_linker():
    record = make_record("c", f"{SEQ}:{SEQ_B}:{SEQ}")
    f = {k: v[0] for k, v in protein_features(record).items()}
    n = record.length
    assert f["res_type"].shape == (n,)  # no linker residues
    assert f["token_index"].tolist() == list(range(n))
    assert f["asym_id"].tolist() == [0] * len(SEQ) + [1] * len(SEQ_B) + [2] * len(SEQ)
    assert f["residue_index"].tolist() == [*range(len(SEQ)), *range(len(SEQ_B)), *range(len(SEQ))]
    # identical chains share an entity and count as copies of it
    assert f["entity_id"].tolist() == [1] * len(SEQ) + [2] * len(SEQ_B) + [1] * len(SEQ)
    assert f["sym_id"].tolist() == [0] * len(SEQ) + [0] * len(SEQ_B) + [1] * len(SEQ)
    assert f["atom_attention_mask"].shape[0] % 32 == 0
    # each chain's atoms are those of the chain folded alone
    alone = protein_features(make_record("b", SEQ_B))
    start = int((f["atom_to_token"][f["atom_attention_mask"]] < len(SEQ)).sum())
    count = int(alone["atom_attention_mask"].sum())
    assert torch.equal(f["ref_pos"][start:start + count], alone["ref_pos"][0, :count])
    assert torch.equal(f["ref_atom_name_chars"][start:start + count], alone["ref_atom_name_chars"][0, :count])


@pytest.mark.parametrize("seed", [0, 7])
def test_one_record_run_equals_manual_seed_then_infer_protein(tiny_fold2_model, tiny_fold2_checkpoint, seed):
    from transformers.models.esmfold2.protein_utils import _rank_samples

    record = make_record("q", SEQ)
    best = fold_batch(tiny_fold2_model, [record], FoldOptions(seed=seed))[0]
    torch.manual_seed(seed)
    out = _reference(tiny_fold2_checkpoint).infer_protein(SEQ)
    assert len(best.samples) == out.sample_atom_coords.shape[0] == 3  # the checkpoint's own number of samples
    assert best.extra["sample"] == best.extra["best_sample"] == _rank_samples(out)  # transformers' ranking
    tokens, slots = _transformers_order(best)
    for sample in best.samples:
        k = sample.extra["sample"]
        np.testing.assert_allclose(sample.positions[tokens, slots], out.sample_atom_coords[k, :len(tokens)].numpy(),
                                   atol=1e-4)
        np.testing.assert_allclose(sample.atom_plddt[tokens, slots], out.plddt_per_atom[k, :len(tokens)].numpy() * 100,
                                   atol=1e-4)
        np.testing.assert_allclose(sample.pae, out.pae[k].numpy(), atol=1e-4)
        np.testing.assert_allclose(sample.pde, out.pde[k].numpy(), atol=1e-4)
        assert sample.ptm == pytest.approx(float(out.ptm[k]), abs=1e-5)
        assert sample.iptm is None
    assert 0 < best.plddt.min() and best.plddt.max() <= 100
    assert best.max_pae == pytest.approx(31.75)


def test_result_depends_on_seed_not_on_batching_or_order(tiny_fold2_model):
    a, b = make_record("a", SEQ), make_record("b", SEQ_B)
    alone = fold_batch(tiny_fold2_model, [b], FoldOptions(seed=3))[0]
    together = fold_batch(tiny_fold2_model, [a, b], FoldOptions(seed=3))
    reordered = fold_batch(tiny_fold2_model, [b, a], FoldOptions(seed=3))
    for other in (together[1], reordered[0]):
        np.testing.assert_array_equal(other.positions, alone.positions)
        np.testing.assert_array_equal(other.pae, alone.pae)
    other_seed = fold_batch(tiny_fold2_model, [b], FoldOptions(seed=4))[0]
    assert np.abs(other_seed.positions - alone.positions).max() > 1e-3


def test_complex_has_chains_iptm_per_chain_pair_and_multimer_ranking(tiny_fold2_model, tiny_fold2_checkpoint):
    record = make_record("c", f"{SEQ}:{SEQ_B}")
    best = fold_batch(tiny_fold2_model, [record], FoldOptions(seed=1, num_samples=4))[0]
    assert len(best.samples) == 4
    scores = [0.8 * s.iptm + 0.2 * s.ptm for s in best.samples]
    assert best.extra["sample"] == int(np.argmax(scores))
    assert best.iptm is not None and np.array(best.extra["chain_pair_iptm"]).shape == (2, 2)
    assert best.pae.shape == (record.length, record.length)
    pdb = best.to_pdb()
    chains = {line[21] for line in pdb.splitlines() if line.startswith("ATOM")}
    assert chains == {"A", "B"}
    residues = {(line[21], line[22:26]) for line in pdb.splitlines() if line.startswith("ATOM")}
    assert len(residues) == record.length  # no linker residues
    # ipTM matches transformers' for the same features (its featurizer takes one chain, so call fold directly)
    torch.manual_seed(1)
    out = _reference(tiny_fold2_checkpoint).fold(**protein_features(record), num_diffusion_samples=4)
    k = best.extra["sample"]
    assert best.iptm == pytest.approx(float(out.iptm[k]), abs=1e-5)
    np.testing.assert_allclose(best.extra["chain_pair_iptm"], out.pair_chains_iptm[k].numpy(), atol=1e-5)


def test_options_of_the_other_family_are_refused(tiny_fold2_model, tiny_model):
    record = make_record("q", SEQ)
    with pytest.raises(InvalidOptionError, match="num-loops"):
        fold_batch(tiny_fold2_model, [record], FoldOptions(num_recycles=2))
    with pytest.raises(InvalidOptionError, match="ESMFold2"):
        fold_batch(tiny_model, [record], FoldOptions(num_samples=2))
    with pytest.raises(InvalidOptionError):
        FoldOptions(num_samples=0)
    with pytest.raises(InvalidOptionError):
        tiny_fold2_model.run_settings(FoldOptions(num_samples=10_000))


def test_steps_and_loops_reach_the_model(tiny_fold2_model, tiny_fold2_checkpoint):
    record = make_record("q", SEQ)
    best = fold_batch(tiny_fold2_model, [record], FoldOptions(seed=2, num_steps=3, num_loops=0, num_samples=1))[0]
    assert (best.extra["num_steps"], best.extra["num_loops"], best.extra["num_samples"]) == (3, 0, 1)
    torch.manual_seed(2)
    out = _reference(tiny_fold2_checkpoint).infer_protein(SEQ, num_sampling_steps=3, num_loops=0,
                                                          num_diffusion_samples=1)
    tokens, slots = _transformers_order(best)
    np.testing.assert_allclose(best.positions[tokens, slots], out.sample_atom_coords[0, :len(tokens)].numpy(),
                               atol=1e-4)


def test_bf16_checkpoint_loads_without_float32_copy_and_matches_float32_reference(tiny_fold2_bf16_checkpoint):
    from foldatlas.models.loading import load_folding_model

    model = load_folding_model(str(tiny_fold2_bf16_checkpoint), device="cpu")
    # ESM C's layers stay stored in bfloat16 (computed in float32 one at a time); the trunk is float32
    assert next(model.model.esmc.layers[0].parameters()).dtype == torch.bfloat16
    assert next(model.model.folding_trunk.parameters()).dtype == torch.float32
    assert "float32" in model.precision_note
    best = fold_batch(model, [make_record("q", SEQ)], FoldOptions(seed=5))[0]
    torch.manual_seed(5)
    out = _reference(tiny_fold2_bf16_checkpoint, torch.float32).infer_protein(SEQ)  # the float32 copy
    tokens, slots = _transformers_order(best)
    k = best.extra["sample"]
    np.testing.assert_allclose(best.positions[tokens, slots], out.sample_atom_coords[k, :len(tokens)].numpy(),
                               atol=1e-4)
    np.testing.assert_allclose(best.pae, out.pae[k].numpy(), atol=1e-4)


def test_checkpoint_without_language_model_weights_is_refused(tiny_fold2_without_lm, tiny_fold2_checkpoint,
                                                              fold2_without, tmp_path):
    from foldatlas.models.loading import load_folding_model

    with pytest.raises(WeightsIntegrityError, match="no language-model weights"):
        load_folding_model(str(tiny_fold2_without_lm), device="cpu")
    for lm_offload in (False, True):
        folder = fold2_without(tiny_fold2_checkpoint, tmp_path / "no_pae", "confidence_head.pae")
        with pytest.raises(WeightsIntegrityError, match="missing"):
            load_folding_model(str(folder), device="cpu", lm_offload=lm_offload)


def test_memory_check_refuses_with_the_length_that_fits(tiny_fold2_model):
    from foldatlas.predict.runner import length_problem

    record = make_record("q", "A" * 3000)
    problem = length_problem(record, None, tiny_fold2_model, FoldOptions(), available=2**30)
    assert problem and "positions would fit" in problem
    fits = int(problem.split("about ")[-1].split(" positions")[0])
    assert tiny_fold2_model.estimate_peak_bytes(fits, FoldOptions(), 2**30) <= 2**30
    assert tiny_fold2_model.estimate_peak_bytes(fits + 1, FoldOptions(), 2**30) > 2**30
    # more samples need more memory
    assert tiny_fold2_model.estimate_peak_bytes(500, FoldOptions(num_samples=8)) > \
        tiny_fold2_model.estimate_peak_bytes(500, FoldOptions(num_samples=1))


@pytest.mark.parametrize("fixture", ["tiny_fold2_checkpoint", "tiny_fold2_bf16_checkpoint"])
def test_language_model_on_disk_gives_the_same_fold(request, fixture):
    from foldatlas.models.loading import load_folding_model

    folder = request.getfixturevalue(fixture)
    on_disk = load_folding_model(str(folder), device="cpu", lm_offload=True)
    in_memory = load_folding_model(str(folder), device="cpu", lm_offload=False)
    assert all(p.is_meta for p in on_disk.model.esmc.layers.parameters())  # never loaded
    assert "on disk" in on_disk.precision_note
    record = make_record("q", SEQ + ":" + SEQ_B)
    a = fold_batch(on_disk, [record], FoldOptions(seed=1))[0]
    b = fold_batch(in_memory, [record], FoldOptions(seed=1))[0]
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)
    np.testing.assert_allclose(a.pae, b.pae, atol=1e-5)
    assert all(p.is_meta for p in on_disk.model.esmc.layers.parameters())  # dropped after use


def test_concurrent_folds_equal_sequential_ones(tiny_fold2_bf16_checkpoint):
    from concurrent.futures import ThreadPoolExecutor

    from foldatlas.models.loading import load_folding_model

    model = load_folding_model(str(tiny_fold2_bf16_checkpoint), device="cpu")  # streamed 16-bit ESM C
    records = [make_record(f"r{k}", seq) for k, seq in enumerate((SEQ, SEQ_B, SEQ[5:], SEQ_B * 2))]
    sequential = [fold_batch(model, [r], FoldOptions(seed=k))[0] for k, r in enumerate(records)]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda kr: fold_batch(model, [kr[1]], FoldOptions(seed=kr[0]))[0],
                                   enumerate(records)))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a.positions, b.positions)
    assert next(model.model.esmc.layers[0].parameters()).dtype == torch.bfloat16  # stored weights restored


def test_non_finite_outputs_fail_the_record_instead_of_being_written(tiny_fold2_checkpoint, tmp_path, monkeypatch):
    from foldatlas.models.loading import load_folding_model
    from foldatlas.predict.runner import RunConfig, run_fold

    model = load_folding_model(str(tiny_fold2_checkpoint), device="cpu")
    real_fold = model.model.fold

    def nan_fold(*args, **kwargs):
        out = real_fold(*args, **kwargs)
        out.sample_atom_coords[0, 3] = float("nan")  # as a failing back end would
        return out

    monkeypatch.setattr(model.model, "fold", nan_fold)
    result = run_fold([make_record("q", SEQ)], RunConfig(output=tmp_path / "out"), model, progress=False,
                      log=lambda m: None)
    assert result.failed == 1 and "non-finite coordinates" in result.rows[0]["error"]
    assert not (tmp_path / "out" / "q.json").exists() and not (tmp_path / "out" / "q.pdb").exists()
