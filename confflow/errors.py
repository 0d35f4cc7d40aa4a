"""The ``ConfflowError`` family: typed errors that the library raises and the CLI maps to exits.

Library code raises; it never prints or exits. The command line's error boundary
(:mod:`confflow.cli.boundary`) turns an :class:`InputError` into exit status 2 and a
:class:`RunError` into exit status 1, each as one line on stderr.

* :class:`InputError` — the input is wrong: a SMILES RDKit cannot read, an element a force field
  does not cover, an option out of range, a file that is not what it claims to be. Fixing the
  input fixes the run. Also a :class:`ValueError`, so ``except ValueError`` keeps working.
* :class:`RunError` — valid input, failed run: a diverged training, an ODE solve that did not
  converge. Also a :class:`RuntimeError`.
"""

from __future__ import annotations

__all__ = ["ConfflowError", "InputError", "RunError"]


class ConfflowError(Exception):
    """Base class of every error confflow raises on purpose."""


class InputError(ConfflowError, ValueError):
    """Bad input: the message names the input and what is wrong with it (CLI exit status 2)."""


class RunError(ConfflowError, RuntimeError):
    """A run with valid input failed: the message names the stage and the cause (exit 1)."""
