"""The dashboard's exceptions: one root, `DashboardError`."""

from __future__ import annotations


class DashboardError(Exception):
    """The dashboard cannot do what was asked."""


class ConfigError(DashboardError):
    """The dashboard's options are invalid; the message says which and what is accepted."""
