"""The command line's one error boundary: an exception becomes an exit status and one line.

Every subcommand runs inside :func:`guarded`:

* 0 — success;
* 1 — a failed run: :class:`~confflow.errors.RunError`, an OpenMM failure, a full disk or
  another I/O failure, an unexpected error;
* 2 — bad input: :class:`~confflow.errors.InputError` or any other ``ValueError``, a path that
  does not exist, is a folder where a file is expected (or the reverse) or cannot be written;
* 130 — interrupted (Ctrl-C); files already written stay (every writer is atomic).

The message is one line on stderr, ``error: <cause>``, naming the input or path. The
traceback is printed only with ``confflow --debug``.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

import typer
from typer.exceptions import TyperException

from confflow.errors import ConfflowError, InputError, RunError

__all__ = [
    "DEBUG",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "RunInterruptedError",
    "describe",
    "guarded",
]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: OSErrors that mean the path given is wrong, not that the run failed.
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

P = ParamSpec("P")
R = TypeVar("R")

#: Set by ``confflow --debug``: print the traceback before the one-line message.
DEBUG: ContextVar[bool] = ContextVar("confflow_cli_debug", default=False)


class RunInterruptedError(ConfflowError):
    """The user stopped the run (Ctrl-C); the message says what was kept (exit 130)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_message(err: OSError) -> str:
    cause = err.strerror or str(err)
    if err.filename is None:
        return cause
    target = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else err.filename
    return f"{target}: {cause}"


def describe(err: BaseException) -> tuple[int, str]:
    """The exit status and one-line message for an exception that ends a command.

    Args:
        err: the exception.

    Returns:
        ``(status, message)``; the message has no line breaks.
    """
    if isinstance(err, RunInterruptedError):
        return EXIT_INTERRUPTED, _one_line(f"interrupted; {err}")
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted; files written so far are kept"
    if isinstance(err, OSError):
        code = EXIT_BAD_INPUT if isinstance(err, _PATH_ERRORS) else EXIT_FAILED
        return code, _one_line(_os_message(err))
    if isinstance(err, InputError | ValueError):
        return EXIT_BAD_INPUT, _one_line(str(err))
    if isinstance(err, RunError):
        return EXIT_FAILED, _one_line(str(err))
    if type(err).__module__.split(".")[0] == "openmm":
        return EXIT_FAILED, _one_line(f"OpenMM: {err}")
    if isinstance(err, MemoryError):
        return EXIT_FAILED, "out of memory; use fewer samples or a smaller batch"
    detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return EXIT_FAILED, _one_line(f"internal error ({detail}); rerun with --debug for a traceback")


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """Wraps a subcommand in the error boundary (see the module docstring).

    Args:
        command: a Typer command function; its signature and help are kept.

    Returns:
        The wrapped command.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except (Exception, KeyboardInterrupt) as err:
            if DEBUG.get():
                traceback.print_exc()
            code, message = describe(err)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None

    return run
