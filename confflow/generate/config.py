"""Validated settings of one ``confflow generate`` run, and the errors of the pipeline."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from confflow.errors import InputError
from confflow.xtb import XTBLevel

__all__ = ["ENERGIES", "FAMILY_MODELS", "MODELS", "RELAX_STEPS", "GenerateConfig", "GenerateError"]

#: Force fields ``--energy`` accepts, mapped to the MMFF variant names of confflow.energies.
ENERGIES: dict[str, Literal["MMFF94", "MMFF94s"]] = {"mmff94": "MMFF94", "mmff94s": "MMFF94s"}
#: Families of the model registry that ``--model`` takes by name, as Cartesian models: over
#: internal coordinates (``maf``, ``iaf``, ``cnf``) or positions (``egnn-cnf``, ``e3nn-cnf``).
FAMILY_MODELS = ("maf", "iaf", "cnf", "egnn-cnf", "e3nn-cnf")
#: Models ``--model`` accepts (see :mod:`confflow.generate.model`).
MODELS = ("auto", "torsional", "cartesian", *FAMILY_MODELS)
#: Default relaxation steps of the torsional model's local structure (see ``relax_steps``).
RELAX_STEPS = 4


class GenerateError(InputError):
    """An input or setting ``confflow generate`` cannot use; the message names it and the cause."""


@dataclass(frozen=True)
class GenerateConfig:
    """Everything that defines a run; saved in the JSON report.

    Attributes:
        smiles: the input molecule.
        out: SDF file of the ensemble; the report is ``<stem>.json`` beside it and the run
            folder (checkpoints, MD data, plots) ``<stem>_run/``.
        temperature: K.
        n: flow samples drawn (before stereo filtering and clustering).
        seed: seed of every random stage (ETKDG, MD, training, sampling, bootstrap).
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:i]"`` for training and sampling.
        budget: seconds of training (maximum likelihood and refinement together); a state
            mixture whose expected ESS is then below 15% trains up to as long again
            (:data:`~confflow.generate.state_training.EXTEND_BELOW_ESS`).
        md_ns: ns of MMFF replica-exchange MD per replica as training data (0: seed
            conformers only, jittered by a short MMFF minimisation of each).
        replicas: temperatures of the replica-exchange ladder (1: plain Langevin MD).
        t_max: K, highest temperature of the ladder.
        energy: ``"mmff94"`` or ``"mmff94s"``.
        model: ``"torsional"`` (a flow over the free torsions; see ``relax_steps``),
            ``"cartesian"`` (spline couplings over all internal coordinates), another family
            of the registry over all coordinates (:data:`FAMILY_MODELS`) or ``"auto"``
            (torsional when the molecule has a rotatable bond, else Cartesian); see
            :mod:`confflow.generate.model`.
        relax_steps: torsional model: preconditioned gradient steps that relax the local
            structure (bonds, angles, rigid torsions) at each torsion set before its energy is
            taken (:class:`~confflow.energies.LocalRelaxation`; 0: the lowest-energy seed's
            frozen structure, the setting of torsional Boltzmann generators).
        states: torsional model: sample every conformational state found among the seeds
            (ring puckers, nitrogen invertomers, amide/ester isomers) as a mixture, one
            torsional flow per state (see :mod:`confflow.generate.states`); ``False``: only
            the lowest seed's state.
        unique: heavy-atom RMSD in nm that merges samples into one conformer (``None``: write
            every sample).
        checkpoint: trained model to reuse (skips training), or ``None``.
        largest_fragment: keep the largest fragment of a salt or mixture.
        level: a GFN-xTB level (``"gfn2"``, ``"gfn2:water"``, see
            :class:`~confflow.xtb.XTBLevel`) to reweight the ensemble to, or ``None`` (the
            force field's weights); see :mod:`confflow.generate.level`.
        level_refine: seconds of refinement at ``level`` when its ESS is below
            ``level_ess`` (0: none).
        level_ess: ESS fraction at ``level`` below which the flow is refined, and at which the
            refinement stops.
        plots: write PNG diagnostics into the run folder.
        bootstrap: bootstrap replicates of the cluster free energies.
        compile: compile MMFF's energy-and-gradient kernel for training's dtype in a
            background thread from the start of the run (it overlaps the seeds and MD);
            training switches to it once it is ready (see
            :meth:`~confflow.energies.MMFFEnergy.compile_in_background`). Budgets below
            :data:`~confflow.generate.stages.COMPILE_MIN_BUDGET` stay eager.
        progress: progress bars on stderr.
    """

    smiles: str
    out: Path
    temperature: float = 300.0
    n: int = 2000
    seed: int = 0
    device: str = "auto"
    budget: float = 120.0
    md_ns: float = 0.05
    replicas: int = 4
    t_max: float = 600.0
    energy: str = "mmff94"
    model: str = "auto"
    relax_steps: int = RELAX_STEPS
    states: bool = True
    unique: float | None = None
    checkpoint: Path | None = None
    largest_fragment: bool = False
    level: str | None = None
    level_refine: float = 300.0
    level_ess: float = 0.1
    plots: bool = False
    bootstrap: int = 200
    compile: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        checks = (
            ("temperature", self.temperature, 0.0),
            ("budget", self.budget, 0.0),
            ("t_max", self.t_max, 0.0),
        )
        for name, value, low in checks:
            if not (isinstance(value, int | float) and math.isfinite(value) and value > low):
                raise GenerateError(f"--{name.replace('_', '-')}: must be positive, got {value!r}")
        if (
            not (isinstance(self.md_ns, int | float) and math.isfinite(self.md_ns))
            or self.md_ns < 0
        ):
            raise GenerateError(f"--md-ns: must be >= 0, got {self.md_ns!r}")
        for name in ("n", "replicas", "bootstrap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                flag = "-n" if name == "n" else f"--{name}"
                raise GenerateError(f"{flag}: must be a positive integer, got {value!r}")
        if not isinstance(self.relax_steps, int) or self.relax_steps < 0:
            raise GenerateError(f"--relax-steps: must be an integer >= 0, got {self.relax_steps!r}")
        if self.seed < 0:
            raise GenerateError(f"--seed: must be >= 0, got {self.seed}")
        if self.energy not in ENERGIES:
            raise GenerateError(
                f"--energy: unknown force field {self.energy!r}; choose one of "
                f"{', '.join(ENERGIES)}"
            )
        if self.model not in MODELS:
            raise GenerateError(
                f"--model: unknown model {self.model!r}; choose one of {', '.join(MODELS)}"
            )
        if self.unique is not None and not self.unique > 0:
            raise GenerateError(f"--unique: RMSD must be positive, got {self.unique!r}")
        if self.replicas > 1 and not self.t_max > self.temperature:
            raise GenerateError(
                f"--t-max: {self.t_max} K must exceed --temperature {self.temperature} K"
            )
        if not (isinstance(self.level_refine, int | float) and self.level_refine >= 0):
            raise GenerateError(f"--level-refine: must be >= 0 s, got {self.level_refine!r}")
        if not (isinstance(self.level_ess, int | float) and 0 < self.level_ess <= 1):
            raise GenerateError(f"--level-ess: must be in (0, 1], got {self.level_ess!r}")
        if self.level is not None:
            try:
                object.__setattr__(self, "level", XTBLevel.parse(self.level).name)
            except InputError as err:
                raise GenerateError(f"--level: {err}") from err
        if self.out.suffix.lower() != ".sdf":
            raise GenerateError(f"--out {self.out}: must end in .sdf")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise GenerateError(f"--checkpoint {self.checkpoint}: no such file")
        if not (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda")):
            raise GenerateError(
                f"--device: expected 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}"
            )

    @property
    def report_path(self) -> Path:
        """The JSON report beside the SDF."""
        return self.out.with_suffix(".json")

    @property
    def run_dir(self) -> Path:
        """Folder of intermediate results: MD data, checkpoints, plots."""
        return self.out.with_name(self.out.stem + "_run")

    @property
    def variant(self) -> Literal["MMFF94", "MMFF94s"]:
        """The MMFF variant name of :attr:`energy`."""
        return ENERGIES[self.energy]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (paths as strings)."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["checkpoint"] = None if self.checkpoint is None else str(self.checkpoint)
        return data
