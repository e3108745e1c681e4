"""Sequence design and structure-conditioned scoring with ProteinMPNN (:mod:`foldatlas.models.proteinmpnn`).

:func:`design_sequences` samples sequences for a backbone as the reference's ``run.py`` does (same seed, same
batch size: same sequences), with designed chains, fixed positions, per-amino-acid bias and omission, and tied
positions; each design gets ProteinMPNN's score (mean negative log-likelihood of its amino acids over the designed
positions, each conditioned on the structure and the residues decoded before it; lower is better) and its recovery
of the input sequence. :func:`score_sequences` gives the log-likelihood of given sequences, per residue and in all,
averaged over random decoding orders (the reference's ``score.py --autoregressive_score``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from foldatlas.design.features import Backbone, backbone, parse_positions, tied_groups
from foldatlas.errors import InvalidOptionError, InvalidSequenceError

__all__ = ["DesignOptions", "Design", "DesignResult", "SequenceScore", "design_sequences", "score_sequences",
           "position_log_probs", "load_design_model", "design_plan"]

_AMINO = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class DesignOptions:
    """What to design and how.

    Attributes
    ----------
    num_sequences : int
        Designs to sample.
    temperature : float
        Sampling temperature (ProteinMPNN's default 0.1; higher gives more diverse, less native-like designs).
    seed : int
        Seeds the decoding orders and the sampling (the reference's ``--seed``).
    batch_size : int
        Designs decoded together; with the same seed and batch size the designs equal the reference's.
    chains : tuple of str, optional
        Chains to design; the others are kept and read as context (default: all).
    fixed : str, optional
        Residues kept, like ``A10-25,B3`` (see :func:`foldatlas.design.features.parse_positions`).
    omit : str
        Amino acids never sampled (one-letter codes).
    bias : dict
        Added to the logits of amino acids (``{"A": -1.0}`` makes alanine rarer).
    tied : str, optional
        Positions that get one amino acid, groups split by ``|``: ``A10,B10|A11,B11``.
    homo_oligomer : bool
        Tie every residue to the same residue of the other chains (chains of one sequence).
    model : str
        Registered design model (``proteinmpnn`` or ``soluble``) or a checkpoint folder.
    """

    num_sequences: int = 8
    temperature: float = 0.1
    seed: int = 0
    batch_size: int = 8
    chains: tuple[str, ...] | None = None
    fixed: str | None = None
    omit: str = ""
    bias: dict = field(default_factory=dict)
    tied: str | None = None
    homo_oligomer: bool = False
    model: str = "proteinmpnn"

    def __post_init__(self) -> None:
        if self.num_sequences < 1 or self.batch_size < 1:
            raise InvalidOptionError("--num-sequences and --batch-size must be >= 1")
        if not 0.0 < self.temperature <= 100.0:
            raise InvalidOptionError("--temperature must be > 0 (and at most 100)")
        if self.seed < 0:
            raise InvalidOptionError("--seed must be >= 0")
        bad = sorted(set(self.omit.upper()) - set(_AMINO))
        if bad:
            raise InvalidOptionError(f"--omit: {''.join(bad)} is not an amino acid (use one-letter codes)")
        if len(set(self.omit.upper())) == len(_AMINO):
            raise InvalidOptionError("--omit leaves no amino acid to sample")
        for aa, value in self.bias.items():
            if aa.upper() not in _AMINO or len(aa) != 1:
                raise InvalidOptionError(f"--bias: {aa!r} is not an amino acid (use one-letter codes, like A:-1.0)")
            if not np.isfinite(value):
                raise InvalidOptionError(f"--bias: the bias of {aa} must be a finite number")


@dataclass(frozen=True)
class Design:
    """One designed sequence.

    Attributes
    ----------
    index : int
        1-based.
    sequence : str
        Chains joined by ``:`` (every chain, designed or not).
    score : float
        Mean negative log-likelihood (nats) of the designed positions (ProteinMPNN's score; lower is better).
    global_score : float
        The same over every residue the network reads.
    confidence : float
        ``exp(-score)``, the reference's ``overall_confidence``.
    recovery : float
        Fraction of designed positions with the input's amino acid.
    """

    index: int
    sequence: str
    score: float
    global_score: float
    confidence: float
    recovery: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DesignResult:
    """Designs of one structure.

    Attributes
    ----------
    name : str
    native : str
        The input's sequence (chains joined by ``:``).
    native_score : float
        Mean negative log-likelihood of the input's amino acids at the designed positions (mean over the decoding
        orders of the designs).
    designed : int
        Positions designed.
    model : str
    options : DesignOptions
    designs : list of Design
    """

    name: str
    native: str
    native_score: float
    designed: int
    model: str
    options: DesignOptions
    designs: list

    def to_fasta(self, extra: dict | None = None) -> str:
        """FASTA: the input first (its score), then each design with its scores, as ProteinMPNN writes them;
        ``extra`` maps a design index (0: the input) to more ``key=value`` text for its header."""
        o, extra = self.options, extra or {}
        more = lambda k: f" {extra[k]}" if k in extra else ""  # noqa: E731
        lines = [f">{self.name} native score={self.native_score:.4f} designed={self.designed} model={self.model} "
                 f"temperature={o.temperature:g} seed={o.seed}{more(0)}", self.native]
        for d in self.designs:
            lines += [f">{self.name}_design_{d.index} score={d.score:.4f} global_score={d.global_score:.4f} "
                      f"confidence={d.confidence:.4f} recovery={d.recovery:.4f}{more(d.index)}", d.sequence]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        out = asdict(self)
        out["options"] = {**asdict(self.options), "chains": list(self.options.chains or [])}
        return out


@dataclass(frozen=True)
class SequenceScore:
    """A sequence's log-likelihood under the structure.

    Attributes
    ----------
    sequence : str
    per_residue : list of float
        Log-probability (nats) of each residue (mean over decoding orders); None where the network does not read
        the residue (missing backbone atoms).
    total : float
        Sum over the residues read.
    mean : float
        Mean over the residues read (minus ProteinMPNN's score).
    """

    sequence: str
    per_residue: list
    total: float
    mean: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@lru_cache(maxsize=2)
def load_design_model(name: str = "proteinmpnn"):
    """The ProteinMPNN model of a registered name or checkpoint folder (kept: later calls reuse it)."""
    from foldatlas.models.proteinmpnn import load_proteinmpnn
    from foldatlas.models.registry import REGISTRY, resolve_model

    spec = REGISTRY.get(name)
    if spec is not None and spec.kind != "design":
        designers = ", ".join(n for n, s in REGISTRY.items() if s.kind == "design")
        raise InvalidOptionError(f"--model {name} is a {spec.kind} model; design with {designers} or a ProteinMPNN "
                                 "checkpoint folder")
    return load_proteinmpnn(resolve_model(name).path)


def _tensors(bb: Backbone):
    import torch

    return (torch.tensor(bb.coords)[None], torch.tensor(bb.mask)[None], torch.tensor(bb.residue_index)[None],
            torch.tensor(bb.chain_labels)[None], torch.tensor(bb.codes())[None])


def _join(bb: Backbone, letters: np.ndarray) -> str:
    return ":".join("".join(letters[bb.chain_ids == c]) for c in bb.chains)


def design_plan(bb: Backbone, options: DesignOptions) -> tuple[np.ndarray, list[list[int]]]:
    """The positions to design (boolean, per residue) and the tied groups, checked against the structure.

    Raises
    ------
    InvalidOptionError
        If options name chains or residues the structure lacks, or leave nothing to design.
    """
    if options.chains:
        missing = [c for c in options.chains if c not in bb.chains]
        if missing:
            raise InvalidOptionError(f"--chains: no chain {', '.join(missing)} (chains: {', '.join(bb.chains)})")
    designed = np.isin(bb.chain_ids, options.chains) if options.chains else np.ones(len(bb), dtype=bool)
    designed &= ~parse_positions(options.fixed, bb, "--fixed")
    designed &= bb.mask > 0
    if not designed.any():
        raise InvalidOptionError("nothing to design: every position is fixed, outside --chains, or lacks backbone "
                                 "atoms")
    return designed, tied_groups(options.tied, bb, options.homo_oligomer)


def design_sequences(atoms, options: DesignOptions = DesignOptions(), name: str = "design") -> DesignResult:
    """Design sequences for a structure's backbone.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    options : DesignOptions
    name : str
        Names the FASTA records.

    Returns
    -------
    DesignResult

    Raises
    ------
    InvalidOptionError
        If options name chains or residues the structure lacks, or leave nothing to design.
    """
    import torch

    from foldatlas.models.proteinmpnn import MPNN_ALPHABET

    bb = backbone(atoms)
    designed, tied = design_plan(bb, options)
    bias = np.zeros((len(bb), 21), dtype=np.float32)
    for aa, value in options.bias.items():
        bias[:, MPNN_ALPHABET.index(aa.upper())] += value
    for aa in set(options.omit.upper()):
        bias[:, MPNN_ALPHABET.index(aa)] -= 1e8  # the reference's omission

    model = load_design_model(options.model)
    x, mask, residue_index, chain_labels, native = _tensors(bb)
    designed_t = torch.tensor(designed, dtype=torch.float32)[None]
    generator = torch.Generator().manual_seed(options.seed)
    sequences, scores, global_scores, native_scores = [], [], [], []
    with torch.no_grad():
        encoded = model.encode(x, mask, residue_index, chain_labels)  # one backbone: encoded once for every batch
        while len(sequences) < options.num_sequences:
            randn = torch.randn(options.batch_size, len(bb), generator=generator)
            out = model.sample(x, mask, residue_index, chain_labels, native, designed_t,
                               torch.tensor(bias)[None], options.temperature, randn, generator, tied or None,
                               encoded=encoded)
            # the log-likelihoods of the whole chain under the same orders (sampling returns only designed ones)
            lp = model.decode(encoded, mask, out["S"], out["order"])
            native_lp = model.decode(encoded, mask, native, out["order"])
            for k in range(options.batch_size):
                s = out["S"][k]
                picked = lp[k, torch.arange(len(bb)), s].numpy()
                sequences.append(s.numpy())
                scores.append(float(-picked[designed].mean()))
                global_scores.append(float(-picked[bb.mask > 0].mean()))
                native_scores.append(float(-native_lp[k, torch.arange(len(bb)), native[0]].numpy()[designed].mean()))
    letters = np.array(list(MPNN_ALPHABET))
    native_codes = bb.codes()
    designs = []
    for k, (s, sc, gs) in enumerate(zip(sequences[:options.num_sequences], scores, global_scores)):
        designs.append(Design(index=k + 1, sequence=_join(bb, letters[s]), score=round(sc, 4),
                              global_score=round(gs, 4), confidence=round(float(np.exp(-sc)), 4),
                              recovery=round(float((s[designed] == native_codes[designed]).mean()), 4)))
    return DesignResult(name=name, native=_join(bb, np.array(list(bb.sequence))),
                        native_score=round(float(np.mean(native_scores[:options.num_sequences])), 4),
                        designed=int(designed.sum()), model=options.model, options=options, designs=designs)


def score_sequences(atoms, sequences: list[str], model: str = "proteinmpnn", num_orders: int = 8,
                    seed: int = 0) -> list[SequenceScore]:
    """Log-likelihood of sequences on a structure's backbone, per residue and in all.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    sequences : list of str
        One amino acid per residue of the structure (chains in order, ``:`` between them optional).
    model : str
    num_orders : int
        Random decoding orders averaged over.
    seed : int

    Raises
    ------
    InvalidSequenceError
        If a sequence's length or letters do not fit the structure.
    """
    import torch

    from foldatlas.models.proteinmpnn import MPNN_ALPHABET, decoding_order

    if num_orders < 1:
        raise InvalidOptionError("the number of decoding orders must be >= 1")
    bb = backbone(atoms)
    net = load_design_model(model)
    x, mask, residue_index, chain_labels, _ = _tensors(bb)
    table = {ch: k for k, ch in enumerate(MPNN_ALPHABET)}
    with torch.no_grad():
        encoded = net.encode(x, mask, residue_index, chain_labels)  # shared by every sequence scored
    out = []
    for sequence in sequences:
        flat = sequence.replace(":", "").upper()
        if len(flat) != len(bb):
            chains = ", ".join(f"{c} {len(s)}" for c, s in bb.chain_sequences().items())
            raise InvalidSequenceError(f"--score: the sequence has {len(flat)} residues, the structure {len(bb)} "
                                       f"(chains {chains})")
        bad = sorted(set(flat) - set(MPNN_ALPHABET))
        if bad:
            raise InvalidSequenceError(f"--score: {''.join(bad)} is not an amino acid")
        codes = torch.tensor([table[ch] for ch in flat])[None]
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            randn = torch.randn(num_orders, len(bb), generator=generator)
            order = decoding_order(randn, torch.ones(1, len(bb)))
            lp = net.decode(encoded, mask, codes, order)
        per = lp[:, torch.arange(len(bb)), codes[0]].mean(0).numpy()
        read = bb.mask > 0
        out.append(SequenceScore(sequence=flat, per_residue=[round(float(v), 4) if r else None
                                                             for v, r in zip(per, read)],
                                 total=round(float(per[read].sum()), 4), mean=round(float(per[read].mean()), 4)))
    return out


def position_log_probs(atoms, sequence: str | None = None, model: str = "proteinmpnn", num_orders: int = 4,
                       seed: int = 0, positions: list[int] | None = None, rows_per_pass: int = 8) -> np.ndarray:
    """Each position's amino-acid log-probabilities given the structure and every other residue's amino acid.

    Position ``i`` is decoded last (after all the others, whose order is random), so its distribution is conditioned
    on the backbone and the whole rest of the sequence: ProteinMPNN's analogue of a masked language model's
    masked marginal. Averaged over ``num_orders`` random orders of the others.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
    sequence : str, optional
        The amino acids to read on the backbone, one per residue (default: the structure's own).
    model : str
    num_orders : int
    seed : int
    positions : list of int, optional
        0-based residues to compute (default: all); the other rows are NaN.
    rows_per_pass : int
        (position, order) pairs decoded together (memory: about 25 MB per row per 100 residues).

    Returns
    -------
    ndarray of float32, shape (L, 21)
        Natural-log probabilities in :data:`foldatlas.models.proteinmpnn.MPNN_ALPHABET` order; NaN rows where the
        network does not read the residue.
    """
    import torch

    from foldatlas.models.proteinmpnn import MPNN_ALPHABET, decoding_order

    if num_orders < 1 or rows_per_pass < 1:
        raise InvalidOptionError("the number of decoding orders and rows per pass must be >= 1")
    bb = backbone(atoms)
    net = load_design_model(model)
    x, mask, residue_index, chain_labels, codes = _tensors(bb)
    if sequence is not None:
        flat = sequence.replace(":", "").upper()
        if len(flat) != len(bb) or set(flat) - set(MPNN_ALPHABET):
            raise InvalidSequenceError(f"the sequence must have one amino acid per residue of the structure "
                                       f"({len(bb)}), got {len(flat)}")
        codes = torch.tensor([MPNN_ALPHABET.index(ch) for ch in flat])[None]
    length = len(bb)
    read = np.flatnonzero(bb.mask > 0)
    if positions is not None:
        read = np.array(sorted(set(int(p) for p in positions) & set(read.tolist())), dtype=np.int64)
    generator = torch.Generator().manual_seed(seed)
    randn = torch.randn(num_orders, length, generator=generator)
    pairs = [(int(i), o) for i in read for o in range(num_orders)]
    out = np.full((length, 21), np.nan)
    out[read] = 0.0
    with torch.no_grad():
        encoded = net.encode(x, mask, residue_index, chain_labels)
        for start in range(0, len(pairs), rows_per_pass):
            chunk = pairs[start:start + rows_per_pass]
            last = torch.zeros(len(chunk), length)
            last[torch.arange(len(chunk)), torch.tensor([i for i, _ in chunk])] = 1.0
            order = decoding_order(randn[[o for _, o in chunk]], last)  # position i after every other one
            lp = net.decode(encoded, mask, codes, order)
            for row, (i, _) in enumerate(chunk):
                out[i] += lp[row, i].numpy()
    return (out / num_orders).astype(np.float32)
