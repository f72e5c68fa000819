"""The leaderboard: tables rendered from result records, never typed by hand."""

from .render import build_tables, render_run

__all__ = ["build_tables", "render_run"]
