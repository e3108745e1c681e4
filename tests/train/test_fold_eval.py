"""The folding evaluation: helix baseline, DSSP states, scores on a tiny model and files."""

from __future__ import annotations

import numpy as np
import pytest

from foldatlas.train.fold_eval import backbone_ss, ideal_helix_ca, three_state


def test_three_state_mapping():
    assert three_state("HGIEBTS C") == "HHHEECCCC"


def test_ideal_helix_is_a_helix():
    ca = ideal_helix_ca(30)
    steps = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert np.allclose(steps, 3.8, atol=0.05)  # C-alpha spacing of a real chain
    assert np.linalg.norm(ca[4] - ca[0]) == pytest.approx(6.2, abs=0.3)  # i, i+4 in an alpha-helix


def test_dssp_of_a_real_helix_backbone():
    # An ideal alpha-helix backbone from phi/psi = -57/-47 built by the NeRF recipe.
    def place(a, b, c, bond, angle, torsion):
        bc = c - b
        bc /= np.linalg.norm(bc)
        n = np.cross(b - a, bc)
        n /= np.linalg.norm(n)
        m = np.stack([bc, np.cross(n, bc), n], 1)
        d = np.array([-bond * np.cos(np.radians(angle)),
                      bond * np.sin(np.radians(angle)) * np.cos(np.radians(torsion)),
                      bond * np.sin(np.radians(angle)) * np.sin(np.radians(torsion))])
        return c + m @ d

    atoms = [np.array([0.0, 1.46, 0.0]), np.array([0.0, 0.0, 0.0]), np.array([1.52, 0.0, 0.0])]
    for _ in range(19):
        n_, ca_, c_ = atoms[-3:]
        atoms.append(place(n_, ca_, c_, 1.33, 116.2, -47))   # N (psi)
        atoms.append(place(ca_, c_, atoms[-1], 1.46, 121.7, 180))  # CA (omega)
        atoms.append(place(c_, atoms[-2], atoms[-1], 1.52, 111.2, -57))  # C (phi)
    bb = np.array(atoms).reshape(20, 3, 3)
    o = np.array([place(bb[i + 1, 0], bb[i, 1], bb[i, 2], 1.23, 120.5, 180.0) for i in range(19)]
                 + [bb[19, 2] + np.array([0.0, 1.23, 0.0])])
    ss = backbone_ss(np.concatenate([bb, o[:, None]], 1))
    assert ss[3:-3] == "H" * 14


