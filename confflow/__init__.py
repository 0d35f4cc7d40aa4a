"""confflow: Boltzmann generators for molecular conformer ensembles."""

__version__ = "0.1.0"
