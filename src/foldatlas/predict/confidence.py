"""Confidence metrics from the model's heads: pLDDT, PAE, pTM and ipTM.

Computed in numpy over the real residues only (linkers and padding excluded),
so that a record scores the same whether folded alone or in a padded batch.
transformers' ``compute_tm`` uses the padded length for d0 and averages over
padding; fair-esm's pTM includes the linker of a complex. AlphaFold's formulas
(Jumper et al. 2021, suppl. 1.9.7; Evans et al. 2021 for ipTM) are used as is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_centers", "expected_aligned_error", "predicted_tm", "confidence"]


def bin_centers(num_bins: int = 64, max_bin: float = 31.0) -> np.ndarray:
    """Centres of the PAE head's distance bins (AlphaFold's ``_calculate_bin_centers``).

    The 63 breaks split [0, 31] Å evenly; the last bin's centre is 31.75 Å, which
    is AlphaFold DB's ``max_predicted_aligned_error``.
    """
    breaks = np.linspace(0.0, max_bin, num_bins - 1)
    step = breaks[1] - breaks[0]
    centers = breaks + step / 2
    return np.concatenate([centers, [centers[-1] + step]])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def expected_aligned_error(logits: np.ndarray) -> tuple[np.ndarray, float]:
    """Predicted aligned error from PAE logits.

    Parameters
    ----------
    logits : ndarray of float, shape (N, N, bins)

    Returns
    -------
    pae : ndarray of float32, shape (N, N)
        Expected error (Å) of residue j when aligned on residue i.
    max_pae : float
        The largest value the head can predict (31.75 Å for 64 bins).
    """
    centers = bin_centers(logits.shape[-1])
    pae = _softmax(logits.astype(np.float64)) @ centers
    return pae.astype(np.float32), float(centers[-1])


def predicted_tm(logits: np.ndarray, chain_index: np.ndarray | None = None, interface: bool = False) -> float:
    """pTM (or ipTM) from PAE logits over real residues.

    Parameters
    ----------
    logits : ndarray of float, shape (N, N, bins)
        Logits of the real residues only.
    chain_index : ndarray of int, shape (N,), optional
        Chain of each residue; needed for ``interface``.
    interface : bool
        ipTM: score only pairs of residues on different chains.

    Returns
    -------
    float
        In [0, 1]. NaN for ipTM of a single chain.
    """
    return _tm_from_probs(_softmax(logits.astype(np.float64)), chain_index, interface)


def _tm_from_probs(probs: np.ndarray, chain_index: np.ndarray | None, interface: bool) -> float:
    n = probs.shape[0]
    centers = bin_centers(probs.shape[-1])
    d0 = 1.24 * (max(n, 19) - 15) ** (1.0 / 3.0) - 1.8
    tm_per_bin = 1.0 / (1.0 + (centers / d0) ** 2)
    term = probs @ tm_per_bin  # [N, N]
    if interface:
        if chain_index is None or len(np.unique(chain_index)) < 2:
            return float("nan")
        pair = (chain_index[:, None] != chain_index[None, :]).astype(np.float64)
    else:
        pair = np.ones((n, n))
    per_alignment = (term * pair).sum(-1) / (1e-8 + pair.sum(-1))
    return float(per_alignment.max())


def confidence(logits, chain_index: np.ndarray | None = None) -> tuple[np.ndarray, float, float, float | None]:
    """PAE, its maximum, pTM and (for complexes) ipTM from one softmax of the PAE logits.

    The same values as :func:`expected_aligned_error` and :func:`predicted_tm` (to float64 rounding), at a third
    of their cost together (the softmax over N x N x bins dominates). Computed by torch in float64 where the
    logits are (on a GPU for a GPU's output): only the N x N PAE comes back.

    Parameters
    ----------
    logits : torch.Tensor or ndarray, shape (N, N, bins)
        Logits of the real residues only.
    chain_index : ndarray of int, shape (N,), optional

    Returns
    -------
    pae : ndarray of float32, shape (N, N)
    max_pae : float
    ptm : float
    iptm : float or None
        None unless ``chain_index`` holds more than one chain.
    """
    import torch

    logits = torch.as_tensor(logits)
    n, bins = logits.shape[0], logits.shape[-1]
    probs = torch.softmax(logits.to(torch.float64), dim=-1)
    centers_np = bin_centers(bins)
    centers = torch.from_numpy(centers_np).to(probs.device)
    d0 = 1.24 * (max(n, 19) - 15) ** (1.0 / 3.0) - 1.8
    term = probs @ (1.0 / (1.0 + (centers / d0) ** 2))  # [N, N] expected TM term per alignment
    pae = (probs @ centers).to(torch.float32)
    del probs
    iptm = None
    if chain_index is not None and len(np.unique(chain_index)) > 1:
        chains = torch.from_numpy(np.asarray(chain_index)).to(term.device)
        pair = (chains[:, None] != chains[None, :]).to(torch.float64)
        iptm = float(((term * pair).sum(-1) / (1e-8 + pair.sum(-1))).max())
    ptm = float((term.sum(-1) / (1e-8 + n)).max())
    return pae.cpu().numpy(), float(centers_np[-1]), ptm, iptm
