"""Screens of the reconciler TUI."""
from .action import ActionScreen
from .apps import AppListScreen
from .confirm import ConfirmScreen
from .detail import AppDetailScreen
from .help import HelpScreen

__all__ = ["ActionScreen", "AppListScreen", "ConfirmScreen", "AppDetailScreen", "HelpScreen"]
