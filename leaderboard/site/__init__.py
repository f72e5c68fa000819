"""``splitbench site``: a static leaderboard site built from entry folders and run directories.

Pages (index, one per track, one per defense, paper vs splitbench, hardware) are rendered from Jinja2 templates
with autoescaping, so names, cards and notes from records, entries and plugins reach the browser as text. Every
asset is a local file (CSS, a small sorting script, PNG plots and galleries): the site reads offline from the
folder it is written to.

The site needs packages the rest of splitbench does not (Jinja2, matplotlib, seaborn): the ``site`` extra,
``pip install 'splitbench[site]'``. Without them, importing this package raises one
:class:`~benchmark.core.errors.SplitbenchError` that says so.

Example:
    >>> from leaderboard.site import build_site
    >>> build_site(["runs/quick"], "site")  # doctest: +SKIP
    PosixPath('site/index.html')
"""

from benchmark.core.errors import SplitbenchError

# the ``site`` extra's packages (and MarkupSafe, which Jinja2 brings)
SITE_PACKAGES = ("jinja2", "markupsafe", "matplotlib", "seaborn")

try:
    from leaderboard.site.build import build_site, cmd_site
except ImportError as exc:
    missing = (exc.name or "").partition(".")[0]
    if missing not in SITE_PACKAGES:
        raise
    raise SplitbenchError(f"the site needs the 'site' extra ({missing} is not installed): "
                          "pip install 'splitbench[site]'") from exc

__all__ = ["build_site", "cmd_site"]
