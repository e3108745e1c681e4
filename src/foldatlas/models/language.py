"""Loading masked protein language models: ESM-2 (``EsmForMaskedLM``) and ESM C (``EsmcForMaskedLM``).

The embedded model (``foldatlas-lm-small``), any ``facebook/esm2_t*`` or ``biohub/ESMC-*`` checkpoint in the local
hub cache (or its registered name, ``esm2_t33_650M_UR50D``, ``esmc_300m``, ...), a folder, and the tests' random
fixtures all load through :func:`load_language_model`. The architecture is decided here, once, from the folder's
``config.json`` (``model_type``, else ``architectures``); :class:`LanguageModel` then gives the tools what they need
(the encoder, its layers, the vocabulary, whether there is a contact head) so that they never ask which family a
model belongs to.

Both families read the same tokens: ESM C's vocabulary has 64 slots whose first 33 are ESM-2's, with the same ids
(``<cls>`` = 0, ``<pad>`` = 1, ``<eos>`` = 2, ``<mask>`` = 32); the other 31 are never produced by
:func:`tokenize`, and the tools read log-probabilities of the first 33 ids only.

Representation layers are numbered alike: 0 the token embeddings, ``k`` the output of block ``k``, and
``num_layers`` the final layer *after* the family's final norm (ESM-2's ``emb_layer_norm_after``, ESM C's
``EsmcModel.norm``): that is the encoder's ``last_hidden_state``, which mean embeddings average.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from foldatlas.errors import InvalidOptionError
from foldatlas.models.random_checkpoint import ESM2_VOCAB

__all__ = ["LanguageModel", "LanguageFamily", "FAMILIES", "family_of", "language_family", "load_language_model",
           "encoder_of", "tokenize", "TOKEN_OF", "PAD", "CLS", "EOS", "MASK", "VOCAB_SIZE"]

PAD, CLS, EOS, MASK = 1, 0, 2, 32  # ESM-2 vocabulary ids of the special tokens (the same in ESM C's)
TOKEN_OF: dict[str, int] = {tok: i for i, tok in enumerate(ESM2_VOCAB)}
VOCAB_SIZE = len(ESM2_VOCAB)  # 33: the token ids foldatlas writes and reads, in both families


@dataclass(frozen=True)
class LanguageFamily:
    """What differs between the masked-LM architectures foldatlas runs; nothing outside this module branches on it.

    Attributes
    ----------
    model_type : str
        ``config.json``'s ``model_type``.
    architecture : str
        The transformers class that loads it.
    label : str
        The family's name in messages.
    encoder_attribute : str
        The masked-LM model's attribute holding the encoder (``EsmModel`` / ``EsmcModel``).
    layers_attribute : str
        Dotted path, inside the encoder, of its list of transformer blocks.
    contact_head : bool
        Whether the model has a contact-prediction head (ESM-2's logistic regression over attention maps).
    """

    model_type: str
    architecture: str
    label: str
    encoder_attribute: str
    layers_attribute: str
    contact_head: bool

    def blocks(self, masked_lm) -> list:
        """The transformer blocks of a masked LM of this family, in order."""
        module = getattr(masked_lm, self.encoder_attribute)
        for part in self.layers_attribute.split("."):
            module = getattr(module, part)
        return list(module)

    def check_contact_head(self, name: str) -> None:
        """Refuse contact prediction for a model without a contact head.

        Raises
        ------
        InvalidOptionError
            Naming the model, when the family has no contact head.
        """
        if not self.contact_head:
            raise InvalidOptionError(f"model '{name}' is an {self.label} language model, which has no contact head; "
                                     f"contact maps need an ESM-2 model (foldatlas-lm-small or esm2_t*)")


FAMILIES: dict[str, LanguageFamily] = {
    "esm": LanguageFamily("esm", "EsmForMaskedLM", "ESM-2", "esm", "encoder.layer", contact_head=True),
    "esmc": LanguageFamily("esmc", "EsmcForMaskedLM", "ESM C", "esmc", "layers", contact_head=False),
}
_BY_ARCHITECTURE = {f.architecture: f for f in FAMILIES.values()}
_FOLDING_TYPES = ("esmfold2",)
_FOLDING_ARCHITECTURES = ("EsmForProteinFolding", "EsmFold2Model")


def family_of(config: dict, name: str = "model") -> LanguageFamily:
    """The language-model family a checkpoint's ``config.json`` describes.

    Parameters
    ----------
    config : dict
        ``config.json``'s content.
    name : str
        The model, for messages.

    Raises
    ------
    WeightsIntegrityError
        If it is a folding model (ESMFold v1 or ESMFold2) or no language model foldatlas runs.
    """
    from foldatlas.errors import WeightsIntegrityError

    model_type = str(config.get("model_type") or "")
    architectures = [str(a) for a in config.get("architectures") or []]
    if (config.get("is_folding_model") or model_type in _FOLDING_TYPES
            or any(a in _FOLDING_ARCHITECTURES for a in architectures)):
        raise WeightsIntegrityError(f"model '{name}' is a folding model, not a language model")
    family = FAMILIES.get(model_type) or next((_BY_ARCHITECTURE[a] for a in architectures if a in _BY_ARCHITECTURE),
                                              None)
    if family is None:
        kinds = ", ".join(f"'{f.model_type}' ({f.label})" for f in FAMILIES.values())
        raise WeightsIntegrityError(f"model '{name}': config.json's model_type '{model_type or '?'}' is not a "
                                    f"language model foldatlas runs (model_type {kinds})")
    return family


def language_family(name: str):
    """Locate a language model and read its family from ``config.json``, without loading any weights.

    Returns
    -------
    (LanguageFamily, ResolvedModel)

    Raises
    ------
    UnknownModelError, WeightsNotFoundError, WeightsIntegrityError
    """
    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.models.registry import resolve_model

    resolved = resolve_model(name)
    try:
        config = json.loads((resolved.path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise WeightsIntegrityError(f"model '{name}': cannot read {resolved.path / 'config.json'}: {e}") from e
    if not isinstance(config, dict):
        raise WeightsIntegrityError(f"model '{name}': {resolved.path / 'config.json'} is not a JSON object")
    return family_of(config, name), resolved


def _family_of_config(config, name: str) -> LanguageFamily:
    """:func:`family_of` for a loaded model's ``PretrainedConfig``."""
    return family_of({"model_type": getattr(config, "model_type", None),
                      "architectures": getattr(config, "architectures", None),
                      "is_folding_model": getattr(config, "is_folding_model", False)}, name)


def encoder_of(model):
    """The encoder of a transformers masked LM (``model.esm`` / ``model.esmc``); an encoder is returned as is."""
    family = _family_of_config(model.config, getattr(model.config, "name_or_path", "") or "model")
    return getattr(model, family.encoder_attribute, model)


@dataclass
class LanguageModel:
    """A loaded masked language model (the language-model tools and the atlas embedder use it).

    Attributes
    ----------
    model : transformers.EsmForMaskedLM or transformers.EsmcForMaskedLM
    name : str
        Registered name, hub id or folder name.
    weights_sha256 : str
    spec : str
        What it was loaded by (a name, hub id or folder path), to load it again.
    """

    model: object
    name: str
    weights_sha256: str
    spec: str = ""

    @property
    def family(self) -> LanguageFamily:
        """The architecture family (read from the model's config)."""
        return _family_of_config(self.model.config, self.name)

    @property
    def encoder(self):
        """The encoder without the LM head (``EsmModel`` / ``EsmcModel``); its ``last_hidden_state`` is the final
        representation layer, after the final norm."""
        return getattr(self.model, self.family.encoder_attribute)

    @property
    def layers(self) -> list:
        """The transformer blocks, in order."""
        return self.family.blocks(self.model)

    @property
    def num_layers(self) -> int:
        """Transformer layers (representation layers run 0 = embeddings ... num_layers = final)."""
        return int(self.model.config.num_hidden_layers)

    @property
    def dim(self) -> int:
        """Hidden size."""
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Token ids the tools read (33, ESM-2's vocabulary); ESM C's logits have 64 columns, the rest unused."""
        return VOCAB_SIZE

    @property
    def has_contact_head(self) -> bool:
        """Whether :meth:`contacts` can work (ESM-2: yes; ESM C: no)."""
        return self.family.contact_head

    def check_contact_head(self) -> None:
        """Refuse contact prediction when the model has no contact head (InvalidOptionError naming the model)."""
        self.family.check_contact_head(self.name)

    def contacts(self, input_ids, attention_mask):
        """Contact probabilities from the attention maps (transformers' ``predict_contacts``).

        Parameters
        ----------
        input_ids : torch.Tensor of int64, shape (B, T)
        attention_mask : torch.Tensor of int64, shape (B, T)

        Returns
        -------
        torch.Tensor of float, shape (B, T - 2, T - 2)

        Raises
        ------
        InvalidOptionError
            If the model has no contact head.
        """
        self.check_contact_head()
        model = self.model
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")  # attention weights come from the eager path only
        try:
            return model.predict_contacts(input_ids, attention_mask)
        finally:
            model.set_attn_implementation(previous)

    def layer_index(self, layer: int) -> int:
        """A representation layer as 0..num_layers (negative counts from the end: -1 is the final layer).

        Raises
        ------
        InvalidOptionError
            If the layer does not exist.
        """
        n = self.num_layers
        if not -(n + 1) <= layer <= n:
            raise InvalidOptionError(f"layer {layer} does not exist: {self.name} has layers 0..{n} (or -1..-{n + 1})")
        return layer % (n + 1)


def tokenize(seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (``<cls> seq <eos>``, padded; the same in ESM-2 and ESM C) and the attention mask.

    Returns
    -------
    ids : ndarray of int64, shape (B, max_len + 2)
    attention_mask : ndarray of int64, shape (B, max_len + 2)
    """
    width = max(len(s) for s in seqs) + 2
    ids = np.full((len(seqs), width), PAD, dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, 0] = CLS
        ids[b, 1:len(s) + 1] = [TOKEN_OF.get(c, TOKEN_OF["X"]) for c in s]
        ids[b, len(s) + 1] = EOS
    return ids, (ids != PAD).astype(np.int64)


def _stream_16bit(model, family: LanguageFamily) -> None:
    """Keep 16-bit stored weights 16-bit at rest and compute in float32 (layer by layer); other dtypes: float32."""
    import torch

    from foldatlas.models.loading import stream_lm_layers

    dtype = next(model.parameters()).dtype
    if dtype in (torch.float16, torch.bfloat16):
        stream_lm_layers(model, torch.float32, layers=family.blocks(model))
    elif dtype != torch.float32:
        model.float()


def load_language_model(name: str, attn_implementation: str = "eager", stream: bool = False):
    """Load a masked protein LM (ESM-2 or ESM C) by name, hub id (local cache) or folder.

    The embedded model, ``facebook/esm2_t*`` and ``biohub/ESMC-*`` checkpoints and the test fixtures go through
    this one function; the transformers class comes from ``config.json`` (see :func:`family_of`).

    Parameters
    ----------
    name : str
        Registered name, hub id or folder.
    attn_implementation : str
        ``"eager"`` or ``"sdpa"`` (the same values; sdpa is faster on a CPU).
    stream : bool
        Keep 16-bit stored transformer blocks 16-bit in memory and convert each to float32 just before it runs
        (:func:`foldatlas.models.loading.stream_lm_layers`); False: the whole model in float32. Either way every
        computation is in float32 (16-bit matmuls crawl on CPUs) and the numbers are the same.

    Returns
    -------
    (transformers.EsmForMaskedLM or transformers.EsmcForMaskedLM, ResolvedModel)

    Raises
    ------
    UnknownModelError, WeightsNotFoundError
    WeightsIntegrityError
        If the checkpoint is a folding model, of an architecture foldatlas does not run, or does not load.
    """
    import torch
    import transformers

    from foldatlas.models.loading import from_pretrained_quietly

    family, resolved = language_family(name)
    model_class = getattr(transformers, family.architecture)
    model = from_pretrained_quietly(model_class, resolved.path, name, attn_implementation=attn_implementation,
                                    dtype="auto" if stream else torch.float32)
    if stream:
        _stream_16bit(model, family)
    model.eval()
    return model, resolved
