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


def test_trace_atoms_are_the_structures_atoms_without_the_extras():
    """The structure index's lean decoding gives the same atoms, traces and 3Di states as the full one: several
    chains, insertion codes, hetero atoms, negative residue numbers; several models go through the full decoder."""
    import biotite.structure as struc

    from foldatlas.atlas.structindex import chain_traces

    a, b = read_structure(DATA / "1AX8_A.pdb"), read_structure(DATA / "1FHG_A.pdb")
    b.chain_id[:] = "B"
    b.res_id -= 40  # negative numbers
    b.ins_code[b.res_id % 7 == 0] = "A"
    b.hetero[-5:] = True
    atoms = a + b
    for structure in (a, atoms):
        blob = codec.encode_structure(structure)
        full, lean = codec.decode_structure(blob), codec.decode_trace_atoms(blob)
        assert lean.array_length() == full.array_length()
        np.testing.assert_array_equal(lean.coord, full.coord)
        for name in ("chain_id", "res_id", "ins_code", "res_name", "atom_name", "hetero"):
            assert (lean.get_annotation(name) == full.get_annotation(name)).all(), name
        for x, y in zip(chain_traces(lean), chain_traces(full), strict=True):
            assert x.chain_id == y.chain_id and x.sequence == y.sequence
            np.testing.assert_array_equal(x.ca, y.ca)
            np.testing.assert_array_equal(x.threedi, y.threedi)
    assert (atoms.ins_code == "A").any()
    models = struc.stack([a, a])
    models.coord[1] += 5.0
    from biotite.structure.io import pdbx

    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, models)
    import io

    buf = io.BytesIO()
    bcif.write(buf)
    blob = codec._compress(buf.getvalue())
    np.testing.assert_array_equal(codec.decode_trace_atoms(blob).coord, a.coord.round(3))  # the first model only


def test_direct_binarycif_writer_is_byte_identical_to_biotites():
    """The atlas writes BinaryCIF from the atoms' arrays; the bytes are those of biotite's object model with the
    same encodings, and what the direct writer does not cover goes through biotite."""
    from pathlib import Path

    import biotite.structure as struc

    from foldatlas.atlas.codec import _biotite_bcif, _direct_bcif
    from foldatlas.structure.io import read_structure

    data = Path(__file__).resolve().parents[1] / "data"
    files = sorted(data.rglob("*.pdb")) + sorted(data.rglob("*.cif"))
    assert len(files) >= 4
    for f in files:
        atoms = read_structure(f)
        assert _direct_bcif(atoms) == _biotite_bcif(atoms), f
    # hetero atoms, insertion codes, three chains (one repeated later), far-apart coordinates and large B-factor
    # steps (values packed as several bytes), negative residue numbers
    atoms = read_structure(files[0])[:60].copy()
    atoms.hetero[5:9] = True
    atoms.ins_code[10:14] = "A"
    atoms.chain_id[20:40] = "B"
    atoms.chain_id[50:] = "A"
    atoms.chain_id[40:50] = "C"
    atoms.res_id[:3] = -7
    atoms.coord[30] += 900.0
    atoms.b_factor[::2] = 99.99
    atoms.b_factor[1::2] = 0.0
    assert _direct_bcif(atoms) == _biotite_bcif(atoms)
    assert codec.decode_structure(codec.encode_structure(atoms)).array_length() == 60
    stack = struc.stack([atoms, atoms])
    other = atoms.copy()
    other.set_annotation("occupancy", np.ones(60, np.float32))
    for special in (stack, other, atoms[:1]):
        assert _direct_bcif(special) is None
    assert codec.decode_structure(codec.encode_structure(other)).array_length() == 60
