"""ModelCIF output: gemmi, biotite and modelcif's own reader read every file foldatlas writes and find the same
atoms, sequence and per-residue pLDDT; AlphaFold DB's QA metrics are read back on import."""

import io
from pathlib import Path

import numpy as np
import pytest

from foldatlas.atlas import ImportOptions, import_structures, open_atlas
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.seq import make_record
from foldatlas.structure.io import ca_atoms, read_structure

gemmi = pytest.importorskip("gemmi")

AFDB = Path(__file__).resolve().parents[1] / "data" / "afdb" / "AF-P00441-F1-model_v6_1-5.cif"
AFDB_PLDDT = [70.94, 83.56, 94.81, 98.44, 98.75]


def _read_all_three(text: str):
    """What each reader finds: (atoms, sequence per chain, local pLDDT, global metrics)."""
    import modelcif
    import modelcif.reader
    import modelcif.qa_metric
    from biotite.structure.io import pdbx

    from foldatlas.structure.modelcif import read_qa_metrics

    structure = gemmi.read_structure_from_string(text) if hasattr(gemmi, "read_structure_from_string") else \
        gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
    structure.setup_entities()
    g_atoms = [(a.pos.x, a.pos.y, a.pos.z) for ch in structure[0] for r in ch for a in r]
    g_seq = {e.name: gemmi.one_letter_code(e.full_sequence) for e in structure.entities if e.full_sequence}
    block = gemmi.cif.read_string(text).sole_block()
    g_local = [float(v) for v in block.find_values("_ma_qa_metric_local.metric_value")]

    cif = pdbx.CIFFile.read(io.StringIO(text))
    b_atoms = pdbx.get_structure(cif, model=1, extra_fields=["b_factor"])
    qa = read_qa_metrics(cif.block)

    system, = modelcif.reader.read(io.StringIO(text))
    model = system.model_groups[0][0]
    m_atoms = list(model.get_atoms())
    m_local = [q.value for q in model.qa_metrics if isinstance(q, modelcif.qa_metric.Local)]
    m_global = {q.name: q.value for q in model.qa_metrics if isinstance(q, modelcif.qa_metric.Global)}
    m_seq = ["".join(c.code_canonical for c in e.sequence) for e in system.entities]
    return {"gemmi": (np.array(g_atoms), g_seq, g_local), "biotite": (b_atoms, qa),
            "modelcif": (np.array([(a.x, a.y, a.z) for a in m_atoms]), m_seq, m_local, m_global)}


def test_a_prediction_is_modelcif_every_reader_agrees(tiny_model):
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    pred = fold_batch(tiny_model, [make_record("q1", seq)], FoldOptions(chunk_size=0))[0]
    text = pred.to_mmcif(weights="0123456789abcdef")
    atoms = pred.to_atoms()
    found = _read_all_three(text)
    g_xyz, g_seq, g_local = found["gemmi"]
    m_xyz, m_seq, m_local, m_global = found["modelcif"]
    b_atoms, qa = found["biotite"]
    expected = np.round(atoms.coord.astype(np.float64), 3)
    for xyz in (g_xyz, m_xyz, b_atoms.coord):
        np.testing.assert_allclose(xyz, expected, atol=1.5e-3)
    assert list(g_seq.values()) == [seq] and m_seq == [seq]
    plddt = np.round(pred.plddt.astype(np.float64), 2)
    for local in (g_local, m_local, list(qa.local_plddt.values())):
        np.testing.assert_allclose(local, plddt, atol=1e-6)
    assert m_global["pTM"] == pytest.approx(pred.ptm, abs=6e-4) and qa.global_metrics["pTM"] == pytest.approx(
        pred.ptm, abs=6e-4)
    assert m_global["pLDDT"] == pytest.approx(plddt.mean(), abs=0.01)
    # the archives' precision: coordinates at 3 decimals, B-factors (per-atom pLDDT) at 2
    row = next(line for line in text.splitlines() if line.startswith("ATOM 1 "))
    fields = row.split()
    assert all(len(f.split(".")[1]) == 3 for f in fields[10:13]) and len(fields[17].split(".")[1]) == 2
    for category in ("_entity_poly.", "_ma_qa_metric_local.", "_ma_qa_metric_global.", "_software.",
                     "_ma_protocol_step.", "_ma_model_list.", "_ma_software_parameter."):
        assert category in text
    assert "0123456789abcdef" in text and "num_recycles" in text
    assert "_ma_qa_metric_local_pairwise" not in text
    with_pae = pred.to_mmcif(pae=True)
    assert "_ma_qa_metric_local_pairwise" in with_pae and with_pae.count("\n") > text.count("\n") + len(seq) ** 2
    # the PDB file: a TITLE and SEQRES records as the archives' files have, pLDDT (0-100) in the B-factors
    pdb = pred.to_pdb()
    assert pdb.startswith("TITLE     foldatlas prediction of q1") and "SEQRES   1 A   33  MET LYS THR" in pdb
    structure = gemmi.read_pdb_string(pdb)
    structure.setup_entities()
    assert gemmi.one_letter_code(structure.entities[0].full_sequence) == seq
    b = [a.b_iso for ch in structure[0] for r in ch for a in r if a.name == "CA"]
    np.testing.assert_allclose(b, pred.plddt, atol=0.006)


