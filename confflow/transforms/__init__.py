"""Bijections with exact log-determinants (forward = latent -> data)."""

from confflow.transforms.base import Compose, Inverse, Transform

__all__ = ["Compose", "Inverse", "Transform"]
