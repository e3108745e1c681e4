import pytest

from foldatlas.errors import InvalidSequenceError
from foldatlas.seq import make_record, parse_fasta, safe_names
from foldatlas.seq.complexes import LINKER, layout


def test_lower_case_and_whitespace_are_accepted():
    rec = make_record("r", " mkt ay\nIA kq \t")
    assert rec.chains == ("MKTAYIAKQ",)


def test_nonstandard_letters_follow_the_policy_and_are_recorded():
    rec = make_record("r", "MUOBZX*")
    assert rec.chains == ("MCKXXX",)
    assert rec.substitutions == (("A", 2, "U", "C"), ("A", 3, "O", "K"), ("A", 4, "B", "X"), ("A", 5, "Z", "X"))


@pytest.mark.parametrize("seq, where", [("MKJT", "position 3"), ("MK1", "position 3"), ("MK:AJ", "chain B position 2")])
def test_invalid_residue_names_record_and_position(seq, where):
    with pytest.raises(InvalidSequenceError) as e:
        make_record("my_protein", seq)
    assert "my_protein" in str(e.value) and where in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("seq", ["", "  ", "MK::AV", ":MK", "*"])
def test_empty_sequence_or_chain_is_an_error(seq):
    with pytest.raises(InvalidSequenceError):
        make_record("r", seq)


def test_safe_unique_names():
    assert safe_names(["sp|P69905|HBA_HUMAN", "../../etc/passwd", "a b", "A_B", ""]) == [
        "sp_P69905_HBA_HUMAN", "etc_passwd", "a_b", "A_B_2", "record_5"]


def test_complex_layout_matches_fair_esm():
    rec = make_record("ab", "MKT:AVGL")
    lay = layout(rec)
    n_link = len(LINKER)
    assert lay.length == 3 + n_link + 4
    # chain A and its trailing linker are numbered 0..27; chain B starts 512 later
    assert lay.residue_index[:3].tolist() == [0, 1, 2]
    assert lay.residue_index[3 + n_link] == 3 + n_link + 512
    assert lay.keep.sum() == 7 and not lay.keep[3:3 + n_link].any()
    assert set(lay.chain_index[lay.keep].tolist()) == {0, 1}


def test_parse_fasta_multiline_and_complex():
    recs = parse_fasta(">a desc here\nMKT\nAYI\n;comment\n>b\nMK:AV\n")
    assert [r.name for r in recs] == ["a", "b"]
    assert recs[0].chains == ("MKTAYI",) and recs[0].description == "a desc here"
    assert recs[1].chains == ("MK", "AV")
