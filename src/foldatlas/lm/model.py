"""A loaded ESM-2-architecture language model and its batched forward pass.

Every tool of :mod:`foldatlas.lm` runs sequences through :func:`forward`: length-sorted batches under a token
budget, the attention mask keeping padding out, outputs cut back to each sequence's own tokens. A sequence gives
the same numbers alone or in a padded batch (to float32 rounding; ESM's own masking of padding is exact) — the
padding artefact of esm#273 does not arise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from foldatlas.errors import InvalidOptionError, InvalidSequenceError, SequenceTooLongError
from foldatlas.models.language import CLS, EOS, TOKEN_OF, LanguageModel, load_language_model
from foldatlas.seq.batching import token_batches

__all__ = ["LanguageModel", "load_lm", "forward", "encode", "AMINO_ACIDS", "MAX_RESIDUES", "single_chain"]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MAX_RESIDUES = 1022  # ESM-2's training crop: longer inputs are refused by the tools that need whole-sequence context


def load_lm(name: str, threads: int | None = None) -> LanguageModel:
    """Load a language model (the embedded one, any ``facebook/esm2_t*`` in the local hub cache, or a folder).

    Raises
    ------
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError
    """
    import torch

    from foldatlas.models.loading import weights_sha256

    if threads:
        torch.set_num_threads(int(threads))
    model, resolved = load_language_model(name, attn_implementation="sdpa")
    return LanguageModel(model=model, name=resolved.name, weights_sha256=weights_sha256(resolved.path), spec=name)


def single_chain(record, what: str, max_residues: int | None = MAX_RESIDUES) -> str:
    """The record's sequence, refused when it is a complex or longer than ``max_residues`` (None: any length).

    Raises
    ------
    InvalidSequenceError, SequenceTooLongError
    """
    if len(record.chains) > 1:
        raise InvalidSequenceError(f"record '{record.name}': a complex ({len(record.chains)} chains); {what} takes "
                                   f"one chain")
    if max_residues is not None and record.length > max_residues:
        raise SequenceTooLongError(f"record '{record.name}': {record.length} residues; {what} takes at most "
                                   f"{max_residues} (the language model's context)")
    return record.chains[0]


def encode(sequence: str) -> np.ndarray:
    """Token ids ``<cls> sequence <eos>`` (int64)."""
    return np.array([CLS, *(TOKEN_OF.get(c, TOKEN_OF["X"]) for c in sequence), EOS], dtype=np.int64)


def forward(lm: LanguageModel, tokens: list[np.ndarray], max_tokens: int = 4096, logits: bool = True,
            layers: tuple[int, ...] = (), attentions: bool = False, progress=None) -> Iterator[tuple[int, dict]]:
    """Run token sequences through the model in padded, length-sorted batches.

    Parameters
    ----------
    lm : LanguageModel
    tokens : list of ndarray
        Token ids, each with its ``<cls>`` and ``<eos>`` (see :func:`encode`); may hold ``<mask>`` tokens.
    max_tokens : int
        Padded tokens per batch.
    logits : bool
        Return log-probabilities over the vocabulary, shape (T, V).
    layers : tuple of int
        Representation layers to return (0..num_layers), each (T, D).
    attentions : bool
        Return the contact map (transformers' ``predict_contacts``: attention maps, symmetrised,
        APC-corrected, through the model's logistic regression), shape (T - 2, T - 2).
    progress : callable, optional
        Called with the number of tokens of each finished batch.

    Yields
    ------
    (index, outputs)
        In batch order; ``outputs`` holds ``log_probs``, ``hidden`` (dict layer -> array) and ``contacts`` as asked.
    """
    import torch

    if max_tokens < 1:
        raise InvalidOptionError("--max-tokens-per-batch must be >= 1")
    model = lm.model
    device = next(model.parameters()).device
    for batch in token_batches([len(t) for t in tokens], max_tokens):
        width = max(len(tokens[i]) for i in batch)
        ids = np.full((len(batch), width), 1, dtype=np.int64)  # <pad>
        for row, i in enumerate(batch):
            ids[row, :len(tokens[i])] = tokens[i]
        mask = (ids != 1).astype(np.int64)
        input_ids, attention = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        with torch.inference_mode():
            out = model(input_ids=input_ids, attention_mask=attention, output_hidden_states=bool(layers),
                        return_dict=True)
            log_probs = torch.log_softmax(out.logits.float(), dim=-1).cpu().numpy() if logits else None
            hidden = {k: out.hidden_states[k].float().cpu().numpy() for k in layers} if layers else {}
            contacts = None
            if attentions:
                model.set_attn_implementation("eager")  # attention weights come from the eager path only
                try:
                    contacts = model.predict_contacts(input_ids, attention).float().cpu().numpy()
                finally:
                    model.set_attn_implementation("sdpa")
        for row, i in enumerate(batch):
            n = len(tokens[i])
            item: dict = {}
            if log_probs is not None:
                item["log_probs"] = log_probs[row, :n]
            if hidden:
                item["hidden"] = {k: v[row, :n] for k, v in hidden.items()}
            if contacts is not None:
                item["contacts"] = contacts[row, :n - 2, :n - 2]
            yield i, item
        if progress is not None:
            progress(sum(len(tokens[i]) for i in batch))