def test_a_complex_has_one_entity_per_distinct_chain_and_iptm(tiny_model):
    a, b = "MKTAYIAKQRQISFVKSHF", "GSHMLEDPVDAFQ"
    pred = fold_batch(tiny_model, [make_record("c1", f"{a}:{a}:{b}")], FoldOptions(chunk_size=0))[0]
    text = pred.to_mmcif()
    found = _read_all_three(text)
    _, m_seq, m_local, m_global = found["modelcif"]
    assert sorted(m_seq) == sorted([a, b])  # the homodimer's two chains share one entity
    assert len(m_local) == 2 * len(a) + len(b)
    assert m_global["ipTM"] == pytest.approx(pred.iptm, abs=6e-4)
    b_atoms, _ = found["biotite"]
    assert list(dict.fromkeys(b_atoms.chain_id.tolist())) == ["A", "B", "C"]


def test_imported_entries_re_exported_and_alphafold_db_qa_metrics(tmp_path, split_dir):
    import modelcif.reader

    # an AlphaFold DB file whose B-factors were zeroed: the pLDDT comes from its QA metrics
    zeroed = tmp_path / "files" / "AF-P00441-F1.cif"
    zeroed.parent.mkdir()
    lines = AFDB.read_text().splitlines()
    zeroed.write_text("\n".join(ln[:ln.index("1.00") + 5] + "0.00" + ln[ln.index("1.00") + 10:]
                                if ln.startswith("ATOM") else ln for ln in lines) + "\n")
    assert read_structure(zeroed).b_factor.max() == 0.0
    with open_atlas(tmp_path / "atlas", create=True) as atlas:
        import_structures(atlas, [zeroed, split_dir / "1BUN_B.pdb"], None, ImportOptions(), progress=False)
        afdb = atlas.get("AF-P00441-F1")
        assert afdb.plddt.tolist() == pytest.approx(AFDB_PLDDT, abs=0.01) and afdb.model == "AlphaFold"
        experimental = atlas.get("1BUN_B")
        assert experimental.plddt is None
        for entry in (afdb, experimental):
            text = entry.to_mmcif()
            found = _read_all_three(text)
            atoms = entry.atoms()
            m_xyz, m_seq, m_local, _ = found["modelcif"]
            np.testing.assert_allclose(m_xyz, atoms.coord, atol=1.5e-3)
            assert m_seq == [entry.sequence]
            b_atoms, qa = found["biotite"]
            assert b_atoms.array_length() == atoms.array_length()
            assert (b_atoms.res_id == atoms.res_id).all()  # author numbering kept
            if entry is afdb:
                np.testing.assert_allclose(m_local, AFDB_PLDDT, atol=0.01)
            else:
                assert m_local == [] and qa is None
            # BinaryCIF of the same content
            system, = modelcif.reader.read(io.BytesIO(entry.to_bcif()), format="BCIF")
            assert len(list(system.model_groups[0][0].get_atoms())) == atoms.array_length()
    # read again from what foldatlas wrote: the QA metrics come back
    again = tmp_path / "again" / "AF-P00441-F1.cif"
    again.parent.mkdir()
    again.write_text(afdb.to_mmcif())
    with open_atlas(tmp_path / "atlas2", create=True) as atlas:
        import_structures(atlas, [again], None, ImportOptions(), progress=False)
        back = atlas.get("AF-P00441-F1")
        assert back.plddt.tolist() == pytest.approx(AFDB_PLDDT, abs=0.01)
    # a prediction's pTM and ipTM come back too
    pred_file = tmp_path / "again" / "c1.cif"
    from foldatlas.structure.modelcif import ModelInfo, modelcif_text

    atoms = read_structure(split_dir / "1AX8_A.pdb")
    n = len(ca_atoms(atoms))
    pred_file.write_text(modelcif_text(atoms, ModelInfo(name="c1", title="t", model="m", plddt=np.full(n, 55.0),
                                                        ptm=0.61, iptm=0.42)))
    with open_atlas(tmp_path / "atlas3", create=True) as atlas:
        import_structures(atlas, [pred_file], None, ImportOptions(), progress=False)
        entry = atlas.get("c1")
        assert (entry.ptm, entry.iptm) == pytest.approx((0.61, 0.42)) and entry.plddt.mean() == pytest.approx(55.0)


def test_alphafold_db_fixture_reads_as_alphafold_db_wrote_it():
    from biotite.structure.io import pdbx

    from foldatlas.structure.modelcif import read_qa_metrics

    qa = read_qa_metrics(pdbx.CIFFile.read(str(AFDB)).block)
    assert qa.global_metrics == {"pLDDT": 97.93}
    assert [qa.local_plddt[("A", k)] for k in range(1, 6)] == AFDB_PLDDT
    atoms = read_structure(AFDB)
    assert len(ca_atoms(atoms)) == 5 and qa.plddt_of(["A"] * 5, range(1, 6)).tolist() == pytest.approx(AFDB_PLDDT)
