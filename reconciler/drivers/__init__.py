"""Drivers: one per layer, found in `REGISTRY` by name (see base.py for the Protocol)."""
from .base import REGISTRY, ApplyResult, Driver, Observation, Target, TargetPlan, register

__all__ = ["REGISTRY", "ApplyResult", "Driver", "Observation", "Target", "TargetPlan", "register"]
