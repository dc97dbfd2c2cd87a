"""The user documentation: README.md stays short, its links into docs/ resolve, and no page speaks of
how the project was built. Plain text checks (no jax)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
MAX_README_LINES = 250
# [text](target): the target up to the closing parenthesis, without a title.
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)")
SESSION_WORD = re.compile(r"\bsessions?\b", re.IGNORECASE)


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def relative_link_targets(text: str) -> list[str]:
    """Link targets that are paths in the repository (no scheme, no pure #anchor)."""
    targets = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_link_pattern_finds_relative_targets_and_skips_urls_and_anchors():
    text = (
        "See [results](docs/results.md#vae-configs), [jax](https://docs.jax.dev/), "
        '[top](#install) and [perf](<docs/performance.md> "title").'
    )
    assert relative_link_targets(text) == ["docs/results.md", "docs/performance.md"]


def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_keeps_the_test_command_ci_runs():
    ci_script = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    assert "python -m pytest -n 2" in ci_script.splitlines()
    assert "```\npython -m pytest -n 2\n```" in readme


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda page: page.name)
def test_no_page_mentions_sessions(page):
    hits = [
        f"{page.name}:{number}: {line.strip()}"
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if SESSION_WORD.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_readme_links_to_docs_resolve():
    targets = relative_link_targets(README.read_text(encoding="utf-8"))
    docs_targets = [target for target in targets if target.startswith("docs/")]
    assert docs_targets, "README.md links to no page under docs/"
    missing = [target for target in targets if not (REPO_ROOT / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_links_between_docs_pages_resolve(page):
    targets = relative_link_targets(page.read_text(encoding="utf-8"))
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"
