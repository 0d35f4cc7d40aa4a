"""Boltzmann generators: configuration, the registry of families, targets and the builder."""

from confflow.models.builder import (
    BoltzmannGenerator,
    build_boltzmann_generator,
    coupling_stack,
)
from confflow.models.config import BGConfig, ConfigError, FlowConfig, TargetConfig
from confflow.models.families import FAMILIES
from confflow.models.mixture import StateMixture, local_entropy
from confflow.models.targets import Target, build_target

__all__ = [
    "FAMILIES",
    "BGConfig",
    "BoltzmannGenerator",
    "ConfigError",
    "FlowConfig",
    "StateMixture",
    "Target",
    "TargetConfig",
    "build_boltzmann_generator",
    "build_target",
    "coupling_stack",
    "local_entropy",
]
