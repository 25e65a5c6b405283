"""Every documentation path a user is sent to exists (issue 15: the folder adapter's errors said "see
docs/own_data.md", a file that did not exist).

Scanned: every ``.py`` file of ``mlcak_lib`` (error messages, help texts, docstrings) and the markdown pages
(README, CONTRIBUTING, ``docs/*.md``) for ``docs/<file>`` paths and ``README.md#anchor``-style references,
plus the markdown pages' relative links ``[text](path#anchor)``. Each path must exist in the repository and
each anchor must be a heading of its page (GitHub's anchor rule).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: ``docs/own_data.md``, ``docs/gallery.png``, ``README.md#use-your-own-data``, ``docs/own_data.md#errors-and-what-to-do``
DOC_REF = re.compile(r"(?<![\w/.-])(docs/[\w./-]*\w\.\w+|README\.md|CONTRIBUTING\.md)(#[\w-]+)?")
#: markdown links to files of the repository (not web addresses, not mail)
MD_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]*)\)")


def markdown_pages() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def sources() -> list[Path]:
    return sorted((REPO / "mlcak_lib").rglob("*.py")) + markdown_pages()


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out: set[str] = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base, k = slug(m.group(1)), 0
            while (base if k == 0 else f"{base}-{k}") in out:  # repeated headings get -1, -2 ...
                k += 1
            out.add(base if k == 0 else f"{base}-{k}")
    return out


def check_target(target: str, anchor: str | None, relative_to: Path = REPO) -> str | None:
    """Why ``target`` (+ ``#anchor``) does not resolve, or None when it does."""
    path = (relative_to / target).resolve() if target else None
    if path is not None and not path.exists():
        return f"{target} does not exist"
    page = path if path is not None else None
    if anchor and page is not None and page.suffix == ".md" and anchor.lstrip("#") not in anchors(page):
        return f"{target}{anchor}: no such heading in {page.name}"
    return None


def broken_doc_refs(text: str) -> list[str]:
    """Doc paths and anchors named in ``text`` (``docs/...``, ``README.md#...``) that do not resolve."""
    found = (check_target(m.group(1), m.group(2)) for m in DOC_REF.finditer(text))
    return [f for f in found if f]


def broken_md_links(page: Path) -> list[str]:
    """Relative links ``[text](target#anchor)`` of a markdown page that do not resolve (from the page's folder)."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
    problems = []
    for m in MD_LINK.finditer(text):
        target, _, anchor = m.group(1).partition("#")
        if not target:  # an anchor on the same page
            problem = None if anchor in anchors(page) else f"#{anchor}: no such heading in {page.name}"
        else:
            problem = check_target(target, f"#{anchor}" if anchor else None, page.parent)
        if problem:
            problems.append(problem)
    return problems


def test_every_doc_path_in_the_sources_exists():
    problems = [f"{src.relative_to(REPO)}: {p}" for src in sources() for p in broken_doc_refs(src.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_the_folder_adapter_points_at_the_own_data_guide():
    from mlcak_lib.realdata import folder

    assert "docs/own_data.md" in folder.HOW_TO_GET and (REPO / "docs" / "own_data.md").is_file()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/own_data.md" in readme  # the README's "Use your own data" links the guide


def test_every_relative_link_of_the_markdown_pages_resolves():
    problems = [f"{page.relative_to(REPO)}: {p}" for page in markdown_pages() for p in broken_md_links(page)]
    assert not problems, "\n".join(problems)


def test_the_scanner_catches_a_missing_doc(tmp_path):
    """The checks above would pass vacuously with a scanner that finds nothing: it must flag these."""
    message = ("Make a folder with a labels.csv; see docs/no_such_guide.md, docs/own_data.md#no-such-section "
               "or README.md#nowhere.")
    assert broken_doc_refs(message) == ["docs/no_such_guide.md does not exist",
                                        "docs/own_data.md#no-such-section: no such heading in own_data.md",
                                        "README.md#nowhere: no such heading in README.md"]
    assert broken_doc_refs("see docs/own_data.md and README.md#use-your-own-data") == []
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A `code` heading: yes\n\n[a](missing.md) [b](#a-code-heading-yes) [c](#gone) "
                    "[d](https://example.org/x.md)\n", encoding="utf-8")
    assert broken_md_links(page) == ["missing.md does not exist", "#gone: no such heading in page.md"]
