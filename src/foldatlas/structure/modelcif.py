"""ModelCIF files: a model's atoms with its confidence as QA metrics, as AlphaFold DB and ModelArchive publish them.

Written through the ModelArchive team's ``modelcif`` package (on ``ihm``): the entry and title, one entity per
distinct chain sequence with its polymer sequence, a target entity instance per chain, the software (foldatlas and
the model's weights, by name and hash) and the modelling step with the prediction's settings as parameters, the model
(``Ab initio model``), and the QA metrics: per-residue pLDDT (``_ma_qa_metric_local``), mean pLDDT, pTM and ipTM
(``_ma_qa_metric_global``) and, on request, PAE per residue pair (``_ma_qa_metric_local_pairwise``; a million rows
for 1,000 residues, so off by default: AlphaFold DB keeps PAE in a separate JSON file too). Coordinates are written
at 3 decimals, B-factors (pLDDT) at 2, as the archives write them. BinaryCIF of the same content for downloads.

:func:`read_qa_metrics` reads the QA metrics of any ModelCIF file (AlphaFold DB's included) with biotite's CIF
reader. Imports neither torch nor transformers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ModelInfo", "modelcif_text", "modelcif_bcif", "read_qa_metrics", "QAMetrics"]

_SOURCE = "https://pypi.org/project/foldatlas/"


@dataclass
class ModelInfo:
    """What a ModelCIF file says besides the atoms.

    Attributes
    ----------
    name : str
        The entry ID (``data_`` block and ``_entry.id``).
    title : str
        ``_struct.title``.
    model : str
        The model that made the structure (e.g. ``facebook/esmfold_v1``), or the source of an imported one.
    weights : str or None
        Hash of the model's weights, written as the model software's version.
    predicted : bool
        A prediction (``Ab initio model``, confidences as QA metrics) rather than an imported structure.
    plddt : ndarray or None
        Per-residue pLDDT (0-100) in the order of :func:`foldatlas.structure.io.ca_atoms`.
    ptm, iptm : float or None
    pae : ndarray or None
        PAE (Angstrom, residues x residues) to write as pairwise metrics.
    parameters : dict
        The prediction's settings (recycles, seed, precision...), written as the modelling step's parameters.
    """

    name: str
    title: str
    model: str
    weights: str | None = None
    predicted: bool = True
    plddt: np.ndarray | None = None
    ptm: float | None = None
    iptm: float | None = None
    pae: np.ndarray | None = None
    parameters: dict = field(default_factory=dict)


def _metric_classes(software):
    import modelcif.qa_metric as qa

    class LocalPLDDT(qa.Local, qa.PLDDT):
        """Predicted accuracy according to the CA-only lDDT in [0,100]"""
        name = "pLDDT"

    class GlobalPLDDT(qa.Global, qa.PLDDT):
        """Mean of the per-residue pLDDT in [0,100]"""
        name = "pLDDT"

    class GlobalPTM(qa.Global, qa.PTM):
        """Predicted TM-score in [0,1]"""
        name = "pTM"

    class GlobalIpTM(qa.Global, qa.IpTM):
        """Predicted interface TM-score between chains in [0,1]"""
        name = "ipTM"

    class PairwisePAE(qa.LocalPairwise, qa.PAE):
        """Predicted aligned error (Angstrom)"""
        name = "PAE"

    classes = (LocalPLDDT, GlobalPLDDT, GlobalPTM, GlobalIpTM, PairwisePAE)
    for cls in classes:
        cls.software = software
    return classes


def _chem_comp(res_name: str):
    import ihm

    from foldatlas.seq.alphabet import RESTYPE_3TO1

    one = RESTYPE_3TO1.get(res_name)
    if one is not None and res_name != "UNK":
        return ihm.LPeptideAlphabet()[one]
    return ihm.LPeptideChemComp(id=res_name, code=res_name, code_canonical=one or "X")


def _system(atoms, info: ModelInfo, text: bool):
    import ihm
    import modelcif
    import modelcif.data
    import modelcif.model
    import modelcif.protocol
    from biotite.structure import get_residue_starts

    from foldatlas import __version__

    system = modelcif.System(title=info.title, id=_block_name(info.name))
    foldatlas_sw = modelcif.Software(name="foldatlas", classification="model building",
                                     description="structure prediction and atlas on protein language models",
                                     location=_SOURCE, type="package", version=__version__)
    model_sw = modelcif.Software(name=info.model, classification="model building" if info.predicted else "other",
                                 description="the model's weights" if info.predicted else "source of the structure",
                                 location=_SOURCE, type="program", version=info.weights or ihm.unknown)
    local_plddt, global_plddt, global_ptm, global_iptm, pairwise_pae = _metric_classes(foldatlas_sw)

    starts = get_residue_starts(atoms, add_exclusive_stop=True)
    chain_of = atoms.chain_id[starts[:-1]]
    chains: dict[str, list[int]] = {}
    for k, cid in enumerate(chain_of.tolist()):
        chains.setdefault(cid, []).append(k)
    entities: dict[tuple, object] = {}
    asym_of: dict[str, tuple[object, dict]] = {}
    for cid, residues in chains.items():
        names = tuple(atoms.res_name[starts[k]] for k in residues)
        entity = entities.get(names)
        if entity is None:
            entity = entities[names] = modelcif.Entity([_chem_comp(n) for n in names],
                                                       description=f"Chain {cid or 'A'}")
        auth = {i + 1: (int(atoms.res_id[starts[k]]), str(atoms.ins_code[starts[k]]) or None)
                for i, k in enumerate(residues)}
        auth_map = {s: (a, ins) if ins else a for s, (a, ins) in auth.items()}
        asym = modelcif.AsymUnit(entity, details=f"Model subunit {cid or 'A'}", id=cid or "A",
                                 auth_seq_id_map=auth_map)
        asym_of[cid] = (asym, {k: i + 1 for i, k in enumerate(residues)})
    assembly = modelcif.Assembly([a for a, _ in asym_of.values()], name="Modeled assembly")

    coords = np.round(atoms.coord.astype(np.float64), 3)
    biso = np.round(atoms.b_factor.astype(np.float64), 2) if "b_factor" in atoms.get_annotation_categories() \
        else np.zeros(atoms.array_length())
    residue_of_atom = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    model_atoms = []
    for i in range(atoms.array_length()):
        k = int(residue_of_atom[i])
        asym, seq = asym_of[chain_of[k]]
        # text: B-factors as strings, so that they keep the archives' two decimals (ihm writes floats with three)
        b = f"{biso[i]:.2f}" if text else float(biso[i])
        model_atoms.append(modelcif.model.Atom(asym_unit=asym, seq_id=seq[k], atom_id=str(atoms.atom_name[i]),
                                               type_symbol=str(atoms.element[i]), x=float(coords[i, 0]),
                                               y=float(coords[i, 1]), z=float(coords[i, 2]),
                                               het=bool(atoms.hetero[i]), biso=b, occupancy=1.0))

    class _Model(modelcif.model.AbInitioModel if info.predicted else modelcif.model.Model):
        # the first line is _ma_model_list.model_type for modelcif
        __doc__ = "Ab initio model" if info.predicted else "Other"

        def get_atoms(self):
            return iter(model_atoms)

    model = _Model(assembly=assembly, name="Top ranked model" if info.predicted else "Model")
    ordered = [asym_of[chain_of[k]][0].residue(asym_of[chain_of[k]][1][k]) for k in range(len(starts) - 1)]
    if info.plddt is not None:
        values = np.round(np.asarray(info.plddt, np.float64), 2)
        if len(values) != len(ordered):
            raise ValueError(f"{len(values)} pLDDT values for {len(ordered)} residues")
        model.qa_metrics.extend(local_plddt(r, float(v)) for r, v in zip(ordered, values))
        model.qa_metrics.append(global_plddt(round(float(values.mean()), 2)))
    if info.ptm is not None:
        model.qa_metrics.append(global_ptm(round(float(info.ptm), 4)))
    if info.iptm is not None:
        model.qa_metrics.append(global_iptm(round(float(info.iptm), 4)))
    if info.pae is not None:
        pae = np.round(np.asarray(info.pae, np.float64), 2)
        model.qa_metrics.extend(pairwise_pae(r1, r2, float(pae[i, j])) for i, r1 in enumerate(ordered)
                                for j, r2 in enumerate(ordered))
    system.model_groups.append(modelcif.model.ModelGroup([model], name="All models"))
    if info.predicted:
        parameters = [modelcif.SoftwareParameter(str(k), v if isinstance(v, (int, float, bool)) else str(v))
                      for k, v in info.parameters.items() if v is not None]
        step = modelcif.protocol.ModelingStep(
            input_data=modelcif.data.DataGroup(list(entities.values())), output_data=model,
            software=modelcif.SoftwareGroup([modelcif.SoftwareWithParameters(foldatlas_sw, parameters), model_sw]),
            name="Structure prediction")
        protocol = modelcif.protocol.Protocol()
        protocol.steps.append(step)
        system.protocols.append(protocol)
    else:
        system.software.append(model_sw)
    return system


def _block_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return cleaned or "model"


def modelcif_text(atoms, info: ModelInfo) -> str:
    """ModelCIF (mmCIF) text of an ``AtomArray`` (with pLDDT or other B-factors) and what ``info`` says of it."""
    import modelcif.dumper

    buf = io.StringIO()
    modelcif.dumper.write(buf, [_system(atoms, info, text=True)])
    return buf.getvalue()


def modelcif_bcif(atoms, info: ModelInfo) -> bytes:
    """The same content as :func:`modelcif_text` as BinaryCIF."""
    import modelcif.dumper

    buf = io.BytesIO()
    modelcif.dumper.write(buf, [_system(atoms, info, text=False)], format="BCIF")
    return buf.getvalue()


@dataclass
class QAMetrics:
    """The QA metrics of a ModelCIF file.

    Attributes
    ----------
    local_plddt : dict
        ``(label_asym_id, label_seq_id) -> pLDDT`` of the local pLDDT metric.
    global_metrics : dict
        Name -> value of the global metrics (``pLDDT``, ``pTM``, ``ipTM``... as the file names them).
    """

    local_plddt: dict
    global_metrics: dict

    def plddt_of(self, chain_ids, seq_ids) -> np.ndarray | None:
        """Per-residue pLDDT of residues given by label asym and seq IDs; None if one has no value."""
        values = [self.local_plddt.get((str(c), int(s))) for c, s in zip(chain_ids, seq_ids)]
        if not values or any(v is None for v in values):
            return None
        return np.asarray(values, np.float32)


def read_qa_metrics(block) -> QAMetrics | None:
    """The QA metrics of a ModelCIF block (a biotite ``CIFBlock``), or None when it has no ``_ma_qa_metric``.

    A local metric counts as pLDDT when its type is ``pLDDT`` (0-100) or ``pLDDT in [0,1]`` (scaled to 0-100).
    """
    if "ma_qa_metric" not in block:
        return None
    meta = block["ma_qa_metric"]
    ids = meta["id"].as_array(str)
    types = meta["type"].as_array(str)
    names = meta["name"].as_array(str) if "name" in meta else types
    modes = meta["mode"].as_array(str)
    scale = {i: (100.0 if t.lower() == "plddt in [0,1]" else 1.0) for i, t in zip(ids, types)}
    plddt_ids = {i for i, t, m in zip(ids, types, modes) if m == "local" and t.lower().startswith("plddt")}
    local = {}
    if "ma_qa_metric_local" in block and plddt_ids:
        cat = block["ma_qa_metric_local"]
        metric = cat["metric_id"].as_array(str)
        asym = cat["label_asym_id"].as_array(str)
        seq = cat["label_seq_id"].as_array(int)
        value = cat["metric_value"].as_array(float)
        for m, a, s, v in zip(metric, asym, seq, value):
            if m in plddt_ids:
                local[(str(a), int(s))] = float(v) * scale[m]
    glob = {}
    if "ma_qa_metric_global" in block:
        cat = block["ma_qa_metric_global"]
        by_id = dict(zip(ids, names))
        for m, v in zip(cat["metric_id"].as_array(str), cat["metric_value"].as_array(float)):
            glob[str(by_id.get(m, m))] = float(v) * scale.get(m, 1.0)
    return QAMetrics(local, glob)
