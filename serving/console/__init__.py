"""The moderator console (issue 6): ``console_app`` is mounted by the service at /console."""

from serving.console.app import SHORTCUTS, console_app, create_console_app

__all__ = ["SHORTCUTS", "console_app", "create_console_app"]
