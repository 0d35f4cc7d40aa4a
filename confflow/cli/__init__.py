"""The ``confflow`` command line: one Typer app, one module per subcommand, one error boundary.

Each subcommand is a thin layer over the library and runs inside
:func:`confflow.cli.boundary.guarded`: exit 2 for bad input, 1 for a failed run, 130 when
interrupted, one line on stderr, a traceback only with ``confflow --debug``. :func:`main` is the
entry point; it also turns usage errors (a missing option, a value out of range) into one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from typer.exceptions import TyperException

from confflow import __version__
from confflow.cli import datasets, demo, generate, md, pipeline, reweight, sample, train
from confflow.cli.boundary import DEBUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED

__all__ = ["app", "main"]

app = typer.Typer(
    name="confflow",
    help="Boltzmann-weighted molecular conformer ensembles with normalizing flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"confflow {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an error.")
    ] = False,
) -> None:
    """Boltzmann-weighted molecular conformer ensembles with normalizing flows."""
    DEBUG.set(debug)


for _module in (generate, train, sample, reweight, md, datasets, pipeline, demo):
    _module.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``confflow`` with ``argv`` (default: the process arguments); returns the exit status.

    Usage errors (a missing option, a value out of range) print one line,
    ``error: <command>: <problem> (see --help)``, and return 2.
    """
    try:
        code = app(
            args=None if argv is None else list(argv), prog_name="confflow", standalone_mode=False
        )
    except TyperException as err:  # the parser's errors: usage, missing or bad parameters
        if type(err).__name__ == "NoArgsIsHelpError":
            err.show()  # a bare group prints its help
            return EXIT_BAD_INPUT
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "confflow"
        typer.echo(f"error: {where}: {err.format_message()} (see --help)", err=True)
        return int(getattr(err, "exit_code", EXIT_BAD_INPUT))
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0
