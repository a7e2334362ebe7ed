"""Screens of the reconciler TUI."""
from tui.screens.action import ActionScreen
from tui.screens.apps import AppListScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import AppDetailScreen
from tui.screens.help import HelpScreen

__all__ = ["ActionScreen", "AppListScreen", "ConfirmScreen", "AppDetailScreen", "HelpScreen"]
