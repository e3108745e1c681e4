"""The language-model tools over HTTP (``/api/v1/lm/...``): embeddings, contacts, variant scores, unmasking.

The language model (``FOLDATLAS_LM_MODEL``, default the embedded one; ESM-2 or ESM C) loads on the first request;
requests run one at a time in a worker thread, and their size is bounded (sequences per request, forward passes per
request).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from foldatlas.errors import InvalidOptionError, SequenceTooLongError
from foldatlas.lm.model import MAX_RESIDUES, single_chain
from foldatlas.service.common import context, field_error, parse_sequence, request_field

router = APIRouter(prefix="/api/v1/lm", tags=["Language model"])

MAX_SEQUENCES = 64  # sequences per embedding request
MAX_LM_RESIDUES = 4096  # residues per sequence for embeddings and variant scores (windows of the model's context)
MAX_PASSES = 20000  # forward passes one variants request may cost (pseudo-log-likelihood costs L per variant)
MAX_OFFSET = 1_000_000

_Layer = Annotated[int, Field(ge=-64, le=64)]
_Mutation = Annotated[str, Field(min_length=1, max_length=200)]


def limits() -> dict:
    """The language-model endpoints' limits (listed by ``GET /api/v1/info``)."""
    return {"max_sequences": MAX_SEQUENCES, "max_residues": MAX_LM_RESIDUES, "context_residues": MAX_RESIDUES,
            "contacts_and_unmask_max_residues": MAX_RESIDUES, "max_forward_passes": MAX_PASSES, "top_k": [1, 20],
            "offset": [-MAX_OFFSET, MAX_OFFSET], "layers": [-64, 64]}


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequences: list[str] = Field(..., min_length=1, max_length=MAX_SEQUENCES)
    layers: list[_Layer] = Field([-1], min_length=1, max_length=64)
    per_residue: bool = False


class SequenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequence: str = Field(..., max_length=20000)


class VariantsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequence: str = Field(..., max_length=20000)
    mutations: list[_Mutation] = Field([], max_length=100000)
    scan: bool = False
    offset: int = Field(1, ge=-MAX_OFFSET, le=MAX_OFFSET)
    methods: list[Literal["masked_marginal", "wt_marginal", "pll"]] = Field(["masked_marginal", "wt_marginal"],
                                                                            min_length=1, max_length=3)


class UnmaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequence: str = Field(..., max_length=20000)
    top_k: int = Field(5, ge=1, le=20)


def _record(text: str, field: str, name: str = "query", max_residues: int = MAX_LM_RESIDUES,
            single: str | None = None):
    """One record from a request field, within this server's length limit (422 naming the field); ``single``: the
    tool that takes one chain only, refusing complexes."""
    with request_field(field):
        record = parse_sequence(text, name=name)
        if record.length > max_residues:
            raise SequenceTooLongError(f"record '{record.name}': {record.length} residues; this server takes at "
                                       f"most {max_residues} here (GET /api/v1/info: limits.lm)")
        if single is not None:
            single_chain(record, single, max_residues=None)
    return record


async def _run(request: Request, fn):
    ctx = context(request)

    def call():
        lm = ctx.language_model()
        with ctx.lm_lock:
            return fn(lm)

    return await run_in_threadpool(call)


@router.post("/embed")
async def embed(req: EmbedRequest, request: Request) -> dict:
    """Mean (and per-residue) representations of up to 64 sequences, from chosen layers."""
    from foldatlas.lm import embed as compute

    records = [_record(s, f"sequences[{i}]", name=f"seq_{i + 1}") for i, s in enumerate(req.sequences)]

    def run(lm):
        with request_field("layers"):
            for layer in req.layers:
                lm.layer_index(layer)
        results = compute(lm, records, tuple(req.layers), req.per_residue)
        return {"model": lm.name, "dim": lm.dim, "results": [
            {"name": r.name, "length": r.length, "mean": {str(k): v.round(5).tolist() for k, v in r.mean.items()},
             **({"per_residue": {str(k): v.round(5).tolist() for k, v in r.per_residue.items()}}
                if req.per_residue else {})} for r in results]}

    return await _run(request, run)


@router.post("/contacts")
async def contacts(req: SequenceRequest, request: Request) -> dict:
    """The contact probability map (L x L) and the top-L pairs (|i - j| >= 6).

    Needs a language model with a contact head (ESM-2): with an ESM C model the answer is 422, field ``model``."""
    from foldatlas.lm import predict_contacts, top_contacts

    record = _record(req.sequence, "sequence", max_residues=MAX_RESIDUES, single="contact prediction")

    def run(lm):
        with request_field("model"):  # the server's language model (FOLDATLAS_LM_MODEL): ESM C has no contact head
            lm.check_contact_head()
        probs = predict_contacts(lm, [record])[0]
        return {"model": lm.name, "length": record.length, "contacts": probs.round(4).tolist(),
                "top": [list(t) for t in top_contacts(probs)]}

    return await _run(request, run)


@router.post("/variants")
async def variants(req: VariantsRequest, request: Request) -> dict:
    """Zero-shot scores of listed variants (``A42G``, ``A42G:B43C``) or of every single substitution."""
    from foldatlas.lm import parse_variants, score_variants, single_scan

    wt = _record(req.sequence, "sequence", name="wild_type", single="variant scoring").chains[0]  # long: windows
    methods = tuple(dict.fromkeys(req.methods))  # pydantic checked each against METHODS
    if not req.mutations and not req.scan:
        raise field_error("mutations", InvalidOptionError("give mutations or scan=true"))
    with request_field("mutations"):
        chosen = parse_variants(req.mutations, wt, req.offset) if req.mutations else []
    if req.scan:
        chosen += single_scan(wt, req.offset)
    passes = len({m.index for v in chosen for m in v}) + ((len(chosen) + 1) * len(wt) if "pll" in methods else 0)
    if passes > MAX_PASSES:
        raise field_error("mutations", InvalidOptionError(
            f"{passes} forward passes exceed this server's limit of {MAX_PASSES} per request (pll costs {len(wt)} "
            f"per variant); send fewer variants or use the CLI"))

    def run(lm):
        return {"model": lm.name, "rows": score_variants(lm, wt, chosen, methods)}

    return await _run(request, run)


@router.post("/unmask")
async def unmask(req: UnmaskRequest, request: Request) -> dict:
    """Fill ``<mask>`` or ``_`` positions with the top-k amino acids and their probabilities."""
    from foldatlas.lm import unmask as compute

    if len(req.sequence) > 8 * MAX_RESIDUES:  # before the model: <mask> tokens are 6 characters each
        raise field_error("sequence", SequenceTooLongError(f"{len(req.sequence)} characters; at most {MAX_RESIDUES} "
                                                           f"residues"))

    def run(lm):
        with request_field("sequence"):
            return {"model": lm.name, **compute(lm, req.sequence, req.top_k)}

    return await _run(request, run)
