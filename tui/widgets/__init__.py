"""Widgets of the reconciler TUI: application table, resource tree, diff view, history tables."""
from .app_table import AppTable
from .diff_view import DiffView
from .history import DriftTable, RunsTable
from .resource_tree import ResourceTree

__all__ = ["AppTable", "DiffView", "DriftTable", "RunsTable", "ResourceTree"]
