"""The walkthrough in docs/python-api.md runs as written: every ```python block, in order, in
one namespace, in an empty folder (so it cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def code_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_the_python_api_walkthrough_runs_as_written(tmp_path, monkeypatch):
    blocks = code_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "walkthrough"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/python-api.md block {number}", "exec"), namespace)
    assert (tmp_path / "id.json").exists() and (tmp_path / "curvature.html").exists()
    # the walkthrough's claims: the DataLoader gives the layer's numbers, S^2 has dimension 2
    assert abs(namespace["same"]["pool"] - namespace["acts"]["pool"]).max() < 1e-4
    assert abs(namespace["mp"].geometry.twonn(namespace["sphere"]).dimension - 2) < 0.2


def test_the_methods_page_covers_every_measure_and_code_points_to_it():
    text = (DOCS / "methods.md").read_text(encoding="utf-8")
    for heading in ("## Intrinsic dimension", "## Curvature", "### Curvature: what the numbers are",
                    "### Curvature: accuracy", "## Exact curvature", "## Neural collapse", "## Spectra",
                    "## Cutting planes", "## Representation similarity",
                    "## Validation: what the tests hold each estimator to",
                    "## Limits worth knowing"):  # fmt: skip
        assert f"\n{heading}\n" in text, heading
    root = DOCS.parent
    stale = [str(p.relative_to(root)) for folder in ("manifold_probe", "cli", "tests")
             for p in (root / folder).rglob("*.py") if re.search(r"DESIGN\.md|SCIENCE\.md", p.read_text())
             and p.name != "test_docs.py"]  # fmt: skip
    assert not stale, f"files still cite notes outside the repository: {stale}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


def markdown_pages() -> list[Path]:
    root = DOCS.parent
    return [
        root / "README.md",
        root / "CHANGELOG.md",
        root / "benchmarks" / "README.md",
        *sorted(DOCS.glob("*.md")),
    ]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of `path`: lower case, punctuation but - and _ dropped,
    spaces as hyphens, a repeated one numbered."""
    found: set[str] = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        if match := re.match(r"#{1,6} (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in found:
                n += 1
                candidate = f"{slug}-{n}"
            found.add(candidate)
    return found


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in markdown_pages():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
