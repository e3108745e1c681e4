"""Evaluation of a masked LM: perplexity and unsupervised contact precision.

Contacts follow the ESM-2 recipe: the attention maps of every layer and head
are symmetrized and APC-corrected (transformers' ``EsmContactPredictionHead``)
and a sparse (L1) logistic regression over those features is fitted on
training structures. The fitted weights are the contact head of the model
itself (``esm.contact_head.regression``), so ``EsmForMaskedLM.predict_contacts``
uses them. A contact is a C-beta pair (C-alpha for glycine) within 8 angstroms.

Reported: top-L precision of long-range pairs (``|i - j| >= 24``) on the test
chains, next to the expected precision of random guesses (the contact density
of the same pairs).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["contact_map", "attention_features", "fit_contact_regression", "top_l_precision", "evaluate_lm"]

CONTACT_CUTOFF = 8.0
LONG_RANGE = 24
MIN_SEPARATION = 6


def contact_map(coords: np.ndarray, sequence: str, cutoff: float = CONTACT_CUTOFF) -> np.ndarray:
    """Boolean contact map from N/CA/C/O/CB coordinates (CA for glycine)."""
    pts = np.where(np.array([c == "G" for c in sequence])[:, None], coords[:, 1], coords[:, 4]).astype(np.float64)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    return d < cutoff


def attention_features(model, sequence: str) -> np.ndarray:
    """Symmetrized, APC-corrected attention maps: array (L, L, layers * heads)."""
    import torch
    from transformers.models.esm.modeling_esm import average_product_correct, symmetrize

    from foldatlas.train.lm import tokenize

    ids, att = tokenize([sequence])
    with torch.no_grad():
        out = model.esm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(att),
                        output_attentions=True, return_dict=True)
    attns = torch.stack(out.attentions, dim=1)[0]  # layers, heads, T, T
    layers, heads, t, _ = attns.shape
    attns = attns.reshape(layers * heads, t, t)[:, 1:-1, 1:-1]
    feats = average_product_correct(symmetrize(attns.float()))
    return feats.permute(1, 2, 0).numpy()


def _save_in_stored_dtype(model, folder: Path) -> None:
    """Save ``model`` back into ``folder`` in the dtype its weights were stored in."""
    import torch
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as fh:
        stored = fh.get_slice(next(iter(fh.keys()))).get_dtype()
    dtype = {"F16": torch.float16, "BF16": torch.bfloat16}.get(stored, torch.float32)
    model.to(dtype).save_pretrained(str(folder), safe_serialization=True)
    model.to(torch.float32)


def _pairs(n: int, min_sep: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=min_sep)
    return i, j


def fit_contact_regression(model, chains: list[dict], max_pairs_per_chain: int = 20000, seed: int = 0) -> dict:
    """Fit the L1 logistic regression on training chains; install it as the model's contact head.

    Returns
    -------
    dict
        ``chains``, ``pairs``, ``nonzero_weights``.
    """
    import torch

    from foldatlas.train.sources import require_extra

    LogisticRegression = require_extra("sklearn.linear_model", "scikit-learn").LogisticRegression

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for ch in chains:
        feats = attention_features(model, ch["sequence"])
        i, j = _pairs(len(ch["sequence"]), MIN_SEPARATION)
        if len(i) > max_pairs_per_chain:
            keep = rng.choice(len(i), max_pairs_per_chain, replace=False)
            i, j = i[keep], j[keep]
        xs.append(feats[i, j])
        ys.append(contact_map(ch["coords"], ch["sequence"])[i, j])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.all() or not y.any():
        raise ValueError(f"contact regression: the {len(chains)} training chains have "
                         f"{'only' if y.all() else 'no'} contacts at |i-j| >= {MIN_SEPARATION}")
    clf = LogisticRegression(l1_ratio=1.0, C=0.15, solver="liblinear", max_iter=1000)
    clf.fit(x, y)
    head = model.esm.contact_head.regression
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)).reshape(head.weight.shape))
        head.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    return {"chains": len(chains), "pairs": int(len(y)), "positives": int(y.sum()),
            "nonzero_weights": int((clf.coef_ != 0).sum()), "intercept": float(clf.intercept_[0])}


def top_l_precision(probs: np.ndarray, contacts: np.ndarray, min_sep: int = LONG_RANGE) -> tuple[float, float]:
    """Precision of the top-L pairs with ``|i-j| >= min_sep``, and the random-guess expectation."""
    n = len(contacts)
    i, j = _pairs(n, min_sep)
    if len(i) == 0:
        return float("nan"), float("nan")
    order = np.argsort(-probs[i, j], kind="stable")[:n]
    return float(contacts[i[order], j[order]].mean()), float(contacts[i, j].mean())


def _predict_contacts(model, sequence: str) -> np.ndarray:
    import torch

    from foldatlas.train.lm import tokenize

    ids, att = tokenize([sequence])
    with torch.no_grad():
        return model.predict_contacts(torch.from_numpy(ids), torch.from_numpy(att))[0].numpy()


def evaluate_lm(name: str, data_dir: str | Path, fit_contacts: bool = False, train_chains: int = 20,
                test_chains: int | None = None, max_length: int = 512, threads: int | None = None,
                log=print) -> dict:
    """Perplexity on held-out sequences and contact precision on test chains.

    Parameters
    ----------
    name : str
        Language model (name, hub id or folder).
    data_dir : path
        Folder written by ``foldatlas train data``.
    fit_contacts : bool
        Fit the contact regression on ``train_chains`` training chains and save
        it into the model folder (else the model's stored head is used).
    train_chains, test_chains : int
        Chains used (test: all by default); chains longer than ``max_length``
        are skipped.
    threads : int, optional
    log : callable

    Returns
    -------
    dict
    """
    import torch

    from foldatlas.models.language import load_language_model
    from foldatlas.train.data import load_structures, read_fasta_pairs
    from foldatlas.train.lm import masked_perplexity, unigram_frequencies

    if threads:
        torch.set_num_threads(threads)
    data = Path(data_dir)
    started = time.time()
    model, resolved = load_language_model(name)
    unigram = unigram_frequencies([s for _, s in read_fasta_pairs(data / "lm_train.fasta")])
    valid = [s for _, s in read_fasta_pairs(data / "lm_valid.fasta")]
    test = load_structures(data / "structures_test.npz")
    test_list = [test.chain(k) for k in range(len(test)) if len(test.chain(k)["sequence"]) <= max_length]
    if test_chains:
        test_list = test_list[:test_chains]
    metrics: dict = {"model": resolved.name, "source": resolved.source,
                     "parameters": sum(p.numel() for p in model.parameters())}
    log("perplexity on held-out UniProt sequences")
    metrics["valid_uniprot"] = masked_perplexity(model, valid, crop=1022, unigram=unigram)
    log("perplexity on test structure chains")
    metrics["test_structures"] = masked_perplexity(model, [c["sequence"] for c in test_list], crop=1022,
                                                   unigram=unigram)
    if fit_contacts:
        train = load_structures(data / "structures_train.npz")
        rng = np.random.default_rng(0)
        picks = [train.chain(int(k)) for k in rng.permutation(len(train))]
        picks = [c for c in picks if 50 <= len(c["sequence"]) <= max_length][:train_chains]
        log(f"fitting the contact regression on {len(picks)} training chains")
        metrics["contact_fit"] = fit_contact_regression(model, picks)
        if resolved.source in ("folder", "package"):
            _save_in_stored_dtype(model, resolved.path)
    log(f"contact precision on {len(test_list)} test chains")
    precisions, randoms = [], []
    for ch in test_list:
        p, r = top_l_precision(_predict_contacts(model, ch["sequence"]), contact_map(ch["coords"], ch["sequence"]))
        if not np.isnan(p):
            precisions.append(p)
            randoms.append(r)
    metrics["contacts"] = {"test_chains": len(precisions), "top_l_long_range_precision": float(np.mean(precisions)),
                           "random_baseline": float(np.mean(randoms)), "min_separation": LONG_RANGE,
                           "cutoff_angstrom": CONTACT_CUTOFF}
    metrics["seconds"] = round(time.time() - started, 1)
    return metrics
