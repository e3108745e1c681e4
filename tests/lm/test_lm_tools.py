"""Language-model tools on a tiny random ESM-2 checkpoint: parity with direct transformers computations, the
scoring rules by their definitions, batch invariance, writers, errors and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from foldatlas.cli.main import main
from foldatlas.errors import InvalidOptionError, InvalidSequenceError, SequenceTooLongError
from foldatlas.models.language import MASK, TOKEN_OF
from foldatlas.seq.records import make_record

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
OTHER = "GAVLIKKWMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNL"


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_checkpoint):
    return tiny_lm_checkpoint


@pytest.fixture(scope="module")
def lm(lm_dir):
    from foldatlas.lm import load_lm

    return load_lm(str(lm_dir))


@pytest.fixture(scope="module")
def reference(lm_dir):
    """The same weights loaded directly with transformers (eager attention), for parity."""
    from transformers import EsmForMaskedLM

    return EsmForMaskedLM.from_pretrained(str(lm_dir), attn_implementation="eager").eval()


def _ids(seq: str) -> torch.Tensor:
    return torch.tensor([[0, *[TOKEN_OF[c] for c in seq], 2]])


def _direct_log_probs(reference, ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(reference(input_ids=ids).logits, -1)[0].numpy()


def test_embeddings_match_transformers(lm, reference):
    from foldatlas.lm import embed

    [result] = embed(lm, [make_record("a", SEQ)], layers=(0, 1, -1), per_residue=True)
    with torch.no_grad():
        states = reference(input_ids=_ids(SEQ), output_hidden_states=True).hidden_states
    assert sorted(result.mean) == [0, 1, 2]
    for layer in (0, 1, 2):
        np.testing.assert_allclose(result.per_residue[layer], states[layer][0, 1:-1].numpy(), atol=1e-5)
        np.testing.assert_allclose(result.mean[layer], states[layer][0, 1:-1].mean(0).numpy(), atol=1e-5)
    # the final layer's mean is the atlas' embedding
    from foldatlas.models.embedding import mean_embeddings

    np.testing.assert_allclose(result.mean[2], mean_embeddings(lm.model, [SEQ])[0], atol=1e-5)


def test_a_sequence_alone_and_in_a_padded_batch_gives_the_same_numbers(lm):
    from foldatlas.lm import embed, predict_contacts, score_variants, single_scan

    recs = [make_record("short", SEQ), make_record("long", OTHER)]
    alone = embed(lm, recs[:1], per_residue=True, max_tokens=1)[0]
    batched = embed(lm, recs, per_residue=True, max_tokens=10_000)[0]
    assert np.abs(alone.per_residue[2] - batched.per_residue[2]).max() < 1e-5
    c_alone = predict_contacts(lm, recs[:1], max_tokens=1)[0]
    c_batch = predict_contacts(lm, recs, max_tokens=10_000)[0]
    assert c_alone.shape == (len(SEQ), len(SEQ)) and np.abs(c_alone - c_batch).max() < 1e-5
    variants = single_scan(SEQ)[:60]
    one = score_variants(lm, SEQ, variants, ("masked_marginal",), max_tokens=1)
    many = score_variants(lm, SEQ, variants, ("masked_marginal",), max_tokens=100_000)
    assert max(abs(a["masked_marginal"] - b["masked_marginal"]) for a, b in zip(one, many)) < 1e-4


def test_contacts_match_transformers(lm, reference):
    from foldatlas.lm import predict_contacts, top_contacts

    probs = predict_contacts(lm, [make_record("a", SEQ)])[0]
    with torch.no_grad():
        direct = reference.predict_contacts(_ids(SEQ), torch.ones_like(_ids(SEQ)))[0].numpy()
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    np.testing.assert_allclose(probs, probs.T, atol=1e-6)
    top = top_contacts(probs)
    assert len(top) == len(SEQ) and all(j - i >= 6 for i, j, _ in top)
    assert top[0][2] == pytest.approx(max(probs[i - 1, j - 1] for i, j, _ in top))


def test_scores_follow_their_definitions(lm, reference):
    from foldatlas.lm import parse_variants, score_variants

    variants = parse_variants(["T3G", "t3g:y5w", "K2K"], SEQ)
    rows = score_variants(lm, SEQ, variants, ("masked_marginal", "wt_marginal", "pll"))
    assert [r["mutant"] for r in rows] == ["T3G", "T3G:Y5W", "K2K"]

    def masked(seq, i):  # log p(. | seq with residue i (0-based) masked) at i
        ids = _ids(seq)
        ids[0, i + 1] = MASK
        return _direct_log_probs(reference, ids)[i + 1]

    t = masked(SEQ, 2)
    expected = t[TOKEN_OF["G"]] - t[TOKEN_OF["T"]]
    assert rows[0]["masked_marginal"] == pytest.approx(expected, abs=1e-4)
    y = masked(SEQ, 4)
    assert rows[1]["masked_marginal"] == pytest.approx(expected + y[TOKEN_OF["W"]] - y[TOKEN_OF["Y"]], abs=1e-4)
    wt = _direct_log_probs(reference, _ids(SEQ))
    assert rows[0]["wt_marginal"] == pytest.approx(wt[3, TOKEN_OF["G"]] - wt[3, TOKEN_OF["T"]], abs=1e-4)

    def pll(seq):
        return sum(masked(seq, i)[TOKEN_OF[seq[i]]] for i in range(len(seq)))

    mutant = SEQ[:2] + "G" + SEQ[3:]
    assert rows[0]["pll"] == pytest.approx(pll(mutant) - pll(SEQ), abs=1e-3)
    assert rows[2]["masked_marginal"] == 0 and rows[2]["wt_marginal"] == 0 and rows[2]["pll"] == 0


def test_variant_errors_name_the_mutation():
    from foldatlas.lm import parse_variants, single_scan

    cases = {"A3G": "has T at 3, not A", "T40G": "position 40 is outside the sequence (1..33",
             "3G": "not a mutation like A42G", "T3": "not a mutation like A42G", "T3J": "not one of the 20",
             "T3G:T3A": "mutated twice", "T3G,K2A": "not a mutation like A42G"}
    for text, message in cases.items():
        with pytest.raises(InvalidSequenceError, match="variant '" + text.replace(",", ".")):
            parse_variants([text], SEQ)
        with pytest.raises(InvalidSequenceError, match=message.replace("(", r"\(")):
            parse_variants([text], SEQ)
    assert str(parse_variants(["T102G"], SEQ, offset=100)[0][0]) == "T102G"
    with pytest.raises(InvalidSequenceError, match="no variants"):
        parse_variants(["  "], SEQ)
    scan = single_scan("MKX")
    assert len(scan) == 38 and all(v[0].mt != v[0].wt for v in scan)


def test_unmask_fills_masks_with_probabilities(lm, reference):
    from foldatlas.lm import unmask

    result = unmask(lm, "MKT<mask>YIAK_RQISF", top_k=3)
    assert [p["position"] for p in result["positions"]] == [4, 9]
    assert len(result["sequence"]) == 14 and result["sequence"][:3] == "MKT"
    for p in result["positions"]:
        probs = [c["probability"] for c in p["candidates"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert result["sequence"][p["position"] - 1] == p["candidates"][0]["residue"]
    ids = _ids("MKTXYIAKXRQISF")
    ids[0, 4] = MASK
    ids[0, 9] = MASK
    lp = _direct_log_probs(reference, ids)[4]
    aa = "ACDEFGHIKLMNPQRSTVWY"
    p = np.exp(lp[[TOKEN_OF[a] for a in aa]])
    assert result["positions"][0]["candidates"][0]["residue"] == aa[int(np.argmax(p))]
    assert result["positions"][0]["candidates"][0]["probability"] == pytest.approx(p.max() / p.sum(), abs=1e-4)
    for bad, message in (("MKTAY", "no masked position"), ("MK1<mask>", "invalid residue '1'"),
                         ("MK:<mask>A", "complex")):
        with pytest.raises(InvalidSequenceError, match=message):
            unmask(lm, bad)
    with pytest.raises(SequenceTooLongError):
        unmask(lm, "A" * 1100 + "_")


def test_limits_and_layers(lm):
    from foldatlas.lm import embed, predict_contacts

    with pytest.raises(InvalidSequenceError, match="complex"):
        predict_contacts(lm, [make_record("c", "MKT:GAV")])
    with pytest.raises(SequenceTooLongError, match="1023 residues"):
        predict_contacts(lm, [make_record("long", "A" * 1023)])
    with pytest.raises(InvalidOptionError, match="layer 5 does not exist"):
        embed(lm, [make_record("a", SEQ)], layers=(5,))
    # a long chain is embedded in windows, each residue once; a complex chain by chain
    [long] = embed(lm, [make_record("long", "MKTAYIAKQR" * 110)], per_residue=True)
    assert long.per_residue[2].shape == (1100, 32)
    [cx] = embed(lm, [make_record("cx", "MKTAY:GAVLI")], per_residue=True)
    assert cx.per_residue[2].shape == (10, 32)


def test_writers_round_trip(lm, tmp_path):
    import pyarrow.parquet as pq

    from foldatlas.lm import embed, write_embeddings

    recs = [make_record("a", SEQ), make_record("b", OTHER)]
    results = embed(lm, recs, layers=(1, -1), per_residue=True)
    z = np.load(write_embeddings(results, tmp_path / "e.npz"))
    assert list(z["names"]) == ["a", "b"] and z["b/per_residue/1"].shape == (len(OTHER), 32)
    np.testing.assert_array_equal(z["a/mean/2"], results[0].mean[2])
    table = pq.read_table(write_embeddings(results, tmp_path / "e.parquet")).to_pylist()
    assert len(table) == 4 and table[0]["name"] == "a" and len(table[0]["per_residue"]) == len(SEQ)
    with pytest.raises(InvalidOptionError, match="one layer"):
        write_embeddings(results, tmp_path / "e.npy")
    means = embed(lm, recs)
    arr = np.load(write_embeddings(means, tmp_path / "e.npy"))
    assert arr.shape == (2, 32)
    with pytest.raises(InvalidOptionError, match="unknown output format"):
        write_embeddings(means, tmp_path / "e.h5")
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.smoke
def test_cli_commands(lm_dir, tmp_path, capsys):
    m = ["--model", str(lm_dir)]
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">a\n{SEQ}\n>b\n{OTHER}\n")
    assert main(["embed", str(fasta), "-o", str(tmp_path / "e.npz"), "--layers", "0,-1", "--per-residue", "-q",
                 *m]) == 0
    assert set(np.load(tmp_path / "e.npz")) >= {"a/mean/0", "b/per_residue/2"}
    assert main(["contacts", str(fasta), "-o", str(tmp_path / "c"), "-q", *m]) == 0
    assert np.load(tmp_path / "c" / "b.contacts.npy").shape == (len(OTHER), len(OTHER))
    assert (tmp_path / "c" / "a.contacts.png").stat().st_size > 1000
    assert (tmp_path / "c" / "a.contacts.tsv").read_text().startswith("i\tj\tprobability\n")
    assert main(["variants", "MKTAYIAKQR", "--scan", "-o", str(tmp_path / "scan.csv"), "--heatmap",
                 str(tmp_path / "scan.png"), "-q", *m]) == 0
    rows = list(csv.DictReader(open(tmp_path / "scan.csv")))
    assert len(rows) == 190 and set(rows[0]) == {"mutant", "n_mutations", "masked_marginal", "wt_marginal"}
    assert (tmp_path / "scan.png").stat().st_size > 1000
    listing = tmp_path / "muts.csv"
    listing.write_text("mutant,measured\nK102A,0.5\nT103G:A104C,0.1\n")
    assert main(["variants", "MKTAYIAKQR", "--mutations-file", str(listing), "--offset", "101", "--methods",
                 "masked_marginal,pll", "-o", str(tmp_path / "v.csv"), "-q", *m]) == 0
    assert [r["mutant"] for r in csv.DictReader(open(tmp_path / "v.csv"))] == ["K102A", "T103G:A104C"]
    capsys.readouterr()
    assert main(["unmask", "MKT_YIAK", "--json", *m]) == 0
    assert json.loads(capsys.readouterr().out)["positions"][0]["position"] == 4


@pytest.mark.parametrize("args, message", [
    (["variants", "MKTAYIAKQR", "--mutations", "A2G"], "variant 'A2G': the sequence has K at 2, not A"),
    (["variants", "MKTAYIAKQR", "--mutations", "K2A", "--methods", "esm1b"], "unknown scoring method"),
    (["variants", "MKTAYIAKQR"], "give --mutations, --mutations-file or --scan"),
    (["variants", "MKT:AYI", "--scan"], "a complex"),
    (["embed", "MKTAY", "-o", "x.npz", "--layers", "a"], "--layers 'a'"),
    (["embed", "MKTAY", "-o", "x.npz", "--layers", "9"], "layer 9 does not exist"),
    (["unmask", "MKTAY"], "no masked position"),
    (["contacts", "MKJ"], "invalid residue 'J' at position 3"),
])
def test_cli_errors_are_one_line(lm_dir, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--model", str(lm_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_variants_longer_than_the_context_are_scored_in_the_window_centred_on_them(lm):
    """ESM-1b style windows (Brandes et al. 2023): position i of a 1,100-residue protein is scored in its 1,022-residue
    window, so the score equals the same variant scored on that window alone; short proteins are untouched."""
    rng = np.random.default_rng(3)
    long = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 1100))
    mutant = "A" if long[1049] != "A" else "G"
    start = 1100 - 1022  # the window of position 1050 (index 1049) is clamped to the sequence's end
    from foldatlas.lm import parse_variants, score_variants

    whole = score_variants(lm, long, parse_variants([f"{long[1049]}1050{mutant}"], long),
                           ("masked_marginal", "wt_marginal"))[0]
    window = long[start:]
    alone = score_variants(lm, window, parse_variants([f"{long[1049]}{1050 - start}{mutant}"], window),
                           ("masked_marginal", "wt_marginal"))[0]
    assert whole["masked_marginal"] == pytest.approx(alone["masked_marginal"], abs=1e-5)
    assert whole["wt_marginal"] == pytest.approx(alone["wt_marginal"], abs=1e-5)
