"""The README's examples and commands stay true."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from benchmark.core.registry import DEFENSES, load_plugin
from benchmark.models.trainer import Trainer
from tests.support.helpers import smoke_defense

README = Path(__file__).resolve().parents[2] / "README.md"


def test_plugin_example_registers_and_trains(tmp_path, tiny_data, tiny_backbone):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "register_defense(\"gaussian_noise\")" in b)
    example = example.replace('"gaussian_noise"', '"readme_gaussian_noise"')
    path = tmp_path / "gaussian_noise.py"
    path.write_text(example)
    try:
        load_plugin(path)
        cls = DEFENSES.get("readme_gaussian_noise")
        d = smoke_defense(cls, tiny_backbone, tiny_data.info)
        d.fit(tiny_data, Trainer(progress=False))
        x = tiny_data.info.normalize(tiny_data.eval.images[:4])
        with torch.no_grad():
            assert d.predict(d.release(x)).shape == (4, 2)
    finally:
        DEFENSES.unregister("readme_gaussian_noise")


def test_ci_runs_the_readme_test_command():
    readme = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    command = re.search(r"# 2\. set up and run the tests\n(.+)\n", readme).group(1).strip()
    assert command in ci
    assert 'pytest -m "not slow"' in command


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub writes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_relative_links_of_the_docs_resolve():
    """Every relative link of the README and the entries' documents names a file that exists, and every #anchor a
    heading of the document it points into (so moving a section breaks this test, not the reader's click)."""
    root = README.parent
    docs = [README, *sorted((root / "entries").glob("*.md")), *sorted((root / "entries").glob("*/README.md"))]
    checked = 0
    for doc in docs:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{doc.relative_to(root)}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(dest), f"{doc.relative_to(root)}: link to {target}: no such heading"
            checked += 1
    assert checked >= 10
