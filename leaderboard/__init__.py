"""The leaderboard: tables rendered from result records, never typed by hand."""

from leaderboard.render import build_tables, build_tracks, render_run, to_csv, to_frame, to_markdown

__all__ = ["build_tables", "build_tracks", "render_run", "to_csv", "to_frame", "to_markdown"]
