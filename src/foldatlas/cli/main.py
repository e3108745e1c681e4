"""The ``foldatlas`` command: one Typer app, one module per command group.

Errors are mapped to one-line messages and exit codes here, in one place:
a :class:`~foldatlas.errors.FoldatlasError` prints ``error: <message>`` and
exits with its ``exit_code``; nothing else of foldatlas' making prints a
traceback.
"""

from __future__ import annotations

import sys

import typer

from foldatlas import __version__
from foldatlas.errors import FoldatlasError

app = typer.Typer(name="foldatlas", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Protein structure prediction with protein language models, on your own machine.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"foldatlas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """foldatlas command line."""


def _register() -> None:
    from foldatlas.cli import atlas, compare, fold, lm, models, serve, train

    fold.register(app)
    compare.register(app)
    models.register(app)
    atlas.register(app)
    train.register(app)
    serve.register(app)
    lm.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (errors as one line on stderr)."""
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except FoldatlasError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except OSError as e:  # unwritable output folder, full disk, ...
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        raise
    return code if isinstance(code, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
