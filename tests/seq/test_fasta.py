import gzip

import pytest

from foldatlas.errors import InvalidFileError, InvalidSequenceError
from foldatlas.seq import read_fasta, read_inputs


def test_read_gzipped_fasta(tmp_path):
    p = tmp_path / "x.fa.gz"
    p.write_bytes(gzip.compress(b">q1\nMKTAYI\n"))
    assert read_fasta(p)[0].chains == ("MKTAYI",)


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("\n\n  \n", "empty file"),
    ("MKTAYI\n>a\nMK\n", "not FASTA"),
    (">a\n>b\nMK\n", "has no sequence"),
])
def test_bad_fasta_files(tmp_path, content, message):
    p = tmp_path / "bad.fasta"
    p.write_text(content)
    with pytest.raises(InvalidFileError, match=message):
        read_fasta(p)


def test_binary_file_is_rejected(tmp_path):
    p = tmp_path / "bin.fasta"
    p.write_bytes(b"\x00\xff\xfe\x80garbage")
    with pytest.raises(InvalidFileError, match="cannot read"):
        read_fasta(p)


def test_invalid_residue_in_file_names_the_record(tmp_path):
    p = tmp_path / "x.fasta"
    p.write_text(">good\nMKT\n>bad_one\nMK#T\n")
    with pytest.raises(InvalidSequenceError, match=r"record 'bad_one': invalid residue '#' at position 3"):
        read_fasta(p)


def test_read_inputs_mixes_files_and_raw_sequences(tmp_path):
    p = tmp_path / "x.fasta"
    p.write_text(">a\nMKT\n")
    recs = read_inputs([str(p), "GAV", "ML:KK"])
    assert [r.name for r in recs] == ["a", "query_1", "query_2"]
    with pytest.raises(InvalidFileError, match="no such file"):
        read_inputs([str(tmp_path / "missing.fasta")])
