"""``confflow generate``: from a SMILES to a Boltzmann-weighted conformer ensemble.

Example:
    >>> from confflow.generate import GenerateConfig, run_generate
    >>> run_generate(GenerateConfig("CCCO", "out/propanol.sdf", budget=30))  # doctest: +SKIP
"""

from confflow.generate.config import GenerateConfig, GenerateError
from confflow.generate.pipeline import GenerateResult, run_generate

__all__ = ["GenerateConfig", "GenerateError", "GenerateResult", "run_generate"]
