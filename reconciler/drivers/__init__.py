"""Drivers: one per layer (the Protocol in base.py), built by registry.py."""
from reconciler.drivers.base import ApplyResult, Driver, Observation, Target, TargetPlan

__all__ = ["ApplyResult", "Driver", "Observation", "Target", "TargetPlan"]
