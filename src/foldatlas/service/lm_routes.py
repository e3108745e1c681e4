"""The language-model tools over HTTP (``/api/v1/lm/...``): embeddings, contacts, variant scores, unmasking.

The language model (``FOLDATLAS_LM_MODEL``, default the embedded one) loads on the first request; requests run
one at a time in a worker thread, and their size is bounded (sequences per request, forward passes per request).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from foldatlas.errors import InvalidOptionError
from foldatlas.service.common import context, parse_sequence

router = APIRouter(prefix="/api/v1/lm", tags=["Language model"])

MAX_SEQUENCES = 64
MAX_PASSES = 20000  # forward passes one variants request may cost (pseudo-log-likelihood costs L per variant)


class EmbedRequest(BaseModel):
    sequences: list[str] = Field(..., min_length=1, max_length=MAX_SEQUENCES)
    layers: list[int] = Field([-1], min_length=1, max_length=64)
    per_residue: bool = False


class SequenceRequest(BaseModel):
    sequence: str = Field(..., max_length=20000)


class VariantsRequest(BaseModel):
    sequence: str = Field(..., max_length=20000)
    mutations: list[str] = Field([], max_length=100000)
    scan: bool = False
    offset: int = 1
    methods: list[str] = Field(["masked_marginal", "wt_marginal"], min_length=1)


class UnmaskRequest(BaseModel):
    sequence: str = Field(..., max_length=20000)
    top_k: int = Field(5, ge=1, le=20)


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

    records = [parse_sequence(s, name=f"seq_{i + 1}") for i, s in enumerate(req.sequences)]

    def run(lm):
        results = compute(lm, records, tuple(req.layers), req.per_residue)
        return {"model": lm.name, "dim": lm.dim, "results": [
            {"name": r.name, "length": r.length, "mean": {str(k): v.round(5).tolist() for k, v in r.mean.items()},
             **({"per_residue": {str(k): v.round(5).tolist() for k, v in r.per_residue.items()}}
                if req.per_residue else {})} for r in results]}

    return await _run(request, run)


@router.post("/contacts")
async def contacts(req: SequenceRequest, request: Request) -> dict:
    """The contact probability map (L x L) and the top-L pairs (|i - j| >= 6)."""
    from foldatlas.lm import predict_contacts, top_contacts

    record = parse_sequence(req.sequence)

    def run(lm):
        probs = predict_contacts(lm, [record])[0]
        return {"model": lm.name, "length": record.length, "contacts": probs.round(4).tolist(),
                "top": [list(t) for t in top_contacts(probs)]}

    return await _run(request, run)


@router.post("/variants")
async def variants(req: VariantsRequest, request: Request) -> dict:
    """Zero-shot scores of listed variants (``A42G``, ``A42G:B43C``) or of every single substitution."""
    from foldatlas.lm import parse_variants, score_variants, single_scan
    from foldatlas.lm.model import single_chain
    from foldatlas.lm.variants import check_methods

    wt = single_chain(parse_sequence(req.sequence, name="wild_type"), "variant scoring")
    methods = tuple(req.methods)
    check_methods(methods)
    if not req.mutations and not req.scan:
        raise InvalidOptionError("give mutations or scan=true")
    chosen = parse_variants(req.mutations, wt, req.offset) if req.mutations else []
    if req.scan:
        chosen += single_scan(wt, req.offset)
    passes = len({m.index for v in chosen for m in v}) + ((len(chosen) + 1) * len(wt) if "pll" in methods else 0)
    if passes > MAX_PASSES:
        raise InvalidOptionError(f"{passes} forward passes exceed this server's limit of {MAX_PASSES} per request "
                                 f"(pll costs {len(wt)} per variant); send fewer variants or use the CLI")

    def run(lm):
        return {"model": lm.name, "rows": score_variants(lm, wt, chosen, methods)}

    return await _run(request, run)


@router.post("/unmask")
async def unmask(req: UnmaskRequest, request: Request) -> dict:
    """Fill ``<mask>`` or ``_`` positions with the top-k amino acids and their probabilities."""
    from foldatlas.lm import unmask as compute

    return await _run(request, lambda lm: {"model": lm.name, **compute(lm, req.sequence, req.top_k)})