def test_evaluate_fold_scores_model_helix_and_untrained(tiny_fold, tmp_path, capsys):
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdbio

    from foldatlas.seq.alphabet import RESTYPE_1TO3
    from foldatlas.train.data import load_structures
    from foldatlas.train.fold_eval import evaluate_fold

    import shutil

    data, shared = tiny_fold
    model = shutil.copytree(shared.parent, tmp_path / "run") / shared.name  # its run folder's files are edited below
    # One evaluation "domain" written as a PDB file from a test chain.
    chain = load_structures(data / "structures_test.npz").chain(0)
    n = len(chain["sequence"])
    arr = struc.AtomArray(4 * n)
    arr.coord = chain["coords"][:, :4].reshape(-1, 3)
    arr.atom_name = np.tile(["N", "CA", "C", "O"], n)
    arr.element = np.tile(["N", "C", "C", "O"], n)
    arr.res_id = np.repeat(np.arange(1, n + 1), 4)
    arr.res_name = np.repeat([RESTYPE_1TO3[c] for c in chain["sequence"]], 4)
    arr.chain_id = np.full(4 * n, "A")
    arr.hetero = np.zeros(4 * n, bool)
    evald = tmp_path / "eval"
    (evald / "pdb").mkdir(parents=True)
    f = pdbio.PDBFile()
    f.set_structure(arr)
    f.write(str(evald / "pdb" / "D1.pdb"))
    (evald / "targets.tsv").write_text("id\tfile\nD1\tpdb/D1.pdb\n")
    res = evaluate_fold(str(model), data, evald, test_chains=2, log=lambda m: None)
    for name, count in (("test", 2), ("casp14", 1)):
        for variant in ("model", "untrained"):
            r = res[name][variant]
            assert r["n"] == count
            m = r["mean"]
            assert 0 < m["tm_score"] <= 1 and 0 <= m["lddt_ca"] <= 1 and 0 < m["helix_tm_score"] <= 1
            assert 0 <= m["ss_agreement"] <= 1
    assert res["casp14"]["model"]["rows"][0]["length"] == n

    # the model alone (--no-untrained), paired against the full evaluation's rows: the same folds, no difference;
    # CASP14's single domain is too few chains for a paired line
    import json

    from foldatlas.cli.main import main

    (tmp_path / "full.json").write_text(json.dumps(dict(res, label="full")))
    code = main(["train", "fold-eval", "-m", str(model), "--data", str(data), "--eval", str(evald),
                 "--test-chains", "2", "--no-untrained", "--previous", str(tmp_path / "full.json"),
                 "-o", str(tmp_path / "alone.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert set(alone["test"]) == {"model"} and set(alone["casp14"]) == {"model"}
    assert alone["test"]["model"]["mean"]["tm_score"] == pytest.approx(res["test"]["model"]["mean"]["tm_score"])
    assert ("Chain by chain against full (this model minus it, mean ± one standard error over the chains both "
            "scored): the test split (2 chains): TM-score ") in captured.err
    assert "CASP14" not in captured.err.split("Chain by chain")[1]

    # Release: float16 safetensors + tokenizer + model card with both sets and all three scorers.
    import torch
    from safetensors import safe_open

    from foldatlas.train.release import release_fold

    dest = tmp_path / "weights" / "foldatlas-fold-small"
    metrics = release_fold(model.parent, data, evald, dest, "a test machine", test_chains=2, log=lambda m: None)
    assert metrics["model"] == "foldatlas-fold-small" and metrics["trainable_parameters"] > 0
    assert {p.name for p in dest.iterdir()} >= {"config.json", "model.safetensors", "vocab.txt", "README.md"}
    with safe_open(str(dest / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert {d for d in dtypes if d.is_floating_point} == {torch.float16}
    card = (dest / "README.md").read_text()
    for text in ("19 CASP14 domains", "untrained twin", "ideal helix", "Pearson", "a test machine", "| D1 |",
                 "chain breaks per 100 residues", "clashscore"):
        assert text in card
    assert "Previous model" not in card

    # a fine-tuned model's card compares it with the model it replaces
    from foldatlas.train.release import write_fold_card

    previous = {"training": "The base model, trained on a CPU.", "casp14": metrics["casp14"]}
    config = json.loads((model.parent / "config.json").read_text())
    (model.parent / "config.json").write_text(json.dumps(dict(config, init="foldatlas-fold-small", violation=1.0,
                                                               violation_clash=0.1, unclamped_fape=0.3)))
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a GPU", previous=previous)
    assert "then fine-tuned on a GPU" in card and "violation losses added" in card and "scaled by 0.1" in card
    assert "## Previous model\nThe base model, trained on a CPU." in card
    assert "| 19 CASP14 domains | mean TM-score |" in card
    # and keeps the generations before it, a column each
    earlier = dict(metrics, label="from scratch")
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a GPU", previous=dict(previous, label="first fine-tuning", earlier=[earlier]))
    assert "| set | metric | from scratch | first fine-tuning | this model |" in card
    tm = f"{metrics['casp14']['model']['mean']['tm_score']:.3f}"
    assert f"| 19 CASP14 domains | mean TM-score | {tm} | {tm} | {tm} |" in card
    assert f"| test split | mean TM-score | {metrics['test']['model']['mean']['tm_score']:.3f} | – |" in card
    assert "Chain by chain" not in card  # the previous model's means alone: no paired difference
    # with the previous model's per-chain rows, the card gives the paired difference on the chains both scored
    rows = [dict(r, tm_score=r["tm_score"] - 0.01, lddt_ca=r["lddt_ca"] + 0.02)
            for r in metrics["test"]["model"]["rows"]]
    with_rows = dict(previous, label="sm5", test={"model": {"mean": metrics["test"]["model"]["mean"], "rows": rows}})
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a GPU", previous=with_rows)
    assert ("Chain by chain against sm5 (this model minus it, mean ± one standard error over the chains both scored): "
            "the test split (2 chains): TM-score +0.0100 ± 0.0000, lDDT-Ca -0.0200 ± 0.0000.") in card
    # a structure module fine-tuned alone on kept trunk outputs says so
    (model.parent / "config.json").write_text(json.dumps(dict(config, init="foldatlas-fold-small", violation=2.0,
                                                               violation_clash=0.1, unclamped_fape=0.3,
                                                               structure_module_only=True, cached_crops=1600)))
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a CPU", previous=previous)
    assert "its structure module then fine-tuned on a CPU" in card and "--structure-module-only" in card
    assert "1,600 training crops" in card and "weight 2.0" in card
    # a run continuing another run's model names each stage, oldest first
    stage = tmp_path / "gpu_run"
    stage.mkdir()
    (stage / "config.json").write_text(json.dumps(dict(config, init="foldatlas-fold-small", violation=2.0,
                                                       violation_clash=0.1, unclamped_fape=0.3, batch_size=32,
                                                       dropout=False, device="cuda", device_name="NVIDIA H200")))
    (stage / "log.jsonl").write_text("".join(json.dumps({"step": k, "fape": 1.0, "time": 1000.0 + 36 * k // 25}) + "\n"
                                             for k in (25, 50, 75, 100)))
    (model.parent / "config.json").write_text(json.dumps(dict(config, init=str(stage / "model"), violation=3.0,
                                                               violation_clash=0.2, unclamped_fape=0.3,
                                                               violation_bond_tolerance=4.0, violation_bond=5.0,
                                                               min_length=320, structure_module_only=True,
                                                               cached_crops=1600)))
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a CPU", previous=previous)
    assert "started from the previous `foldatlas-fold-small` (see Previous model) and trained in 2 stages" in card
    assert ("(1) the whole model but its frozen language model, on one NVIDIA H200: 100 steps of 32 crops of "
            f"{config['crop']} (0.03 hours)") in card and "dropout off, with AlphaFold's" in card
    assert "The last stage (`foldatlas train fold --structure-module-only`)" in card and "weight 3.0" in card
    # each stage's flat bottom: AlphaFold's 12 sigma for the GPU stage (not recorded then), 4 for the last
    assert card.count("angles with a 12-sigma flat bottom") == 1
    assert card.count("C-N length with a 4-sigma flat bottom, CA-C-N and C-N-CA angles with a 12-sigma one") == 1
    assert f"1,600 training crops of {config['crop']} residues from chains of at least 320 residues" in card
    assert card.count("from chains of at least") == 1  # the GPU stage trained on every chain
    assert card.count("the C-N length part by 5,") == 1  # the last stage's; the GPU stage's is AlphaFold's 1
    assert str(stage) not in card and "fine-tuned in stages on GPUs and CPUs" in card
    # a run that mixes long kept crops in says how many, how long and how often; residues seen count both
    (model.parent / "config.json").write_text(json.dumps(dict(config, init="foldatlas-fold-small", violation=3.0,
                                                               structure_module_only=True, cached_crops=800,
                                                               batch_size=8, crop=128, long_crop=320, long_every=2,
                                                               long_cached_crops=240, long_batch_size=3)))
    card = write_fold_card(dest, model.parent, json.loads((data / "manifest.json").read_text()), metrics,
                           "a CPU", previous=previous)
    assert ("on 8 of them; every second step instead 3 of 240 kept crops of 320 residues from chains of at least "
            "320, with FAPE") in card
    steps = json.loads((model.parent / "log.jsonl").read_text().splitlines()[-1])["step"]
    seen = ((steps - steps // 2) * 8 * 128 + steps // 2 * 3 * 320) / 1e6
    assert f"about {seen:.2f} M training residues seen" in card
    assert f"each short crop about {(steps - steps // 2) * 8 / 800:.1f} times" in card
    # an average of two fine-tunings names both runs, their weights and every stage of the other run
    import shutil

    from foldatlas.train.average import average_fold_runs

    other = tmp_path / "other_run"
    shutil.copytree(model.parent, other, ignore=shutil.ignore_patterns("state"))
    (other / "config.json").write_text(json.dumps(dict(config, init=str(stage / "model"), violation=3.0,
                                                       violation_clash=0.05, structure_module_only=True,
                                                       cached_crops=800, batch_size=8, crop=128, long_crop=320,
                                                       long_every=1, long_cached_crops=200, long_batch_size=3)))
    average_fold_runs([(model.parent, 0.7), (other, 0.3)], tmp_path / "avg")
    card = write_fold_card(dest, tmp_path / "avg", json.loads((data / "manifest.json").read_text()), metrics,
                           "a CPU", previous=previous)
    assert ("Weight averaging (`foldatlas train fold-average`, a \"model soup\"): the released weights are the "
            "parameter-by-parameter average of 2 fine-tunings of the same model") in card
    assert ("0.70 x the run described above and 0.30 x a run from the same `foldatlas-fold-small` (2 stages: (1) "
            "the whole model but its frozen language model, on one NVIDIA H200") in card
    assert "(the short crops unused)" in card and "every second step instead 3 of 240" in card
    assert "hours in the other averaged runs" in card
    (model.parent / "config.json").write_text(json.dumps(config))
    assert json.loads((model.parent / "metrics.json").read_text())["casp14"]["model"]["n"] == 1
    assert not dest.with_name(dest.name + ".tmp").exists()


def test_paired_difference_matches_chains_by_id():
    from foldatlas.train.release import paired_difference

    old = [{"id": "a", "tm_score": 0.2}, {"id": "b", "tm_score": 0.4}, {"id": "c", "tm_score": 0.5}]
    new = [{"id": "b", "tm_score": 0.5}, {"id": "a", "tm_score": 0.2}, {"id": "d", "tm_score": 0.9}]
    n, mean, se = paired_difference(old, new, "tm_score")
    assert n == 2 and abs(mean - 0.05) < 1e-12 and abs(se - 0.05) < 1e-12
    assert paired_difference(old, new[:1], "tm_score") is None  # one chain: no standard error
    assert paired_difference(None, new, "tm_score") is None
