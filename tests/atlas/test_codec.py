"""Blob encodings of atlas entries: lossless where the written files are, bounded error for PAE."""

from pathlib import Path

import numpy as np

from foldatlas.atlas import codec
from foldatlas.structure.io import read_structure

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"


def test_structure_round_trip_is_lossless_at_file_precision():
    atoms = read_structure(DATA / "1AX8_A.pdb")
    atoms.b_factor = np.linspace(0, 100, atoms.array_length()).round(2)
    blob = codec.encode_structure(atoms)
    back = codec.decode_structure(blob)
    assert back.array_length() == atoms.array_length()
    np.testing.assert_allclose(back.coord, atoms.coord, atol=1e-3)
    np.testing.assert_allclose(back.b_factor, atoms.b_factor, atol=1e-2)
    assert (back.res_name == atoms.res_name).all() and (back.atom_name == atoms.atom_name).all()
    assert (back.chain_id == atoms.chain_id).all() and (back.res_id == atoms.res_id).all()
    text_size = len((DATA / "1AX8_A.pdb").read_bytes())
    assert len(blob) < text_size / 5  # compact: BinaryCIF + zstd
    assert codec.decode_bcif(blob)[:1] != b""  # the stored BinaryCIF itself


def test_arrays_round_trip():
    rng = np.random.default_rng(0)
    plddt = rng.uniform(0, 100, 57).astype(np.float32)
    np.testing.assert_allclose(codec.decode_plddt(codec.encode_plddt(plddt)), plddt, atol=0.005 + 1e-6)
    pae = rng.uniform(0, 31.75, (57, 57)).astype(np.float32)
    back = codec.decode_pae(codec.encode_pae(pae), 57)
    assert back.shape == (57, 57) and np.abs(back - pae).max() <= codec.PAE_STEP / 2 + 1e-6
    emb = rng.normal(size=256).astype(np.float32)
    np.testing.assert_allclose(codec.decode_embedding(codec.encode_embedding(emb)), emb, rtol=1e-3, atol=1e-3)


def test_checksums():
    assert codec.sequence_md5("MKT") == "5c333fb1471d21ab5a236c2ff2c70faa"
    # UniProt's CRC64 of human haemoglobin alpha (P69905)
    hba = ("MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHVDDMPNALSALSDLHAHKLRV"
           "DPVNFKLLSHCLLVTLAAHLPAEFTPAVHASLDKFLASVSTVLTSKYR")
    assert codec.sequence_crc64(hba) == "15E13666573BBBAE"
