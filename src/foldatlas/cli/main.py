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
    from foldatlas.cli import atlas, compare, design, fold, lm, models, relax, serve, train

    fold.register(app)
    compare.register(app)
    relax.register(app)
    models.register(app)
    atlas.register(app)
    train.register(app)
    serve.register(app)
    lm.register(app)
    design.register(app)


_register()


# Click's exception base, wherever this Typer keeps click: Typer up to 0.2x re-exports click's own classes, Typer
# 0.29 bundles a private copy (typer._click) whose classes are not click's. typer.BadParameter is public in both
# and derives from that copy's UsageError and ClickException, so the bases are found through it.
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _context_of(argv: list[str]):
    """A click context of the (sub)command ``argv`` names, for its usage line; None if it cannot be made."""
    try:
        command = typer.main.get_command(app)
        path = ["foldatlas"]
        for token in argv:
            sub = getattr(command, "commands", {}).get(token)
            if sub is None:
                break
            command, path = sub, path + [token]
        return command.make_context(" ".join(path), [], resilient_parsing=True)
    except Exception:  # the usage line is a courtesy; the error line below is what matters
        return None


def _show_usage_error(e: Exception, argv: list[str]) -> int:
    """Print a click usage error as one usage line and one ``error:`` line; return its exit code (2)."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a command group without a subcommand
        text = ctx.get_help()  # Typer's Rich help prints itself (to stdout) and returns ""
        if text.strip():
            print(text, file=sys.stderr)
        return 2
    ctx = ctx or _context_of(argv)  # some parser errors (an option without its value) carry no context
    if ctx is not None:
        usage = " ".join(ctx.get_usage().split()).replace("Usage:", "usage:", 1)
        print(f"{usage}   (more: {ctx.command_path} --help)", file=sys.stderr)
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    print(f"error: {message}", file=sys.stderr)
    return int(getattr(e, "exit_code", 2) or 2)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (errors as one line on stderr, never a traceback for a user's mistake).

    Exit codes: 0 success, 1 some records failed, 2 bad input or usage (an unknown command or option, a missing
    or invalid value), 3 model problem, 4 output made with another model, 5 a missing tool, 130 interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of raising it, and raises its
        # usage errors for us to print (standalone mode would print them with Rich boxes, differently per version).
        code = app(args=argv, standalone_mode=False)
    except FoldatlasError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except _USAGE_ERROR as e:
        return _show_usage_error(e, argv)
    except _CLICK_EXCEPTION as e:  # click's other errors (an unreadable file argument, ...)
        print(f"error: {e.format_message()}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1) or 1)
    except OSError as e:  # unwritable output folder, full disk, ...
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
