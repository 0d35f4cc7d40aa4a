"""The one exception and the one warning of :mod:`confflow.chem`."""

from __future__ import annotations

from confflow.errors import InputError

__all__ = ["MoleculeError", "StereoWarning"]


class MoleculeError(InputError):
    """A molecule input that confflow cannot use; the message names the input and the cause."""


class StereoWarning(UserWarning):
    """A molecule has stereocentres or stereo double bonds whose configuration is unspecified."""
