"""The repository's documents: links resolve inside the repository, generated pages are current."""

import re
from pathlib import Path

import pytest

from tools.config_docs import PAGE, render

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    "README.md",
    "CONTRIBUTING.md",
    *sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("docs/*.md")),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_resolves_inside_the_repository(document):
    source = REPO / document
    for target in LINK.findall(source.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        path = (source.parent / file).resolve() if file else source
        assert path.is_relative_to(REPO), f"{document}: {target} points outside the repository"
        assert path.exists(), f"{document}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text()), f"{document}: no heading for #{anchor} in {file}"


def test_readme_speaks_of_the_project_only():
    assert not re.search(r"\bsessions?\b", (REPO / "README.md").read_text(), flags=re.I)


def test_config_page_lists_every_key():
    assert PAGE.read_text() == render(), "docs/config.md is out of date: run `python -m tools.config_docs`"


def test_license_is_the_agpl_pyproject_names():
    assert 'license = { text = "AGPL-3.0-only" }' in (REPO / "pyproject.toml").read_text()
    text = (REPO / "LICENSE").read_text()
    assert (
        text.lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE")
        and "Version 3, 19 November 2007" in text
    )


def test_search_options_in_the_docs_are_those_of_search_help():
    """`edgepipe search` has no YAML section: the page lists what its --help lists, no more, no less."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    help_text = CliRunner().invoke(app, ["search", "--help"], terminal_width=200).output
    in_help = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text)) - {"--help"}
    section = PAGE.read_text().split("the options of `edgepipe search`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--[a-z][a-z0-9-]*)`", section))
    assert documented == in_help
    assert {"--precision", "--map-images"} <= documented and "`precisions`" not in section
