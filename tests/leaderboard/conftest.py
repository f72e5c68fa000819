"""The entry fixtures (a finished tiny run, and that run packed as an entry) for every leaderboard test."""

from tests.support.entries import built, entry  # noqa: F401  (pytest finds fixtures a conftest imports)
