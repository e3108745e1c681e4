"""``foldatlas serve``: the HTTP API and web page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command."""

    @app.command("serve")
    def serve(
        atlas: Optional[Path] = typer.Option(None, "--atlas", "-a", help="Atlas folder served and used as the fold "
                                             "cache (created if missing; default $FOLDATLAS_ATLAS, else a temporary "
                                             "atlas for this run)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Folding model (default $FOLDATLAS_MODEL, "
                                            "else the embedded model)."),
        host: str = typer.Option("127.0.0.1", "--host", envvar="FOLDATLAS_HOST", help="Address to listen on."),
        port: int = typer.Option(8000, "--port", envvar="FOLDATLAS_PORT", min=1, max=65535),
        max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="Longest sequence accepted "
                                                 "(default $FOLDATLAS_MAX_LENGTH, else what free memory allows)."),
        queue_size: Optional[int] = typer.Option(None, "--queue-size", min=0, help="Fold jobs that may wait "
                                                 "(default 16); beyond: 503 with Retry-After."),
        fold_workers: Optional[int] = typer.Option(None, "--fold-workers", min=1, help="Folds at once (default 1)."),
        embedding_model: Optional[str] = typer.Option(None, "--embedding-model", help="Language model of the "
                                                      "entries' embeddings; 'none' for none."),
        num_recycles: Optional[int] = typer.Option(None, "--num-recycles", min=0, max=24,  # engine.MAX_RECYCLES
                                                   help="Recycles of every "
                                                   "fold (default $FOLDATLAS_NUM_RECYCLES, else the model's own)."),
        num_samples: Optional[int] = typer.Option(None, "--num-samples", min=1, max=64,  # esmfold2.MAX_SAMPLES
                                                  help="ESMFold2 samples per fold (default $FOLDATLAS_NUM_SAMPLES, "
                                                  "else the checkpoint's own)."),
        seed: Optional[int] = typer.Option(None, "--seed", min=0, help="ESMFold2 seed of every fold (default "
                                           "$FOLDATLAS_SEED, else 0)."),
        device: Optional[str] = typer.Option(None, "--device"),
        precision: Optional[str] = typer.Option(None, "--precision", help="exact, fast or auto (default "
                                                "$FOLDATLAS_PRECISION, else auto: exact on CPUs, fast on GPUs)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1),
        log_level: str = typer.Option("info", "--log-level"),
    ) -> None:
        """Serve the fold API (ESM Atlas-compatible and JSON), the atlas and the web page."""
        import uvicorn

        from foldatlas.errors import InvalidOptionError
        from foldatlas.files import check_output_path
        from foldatlas.models.loading import check_device_options
        from foldatlas.service import ServiceSettings, create_app
        from foldatlas.service.app import open_service

        settings = ServiceSettings.from_env(atlas=atlas, model=model, max_length=max_length, queue_size=queue_size,
                                            fold_workers=fold_workers, embedding_model=embedding_model,
                                            device=device, threads=threads, num_recycles=num_recycles,
                                            num_samples=num_samples, seed=seed, precision=precision)
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if log_level.lower() not in levels:
            raise InvalidOptionError(f"--log-level must be one of {', '.join(levels)}, not {log_level!r}")
        if settings.atlas is not None:
            check_output_path(settings.atlas, "--atlas", folder=True)
        check_device_options(settings.device, settings.dtype, settings.precision)
        # Atlas, models and resumed jobs open here, before the server: a problem is one error line, not a
        # failed ASGI start-up with a traceback.
        context = open_service(settings)
        typer.echo(f"foldatlas: serving http://{host}:{port}/ (API docs at /docs); model {settings.model}, "
                   f"atlas {settings.atlas or 'temporary'}", err=True)
        uvicorn.run(create_app(settings, context=context), host=host, port=port, log_level=log_level,
                    access_log=False)
