"""Leaderboard entries: a card, one finished run, the defense's code and checksums, packed into one folder.

An entry folder holds exactly::

    entry.yaml          the card, validated against leaderboard/schema/entry-v<schema_version>.json
    run/manifests/ID.json   the one manifest that was submitted (run/run.json is the same file)
    run/records/*.json  every record the manifest names, with the .npz / .png files they reference
    plugin/*.py         the plugin file(s), when the defense comes from a plugin
    checksums.json      {"algorithm": "sha256", "files": {path relative to the entry: sha256}} of all of the above
    verification.json   written by ``splitbench verify --report``: one result per verifying machine (not
                        checksummed: it is a report about the entry)

:func:`submit` validates a run directory and a card and packs them, building the folder beside ``--out`` and
renaming it into place, so a failed submit leaves nothing behind. :func:`check_entry` is the integrity half of
``splitbench verify`` (checksums, card, records, layout); :mod:`leaderboard.verification` re-runs cells. An entry of
the ``standard`` suite (or its CPU twin ``standard-cpu``) are official; entries of any other suite are accepted
and shown apart (:func:`is_official`).

The package in files by job: :mod:`~leaderboard.entry.layout` (file names, official suites),
:mod:`~leaderboard.entry.card`, :mod:`~leaderboard.entry.checksums`, :mod:`~leaderboard.entry.runcheck` (the run it
holds), :mod:`~leaderboard.entry.provenance` (where the defense's code comes from), :mod:`~leaderboard.entry.pack`
(submit and the entry check) and :mod:`~leaderboard.entry.objects` (files several entries share, stored once).

Example:
    >>> from leaderboard.entry import submit, is_official
    >>> entry = submit("runs/quick", "entry.yaml", "entries/my-defense",
    ...                plugins=["my_defense.py"])                       # doctest: +SKIP
    >>> is_official(entry)                                              # doctest: +SKIP
    False
"""

from leaderboard.entry.card import card_schema, is_official, read_card, schema_versions, validate_card, write_card
from leaderboard.entry.checksums import check_checksums, write_checksums
from leaderboard.entry.layout import (
    CARD_FILE,
    CARD_KEYS,
    CARD_VERSION,
    CHECKSUMS_FILE,
    OFFICIAL_SUITES,
    PLUGIN_DIR,
    RUN_DIR,
    VERIFICATION_FILE,
)
from leaderboard.entry.pack import check_entry, entry_plugins, submit
from leaderboard.entry.provenance import check_code, provide_plugin
from leaderboard.entry.runcheck import RunContents, check_run, parse_resolved_suite, track_of

__all__ = [
    "CARD_FILE", "CARD_KEYS", "CARD_VERSION", "CHECKSUMS_FILE", "OFFICIAL_SUITES", "PLUGIN_DIR", "RUN_DIR",
    "RunContents", "VERIFICATION_FILE", "card_schema", "check_checksums", "check_code", "check_entry", "check_run",
    "entry_plugins", "is_official", "parse_resolved_suite", "provide_plugin", "read_card", "schema_versions",
    "submit", "track_of", "validate_card", "write_card", "write_checksums",
]
