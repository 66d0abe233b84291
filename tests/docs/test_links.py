"""Every link in the README, the CHANGELOG, the service's README and the docs resolves inside
the repository, and nothing points outside it (no ../shared/, no /work/ paths, no citations of
a design file users do not have). `mkdocs build --strict` checks the site's links and anchors
again as the site sees them; this test also covers the files that are not part of the site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHECKED = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "ops" / "README.md",
        ROOT / "src" / "myhibachi" / "README.md",
        *DOCS.rglob("*.md"),
    ]
)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
# Case-sensitive: our own docs/design.md is fine, the contract's DESIGN.md is not.
FORBIDDEN = re.compile(r"\.\./shared|/work/|DESIGN\.md|\bDESIGN\s*(?:§|section\b|\d)")


def prose(text: str) -> str:
    """The text without code: a link-looking string inside a code block is an example."""
    return CODE.sub("", FENCE.sub("", text))


def links(text: str) -> Iterator[str]:
    text = prose(text)
    yield from LINK.findall(text)
    yield from REFERENCE.findall(text)


def slug(heading: str) -> str:
    """The anchor GitHub and mkdocs' toc give a heading (for the plain headings we write)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)}


def problems(path: Path, text: str) -> Iterator[str]:
    """What is wrong with the links of `text`, read as the file `path`."""
    where = path.relative_to(ROOT)
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        if target.startswith("/"):
            yield f"{where}: {target}: an absolute path (use a relative link)"
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            yield f"{where}: {target}: points outside the repository"
        elif path.is_relative_to(DOCS) and not resolved.is_relative_to(DOCS):
            yield f"{where}: {target}: leaves docs/ (the site has only docs/)"
        elif not resolved.exists():
            yield f"{where}: {target}: no such file"
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            yield f"{where}: {target}: no heading #{anchor} in {resolved.name}"


@pytest.mark.parametrize("path", CHECKED, ids=[str(p.relative_to(ROOT)) for p in CHECKED])
def test_links_resolve_inside_the_repository(path: Path) -> None:
    assert list(problems(path, path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("path", CHECKED, ids=[str(p.relative_to(ROOT)) for p in CHECKED])
def test_nothing_points_outside_the_repository(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [f"{n}: {line.strip()}" for n, line in enumerate(lines, 1) if FORBIDDEN.search(line)]
    assert found == []


def test_the_checker_finds_what_it_must() -> None:
    """The checks are not formalities: each kind of bad link is reported, code is not."""
    bad = (
        "[a](../shared/DESIGN.md) [b](/work/x.md) [c](missing.md) [d](../README.md) "
        "[e](#nope) [f](cluster.md#layout) `[g](skipped.md)`"
    )
    found = list(problems(DOCS / "index.md", bad))
    assert [f.split(": ")[1] for f in found] == [
        "../shared/DESIGN.md",
        "/work/x.md",
        "missing.md",
        "../README.md",
        "#nope",
    ]
    assert "leaves docs/" in found[0]
    (from_readme,) = problems(ROOT / "README.md", "[DESIGN](../shared/DESIGN.md)")
    assert from_readme.endswith("points outside the repository")
    assert FORBIDDEN.search("see DESIGN.md section 4")
    assert FORBIDDEN.search("(DESIGN 5b)")
    assert not FORBIDDEN.search("the design of the cache, in [How it works](design.md)")


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[2] == "```bash"
    assert lines[3].startswith("python3 dev.py serve ")
    assert lines[4].startswith("python3 dev.py test ")
