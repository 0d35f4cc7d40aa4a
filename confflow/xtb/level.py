"""Levels of theory of the tight-binding energies: ``gfn2``, ``gfn1``, with implicit solvent.

A level is written ``METHOD[:MODEL]:SOLVENT`` or ``METHOD``: ``gfn2`` (gas phase), ``gfn2:water``
(ALPB water, the default model), ``gfn2:gbsa:water``, ``gfn1:ch2cl2``. Solvent names are those
of tblite's parametrised solvents (``water``, ``methanol``, ``dmso``, ``chcl3``, ...); a name
tblite does not know is refused when the energy is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from confflow.errors import InputError

__all__ = ["METHODS", "SOLVATION_MODELS", "XTBLevel"]

#: Method names of a level, mapped to tblite's.
METHODS = {"gfn2": "GFN2-xTB", "gfn1": "GFN1-xTB"}
#: Implicit solvent models, mapped to tblite's interaction names.
SOLVATION_MODELS = {"alpb": "alpb-solvation", "gbsa": "gbsa-solvation"}


@dataclass(frozen=True)
class XTBLevel:
    """A tight-binding level of theory.

    Attributes:
        method: ``"gfn2"`` or ``"gfn1"``.
        solvent: a tblite solvent name, or ``None`` for the gas phase.
        model: ``"alpb"`` or ``"gbsa"`` (only used with a solvent).
    """

    method: str = "gfn2"
    solvent: str | None = None
    model: str = "alpb"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(
                f"level {self.method!r}: unknown method; choose one of {', '.join(METHODS)}"
            )
        if self.model not in SOLVATION_MODELS:
            raise InputError(
                f"level: unknown solvent model {self.model!r}; choose one of "
                f"{', '.join(SOLVATION_MODELS)}"
            )
        if self.solvent is not None and not self.solvent:
            raise InputError("level: empty solvent name")

    @classmethod
    def parse(cls, spec: str) -> XTBLevel:
        """The level of ``spec`` (``gfn2``, ``gfn2:water``, ``gfn2:gbsa:water``; any case).

        Raises:
            InputError: an unknown method or model, or a malformed spec.
        """
        parts = spec.strip().lower().split(":")
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3 and parts[1] in SOLVATION_MODELS:
            return cls(parts[0], parts[2], parts[1])
        raise InputError(
            f"level {spec!r}: expected METHOD, METHOD:SOLVENT or METHOD:MODEL:SOLVENT "
            f"(e.g. gfn2, gfn2:water, gfn2:gbsa:water)"
        )

    @property
    def name(self) -> str:
        """The canonical spec: ``gfn2``, ``gfn2:water`` or ``gfn2:gbsa:water``."""
        if self.solvent is None:
            return self.method
        if self.model == "alpb":
            return f"{self.method}:{self.solvent}"
        return f"{self.method}:{self.model}:{self.solvent}"

    @property
    def tblite_method(self) -> str:
        """The method's name in tblite (``"GFN2-xTB"``)."""
        return METHODS[self.method]

    def __str__(self) -> str:
        return self.name
