"""Shared fixtures: AiiDA's own pytest fixtures give a temporary SQLite profile per session."""

pytest_plugins = ["aiida.tools.pytest_fixtures"]
