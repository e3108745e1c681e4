"""A loaded masked protein language model (ESM-2 or ESM C) and its batched forward pass.

The family is decided once, when :func:`load_lm` reads the checkpoint's ``config.json``
(:func:`foldatlas.models.language.load_language_model`); the tools here call the same :func:`forward` for either.
Every tool of :mod:`foldatlas.lm` runs sequences through :func:`forward`: length-sorted batches under a token
budget, the attention mask keeping padding out, outputs cut back to each sequence's own tokens. A sequence gives
the same numbers alone or in a padded batch (to float32 rounding; both families' attention masks keep padding out)
— the padding artefact of esm#273 does not arise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from foldatlas.errors import InvalidOptionError, InvalidSequenceError, SequenceTooLongError
from foldatlas.models.language import CLS, EOS, PAD, TOKEN_OF, LanguageModel, load_language_model
from foldatlas.seq.batching import token_batches

__all__ = ["LanguageModel", "load_lm", "forward", "encode", "AMINO_ACIDS", "MAX_RESIDUES", "single_chain"]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# ESM-2's training crop: longer inputs are refused by the tools that need whole-sequence context. Kept for ESM C
# (trained on longer crops) so that both families see the same windows and the same limits.
MAX_RESIDUES = 1022


def load_lm(name: str, threads: int | None = None) -> LanguageModel:
    """Load a language model: the embedded one, ESM-2 (``facebook/esm2_t*``, ``esm2_*``) or ESM C (``biohub/ESMC-*``,
    ``esmc_300m``, ...) from the local hub cache, or a folder.

    Computation is in float32; 16-bit stored weights stay 16-bit in memory between forward passes (streamed layer
    by layer; threads running one model at once share each layer's float32 weights, see
    :func:`foldatlas.models.loading.install_layer_weights`).

    Raises
    ------
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError
    """
    import torch

    from foldatlas.models.loading import weights_sha256

    if threads:
        torch.set_num_threads(int(threads))
    model, resolved = load_language_model(name, attn_implementation="sdpa", stream=True)
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
        Return log-probabilities, shape (T, ``lm.vocab_size``): the model's log-softmax over all its logits, read
        at token ids 0..32 (ESM C's 31 unused ids are left out; they are never proposed or scored).
    layers : tuple of int
        Representation layers to return (0..num_layers), each (T, D).
    attentions : bool
        Return the contact map (transformers' ``predict_contacts``: attention maps, symmetrised,
        APC-corrected, through the model's logistic regression), shape (T - 2, T - 2). Refused (before any
        forward pass) for a model without a contact head.
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
    if attentions:
        lm.check_contact_head()
    model = lm.model
    device = next(model.parameters()).device
    for batch in token_batches([len(t) for t in tokens], max_tokens):
        width = max(len(tokens[i]) for i in batch)
        ids = np.full((len(batch), width), PAD, dtype=np.int64)  # [B, T]
        for row, i in enumerate(batch):
            ids[row, :len(tokens[i])] = tokens[i]
        mask = (ids != PAD).astype(np.int64)
        input_ids, attention = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        with torch.inference_mode():
            out = model(input_ids=input_ids, attention_mask=attention, output_hidden_states=bool(layers),
                        return_dict=True)
            log_probs = None
            if logits:  # normalised over every logit (ESM C: 64), read at the tokenizer's ids only
                log_probs = torch.log_softmax(out.logits.float(), dim=-1)[..., :lm.vocab_size].cpu().numpy()
            # hidden_states[k]: 0 the embeddings, k block k's output, num_layers after the final norm (both families)
            hidden = {k: out.hidden_states[k].float().cpu().numpy() for k in layers} if layers else {}
            contacts = lm.contacts(input_ids, attention).float().cpu().numpy() if attentions else None
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
