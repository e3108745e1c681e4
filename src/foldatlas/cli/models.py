"""``foldatlas models``: what the registry knows and what is on this machine."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""

    @app.command("models")
    def models() -> None:
        """List registered models and whether their weights are available offline."""
        from foldatlas.errors import FoldatlasError
        from foldatlas.models.registry import DEFAULT_DESIGN_MODEL, DEFAULT_FOLD_MODEL, DEFAULT_LM, REGISTRY
        from foldatlas.models.registry import resolve_model

        for spec in REGISTRY.values():
            try:
                where = str(resolve_model(spec.name).path)
            except FoldatlasError:
                where = f"not here (fetch once: hf download {spec.hub_id})" if spec.hub_id else "not available"
            defaults = (DEFAULT_FOLD_MODEL, DEFAULT_LM, DEFAULT_DESIGN_MODEL)
            default = " (default)" if spec.name in defaults else ""
            typer.echo(f"{spec.name}{default}\t{spec.kind}\t{spec.description}\t{where}")
