"""Widgets of the reconciler TUI: application table, resource tree, diff view, history tables."""
from tui.widgets.app_table import AppTable
from tui.widgets.diff_view import DiffView
from tui.widgets.history import DriftTable, RunsTable
from tui.widgets.resource_tree import ResourceTree

__all__ = ["AppTable", "DiffView", "DriftTable", "RunsTable", "ResourceTree"]
