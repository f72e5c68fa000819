"""``splitbench site``: a static leaderboard site built from entry folders and run directories.

Pages (index, one per track, one per defense, paper vs splitbench, hardware) are rendered from Jinja2 templates
with autoescaping, so names, cards and notes from records, entries and plugins reach the browser as text. Every
asset is a local file (CSS, a small sorting script, PNG plots and galleries): the site reads offline from the
folder it is written to.

Example:
    >>> from leaderboard.site import build_site
    >>> build_site(["runs/quick"], "site")  # doctest: +SKIP
    PosixPath('site/index.html')
"""

from .build import build_site, cmd_site

__all__ = ["build_site", "cmd_site"]
