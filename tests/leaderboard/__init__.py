"""Tests of the leaderboard protocol, tables, entries, verification and the site."""
