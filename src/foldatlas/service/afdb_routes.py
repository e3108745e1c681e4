"""Endpoints shaped as AlphaFold DB's API: ``GET /api/prediction/{id}`` and the files it links.

The answer is a JSON list with one object per model, as AlphaFold DB's is, with its field names: ``entryId``,
``uniprotAccession`` (the entry ID here), ``uniprotSequence``, ``uniprotStart``/``uniprotEnd``, ``sequenceChecksum``
(the sequence's MD5 here; AlphaFold DB's is a CRC64), ``modelCreatedDate``, ``latestVersion``, ``allVersions``,
``cifUrl``, ``bcifUrl``, ``pdbUrl``, ``paeDocUrl`` and ``paeImageUrl`` (null without PAE), ``globalMetricValue``
(mean pLDDT, 0-100) and ``fractionPlddtVeryLow`` / ``Low`` / ``Confident`` / ``VeryHigh`` (residues below 50, 50-70,
70-90, above 90). Fields AlphaFold DB takes from UniProt (gene, organism, taxId, description, reviewed) are null.
URLs are absolute, on this server; the files are the JSON API's (``/api/v1/entries/{id}/...``).
"""

from __future__ import annotations

from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from foldatlas.service.common import context

router = APIRouter(tags=["AlphaFold DB compatible"])

_UNIPROT_FIELDS = ("gene", "uniprotId", "uniprotDescription", "taxId", "organismScientificName", "isReviewed",
                   "isReferenceProteome")


def prediction(entry, base_url: str) -> dict:
    """AlphaFold DB's prediction record of an atlas entry (its files under ``base_url``)."""
    files = f"{base_url.rstrip('/')}/api/v1/entries/{quote(entry.id, safe='')}"
    plddt = None if entry.plddt is None else np.asarray(entry.plddt, np.float64)
    fractions = {}
    if plddt is not None and len(plddt):
        bands = np.digitize(plddt, [50.0, 70.0, 90.0])
        for k, name in enumerate(("VeryLow", "Low", "Confident", "VeryHigh")):
            fractions[f"fractionPlddt{name}"] = round(float((bands == k).mean()), 3)
    else:
        fractions = {f"fractionPlddt{n}": None for n in ("VeryLow", "Low", "Confident", "VeryHigh")}
    residues = entry.sequence.replace(":", "")
    return {
        "entryId": entry.id,
        "uniprotAccession": entry.id,
        **{k: None for k in _UNIPROT_FIELDS},
        "uniprotStart": 1,
        "uniprotEnd": len(residues),
        "uniprotSequence": entry.sequence,
        "sequenceChecksum": entry.checksum,
        "modelCreatedDate": (entry.created or "")[:10] or None,
        "latestVersion": 1,
        "allVersions": [1],
        "cifUrl": f"{files}/structure.cif",
        "bcifUrl": f"{files}/structure.bcif",
        "pdbUrl": f"{files}/structure.pdb",
        "paeDocUrl": f"{files}/pae.json" if entry.has_pae else None,
        "paeImageUrl": f"{files}/pae.png" if entry.has_pae else None,
        "globalMetricValue": None if entry.mean_plddt is None else round(float(entry.mean_plddt), 2),
        **fractions,
        "model": entry.model,
        "kind": entry.kind,
    }


@router.get("/api/prediction/{qualifier}")
async def api_prediction(qualifier: str, request: Request) -> list[dict]:
    """AlphaFold DB's prediction record(s) of an entry ID, alias or sequence MD5 (404 JSON when unknown)."""
    atlas = context(request).atlas
    entry = await run_in_threadpool(lambda: atlas.get(qualifier, pae=False, embedding=False))
    return [prediction(entry, str(request.base_url))]
