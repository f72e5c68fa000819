"""What an entry folder holds: the names of its files and folders, and which suites are official."""

from __future__ import annotations

import re

CARD_VERSION = 1
#: suites whose entries are official: the leaderboard's GPU-sized tracks and their CPU-sized twin (the same
#: protocol and scenario on tiny test backbones; its tracks are its own, so the two never share a table)
OFFICIAL_SUITES = ("standard", "standard-cpu")
CARD_FILE = "entry.yaml"
CHECKSUMS_FILE = "checksums.json"
VERIFICATION_FILE = "verification.json"
RUN_DIR = "run"
PLUGIN_DIR = "plugin"
#: The card's keys in the order ``entry.yaml`` is written.
CARD_KEYS = ("schema_version", "name", "authors", "paper", "code_url", "license", "hardware", "contact", "defense",
             "code", "suite")
TOP_LEVEL = {CARD_FILE, CHECKSUMS_FILE, VERIFICATION_FILE, RUN_DIR, PLUGIN_DIR}
TYPE_WORDS = {"string": "a string", "array": "a list", "object": "a mapping", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")

