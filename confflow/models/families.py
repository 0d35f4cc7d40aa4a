"""The registry of model families: what each family is, which targets it takes, its options.

``FlowConfig.family`` names one of :data:`FAMILIES`; ``FlowConfig.options`` holds that
family's own settings (the shared ones, ``layers``, ``bins``, ``hidden``, ``bound``,
``mask_seed`` and ``circular_components``, stay fields of the config). This module is plain
data and validation, cheap to import; :mod:`confflow.models.builder` holds one construction
function per family and dispatches through :func:`build_boltzmann_generator
<confflow.models.builder.build_boltzmann_generator>`.

Families:

* ``coupling`` (default): rational-quadratic spline (or affine, real coordinates only)
  couplings over the normalised internal coordinates or the features.
* ``maf`` / ``iaf``: masked / inverse autoregressive layers over the same coordinates.
* ``cnf``: a continuous flow over the same coordinates with a torus-aware vector field.
* ``egnn-cnf`` / ``e3nn-cnf``: an E(3)-equivariant continuous flow over Cartesian positions
  (centre-of-mass-free) with an EGNN or e3nn field and a mean-free normal base.
* ``torsional``: a flow over the free torsions of a SMILES molecule with the local structure of
  a reference conformer (the model of ``confflow generate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confflow.errors import InputError
from confflow.transforms.continuous import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS

__all__ = [
    "FAMILIES",
    "ConfigError",
    "Family",
    "Option",
    "check_family",
    "check_target",
    "family_options",
]


class ConfigError(InputError):
    """A configuration value that is missing, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Option:
    """One family-specific option.

    Attributes:
        default: value when the config omits it (``None``: unset, filled by the builder).
        check: returns an error text for a bad value, ``None`` for a good one.
        doc: what the option means, with units.
    """

    default: Any
    check: Callable[[Any], str | None]
    doc: str


@dataclass(frozen=True)
class Family:
    """A model family.

    Attributes:
        name: the value of ``FlowConfig.family``.
        coordinates: what the flow acts on, for messages.
        targets: ``"any"``, ``"molecular"`` (positions ``[B, N, 3]``) or ``"smiles"``.
        options: its options by name.
    """

    name: str
    coordinates: str
    targets: str
    options: dict[str, Option]


def _choice(*values: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in values else f"choose one of {', '.join(values)}, got {v!r}"


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        return None if ok else f"must be an integer >= {low}, got {v!r}"

    return check


def _positive(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v > 0
    return None if ok else f"must be a positive number, got {v!r}"


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else check(v)


def _positions(v: Any) -> str | None:
    rows = v if isinstance(v, list | tuple) else None
    ok = rows is not None and all(isinstance(r, list | tuple) and len(r) == 3 for r in rows)
    return None if ok else "must be a list of [x, y, z] positions in nm"


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _bond_pairs(v: Any) -> str | None:
    ok = isinstance(v, list | tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(i, int) for i in p)
        for p in v
    )
    return None if ok else "must be a list of [a, b] atom index pairs"


_ODE = {
    "solver": Option("dopri5", _choice(*ADAPTIVE_SOLVERS, *FIXED_STEP_SOLVERS), "ODE solver"),
    "rtol": Option(1e-5, _positive, "relative tolerance of adaptive solvers"),
    "atol": Option(1e-5, _positive, "absolute tolerance of adaptive solvers"),
    "step_size": Option(None, _optional(_positive), "flow-time step of fixed-step solvers"),
}
_EQUIVARIANT = {
    **_ODE,
    "depth": Option(3, _int_at_least(1), "message-passing layers of the vector field"),
    "std": Option(None, _optional(_positive), "nm, std of the mean-free normal base"),
}
_AUTOREGRESSIVE = {
    "elementwise": Option("spline", _choice("spline", "affine"), "per-coordinate map"),
}

#: Every family by name.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "coupling",
            "internal coordinates or features",
            "any",
            {"transform": Option("spline", _choice("spline", "affine"), "coupling map")},
        ),
        Family("maf", "internal coordinates or features", "any", _AUTOREGRESSIVE),
        Family("iaf", "internal coordinates or features", "any", _AUTOREGRESSIVE),
        Family("cnf", "internal coordinates (torus-aware) or features", "any", _ODE),
        Family("egnn-cnf", "Cartesian positions", "molecular", _EQUIVARIANT),
        Family("e3nn-cnf", "Cartesian positions", "molecular", _EQUIVARIANT),
        Family(
            "torsional",
            "free torsions",
            "smiles",
            {
                "reference": Option(None, _optional(_positions), "nm, [N, 3] reference conformer"),
                "relax_steps": Option(0, _int_at_least(0), "local relaxation steps per energy"),
                "rigid_bonds": Option(
                    [], _bond_pairs, "rotatable bonds [a, b] held at the reference"
                ),
                "allow_rigid": Option(
                    False, _boolean, "allow no free torsion (a state of a state mixture)"
                ),
            },
        ),
    )
}


def check_family(family: Any, options: Any) -> None:
    """Validates a family name and its options.

    Raises:
        ConfigError: one line naming ``flow.family`` or ``flow.options.<name>``.
    """
    if family not in FAMILIES:
        raise ConfigError(
            f"flow.family: unknown family {family!r}; choose one of {', '.join(FAMILIES)}"
        )
    if not isinstance(options, dict):
        raise ConfigError(f"flow.options: expected a mapping, got {type(options).__name__}")
    known = FAMILIES[family].options
    for name, value in options.items():
        if name not in known:
            raise ConfigError(
                f"flow.options.{name}: not an option of family {family!r}; "
                f"known: {', '.join(known) or 'none'}"
            )
        problem = known[name].check(value)
        if problem is not None:
            raise ConfigError(f"flow.options.{name}: {problem}")


def check_target(family: str, kind: str, molecular: bool) -> None:
    """Refuses a family on a target it cannot model (``kind``: the target's kind).

    Raises:
        ConfigError: one line naming ``flow.family``.
    """
    wants = FAMILIES[family].targets
    if (wants == "molecular" and not molecular) or (wants == "smiles" and kind != "smiles"):
        need = "a molecular target" if wants == "molecular" else "a 'smiles' target"
        raise ConfigError(f"flow.family: {family!r} needs {need}, got target {kind!r}")


def family_options(family: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with the family's defaults."""
    return {name: options.get(name, o.default) for name, o in FAMILIES[family].options.items()}
