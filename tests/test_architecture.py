"""Architecture rules of ``mlcak_lib`` (the acceptance of the module restructuring).

Everything here reads source text with :mod:`ast`; no submodule of the package is imported except
the variant registry (test 4), so a broken module cannot hide a rule violation.

1. No import cycles between the package's modules (imports anywhere in a file count).
2. Imports of package modules sit at the top of a module, unless a comment says why not.
3. No module is longer than :data:`MAX_MODULE_LINES` lines.
4. The variant names are listed once, in the registry (``mlcak_lib/variants.py``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import json
import re
import tokenize
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

PACKAGE = "mlcak_lib"
REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 450
#: A comment with one of these words (case-insensitive) allows a package import inside a function.
LAZY_IMPORT_MARKERS = ("optional", "heavy", "lazy:")
#: The course's variants; the registry may hold more, never fewer (a sanity check of the read).
KNOWN_VARIANTS = ("baseline", "output-kd", "attention-kd", "mlcak", "hinton-kd", "multitask", "mlcak-mt")
#: Variant names that are also common words: a literal holding only these lists nothing.
COMMON_WORD_VARIANTS = frozenset({"baseline", "teacher"})


# --------------------------------------------------------------------------------------------
# Finding the sources
# --------------------------------------------------------------------------------------------


def package_dir(name: str = PACKAGE) -> Path:
    """The folder of package ``name``, found without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"package {name!r} not found"
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def python_files(folder: Path) -> list[Path]:
    """Every ``.py`` file under ``folder`` (recursively), skipping caches and hidden folders."""
    return sorted(
        p for p in folder.rglob("*.py")
        if not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(folder).parts)
    )


def module_name(path: Path, pkg_dir: Path, pkg_name: str) -> str:
    """The dotted name of a file of the package; a package's ``__init__.py`` is named as the package."""
    parts = list(path.relative_to(pkg_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([pkg_name, *parts])


def rel(path: Path) -> str:
    """``path`` relative to the repository (for messages), else as it is."""
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------------------------
# The import graph
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEdge:
    """One explicit import of a package module ``target`` written in module ``source``."""

    source: str
    target: str
    path: Path
    line: int
    end_line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"


class _ImportVisitor(ast.NodeVisitor):
    """Collects every ``import`` / ``from ... import`` statement with whether it sits in a function.

    Imports under ``if TYPE_CHECKING:`` never run, so they are left out (they are the usual way to
    type-annotate across modules without an import cycle).
    """

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self._function_depth = 0

    def _visit_function(self, node: ast.AST) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        if name == "TYPE_CHECKING":
            for child in node.orelse:  # only the ``else`` branch runs
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._function_depth > 0))

    visit_ImportFrom = visit_Import


class ImportGraph:
    """The modules of one package (nodes: dotted names, a package by its ``__init__``) and the
    explicit imports between them (edges, with file and line).

    Resolution rules:

    * ``import P.a.b`` is an edge to ``P.a.b`` (Python runs ``P`` and ``P.a`` too, but implicitly).
    * ``from M import x, y``: an edge to each of ``M.x``, ``M.y`` that is a module; an edge to ``M``
      itself unless ``M`` is a package enclosing the importer (that one runs implicitly anyway) and
      every name is a submodule. So ``from .pkg import name`` reaches ``pkg/__init__.py`` (and
      ``pkg/name.py`` if that exists), while ``from . import sibling`` reaches only the sibling.
    * Relative imports resolve against the importer's package (``..`` climbs one package more).
    """

    def __init__(self, pkg_dir: Path, pkg_name: str) -> None:
        self.pkg_dir = Path(pkg_dir)
        self.pkg_name = pkg_name
        self.files: dict[str, Path] = {
            module_name(p, self.pkg_dir, pkg_name): p for p in python_files(self.pkg_dir)
        }
        self.edges: list[ImportEdge] = []
        for name, path in self.files.items():
            self.edges.extend(self._edges_of(name, path))

    def is_module(self, dotted: str) -> bool:
        """Whether ``dotted`` names a module file or a regular package of this package."""
        return dotted in self.files

    def _package_of(self, module: str) -> str:
        """The package a module's relative imports resolve against."""
        is_init = self.files[module].name == "__init__.py"
        return module if is_init else module.rpartition(".")[0]

    def _resolve_from(self, module: str, node: ast.ImportFrom) -> str | None:
        """The absolute module named by ``from ... import``; ``None`` for other packages."""
        if node.level == 0:
            base = node.module or ""
        else:
            parts = self._package_of(module).split(".")
            if node.level - 1 >= len(parts):
                return None  # climbs above the top package
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        in_package = base == self.pkg_name or base.startswith(self.pkg_name + ".")
        return base if in_package else None

    def _targets(self, module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        """The package modules one import statement reaches explicitly."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if self.is_module(alias.name):
                    yield alias.name
            return
        base = self._resolve_from(module, node)
        if base is None:
            return
        submodules = [f"{base}.{a.name}" for a in node.names if self.is_module(f"{base}.{a.name}")]
        encloses_importer = module == base or module.startswith(base + ".")
        if self.is_module(base) and (not encloses_importer or len(submodules) < len(node.names)):
            yield base
        yield from submodules

    def _edges_of(self, module: str, path: Path) -> Iterator[ImportEdge]:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visitor = _ImportVisitor()
        visitor.visit(tree)
        for node, in_function in visitor.found:
            for target in dict.fromkeys(self._targets(module, node)):
                if target != module:
                    yield ImportEdge(module, target, path, node.lineno, node.end_lineno or node.lineno, in_function)

    # ---- cycles --------------------------------------------------------------------------

    def adjacency(self) -> dict[str, set[str]]:
        adj: dict[str, set[str]] = {name: set() for name in self.files}
        for e in self.edges:
            adj[e.source].add(e.target)
        return adj

    def strongly_connected_components(self) -> list[list[str]]:
        """The strongly connected components with more than one module (iterative Tarjan)."""
        adj = {k: sorted(v) for k, v in self.adjacency().items()}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        components: list[list[str]] = []
        for root in sorted(adj):
            if root in index:
                continue
            work = [(root, iter(adj[root]))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is None:
                    work.pop()
                    if work:
                        low[work[-1][0]] = min(low[work[-1][0]], low[node])
                    if low[node] == index[node]:
                        component = []
                        while True:
                            member = stack.pop()
                            on_stack.discard(member)
                            component.append(member)
                            if member == node:
                                break
                        if len(component) > 1:
                            components.append(sorted(component))
                elif child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adj[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
        return sorted(components)

    def cycles(self) -> list[list[str]]:
        """For every import edge inside a cycle, the shortest cycle through it (deduplicated).

        Each returned cycle is a list of modules ``[a, b, ..., a]``; together they cover every
        edge of every strongly connected component, so each place one could cut appears.
        """
        adj = self.adjacency()
        found: dict[tuple[str, ...], list[str]] = {}
        for component in self.strongly_connected_components():
            members = set(component)
            for source in component:
                for target in sorted(adj[source] & members):
                    path = _shortest_path(adj, target, source, members)
                    cycle = [source, *path]  # path runs target -> ... -> source
                    key = _canonical(cycle[:-1])
                    found.setdefault(key, [*key, key[0]])
        return sorted(found.values(), key=lambda c: (len(c), c))

    def edge_locations(self, source: str, target: str) -> list[str]:
        """``file:line`` of every import statement of ``target`` in ``source``."""
        return [e.where for e in self.edges if e.source == source and e.target == target]

    def describe_cycle(self, cycle: list[str]) -> str:
        """``a -> b -> a`` and, below it, where each edge is written."""
        lines = [" -> ".join(cycle)]
        for source, target in zip(cycle, cycle[1:]):
            lines.append(f"    {source} -> {target}: {', '.join(self.edge_locations(source, target))}")
        return "\n".join(lines)


def _shortest_path(adj: dict[str, set[str]], start: str, goal: str, allowed: set[str]) -> list[str]:
    """The shortest path ``start -> ... -> goal`` inside ``allowed`` (breadth first)."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for nxt in sorted(adj[node] & allowed):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    assert goal in previous, f"{goal} not reachable from {start} inside its component"
    path = [goal]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path[::-1]


def _canonical(cycle: list[str]) -> tuple[str, ...]:
    """A cycle (without the repeated first node) rotated to start at its smallest module."""
    i = cycle.index(min(cycle))
    return tuple(cycle[i:] + cycle[:i])


# --------------------------------------------------------------------------------------------
# Comments (for the lazy-import exemption)
# --------------------------------------------------------------------------------------------


def comments_by_line(source: str) -> tuple[dict[int, str], set[int]]:
    """The comment text on each line, and the lines that hold nothing but a comment."""
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    ignorable = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                 tokenize.ENDMARKER, tokenize.ENCODING}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
        elif tok.type not in ignorable:
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return comments, {line for line in comments if line not in code_lines}


def has_lazy_reason(comment: str) -> bool:
    """Whether a comment explains a function-level import (see :data:`LAZY_IMPORT_MARKERS`)."""
    return any(marker in comment.lower() for marker in LAZY_IMPORT_MARKERS)


def unexplained_function_imports(graph: ImportGraph) -> list[ImportEdge]:
    """Function-level imports of package modules without an explaining comment.

    The comment may sit on any line of the import statement, or alone on the line just before it
    (a trailing comment on the previous line explains that line, not this one).
    """
    cache: dict[Path, tuple[dict[int, str], set[int]]] = {}
    bad: dict[tuple[Path, int], ImportEdge] = {}
    for edge in graph.edges:
        if not edge.in_function:
            continue
        if edge.path not in cache:
            cache[edge.path] = comments_by_line(edge.path.read_text(encoding="utf-8"))
        comments, own_line = cache[edge.path]
        on_statement = any(has_lazy_reason(comments.get(n, "")) for n in range(edge.line, edge.end_line + 1))
        before = edge.line - 1 in own_line and has_lazy_reason(comments[edge.line - 1])
        if not (on_statement or before):
            bad.setdefault((edge.path, edge.line), edge)
    return sorted(bad.values(), key=lambda e: (rel(e.path), e.line))


# --------------------------------------------------------------------------------------------
# Variant-name literals
# --------------------------------------------------------------------------------------------


def variant_literals(tree: ast.AST, names: frozenset[str], source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each list/tuple/set/dict literal that lists variant names.

    A literal lists them when its elements (or a dict's keys) hold at least two distinct variant
    names, one of which is not a common word (``baseline``, ``teacher``).
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        hits = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)} & names
        if len(hits) >= 2 and hits - COMMON_WORD_VARIANTS:
            text = ast.get_source_segment(source, node) or ast.unparse(node)
            text = " ".join(text.split())
            found.append((node.lineno, text if len(text) <= 120 else text[:117] + "..."))
    return sorted(found)


_MAGIC = re.compile(r"^(\s*)[!%]")


def notebook_code_cells(path: Path) -> Iterator[tuple[int, str]]:
    """``(cell index, Python source)`` of each code cell, IPython ``!``/``%`` lines made ``pass``."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        yield index, "\n".join(_MAGIC.sub(r"\1pass  # ", line) if _MAGIC.match(line) else line
                               for line in src.splitlines())


def load_variant_names() -> frozenset[str]:
    """The registry's variant names: ``mlcak_lib.variants`` once it exists, else ``mlcak_lib.distill``."""
    try:
        module = importlib.import_module(f"{PACKAGE}.variants")
    except ModuleNotFoundError as err:
        if err.name != f"{PACKAGE}.variants":
            raise
        module = pytest.importorskip(f"{PACKAGE}.distill")
    names = getattr(module, "VARIANT_NAMES", None)
    assert names is not None, f"{module.__name__} has no VARIANT_NAMES"
    missing = set(KNOWN_VARIANTS) - set(names)
    assert not missing, f"{module.__name__}.VARIANT_NAMES lacks {sorted(missing)}"
    return frozenset(names)


def sources_listing_variants(names: frozenset[str]) -> list[str]:
    """Every variant-listing literal outside the registry, as ``where: literal``."""
    pkg = package_dir()
    registry = pkg / "variants.py"
    found: list[str] = []
    files = [p for p in python_files(pkg) if p != registry]
    if (REPO_ROOT / "scripts").is_dir():
        files += python_files(REPO_ROOT / "scripts")
    for path in files:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        found += [f"{rel(path)}:{line}: {text}" for line, text in variant_literals(tree, names, source)]
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        for index, source in notebook_code_cells(path):
            try:
                tree = ast.parse(source)
            except SyntaxError as err:
                found.append(f"{rel(path)}: cell {index}: cannot parse ({err.msg}, line {err.lineno})")
                continue
            found += [f"{rel(path)}: cell {index}, line {line}: {text}"
                      for line, text in variant_literals(tree, names, source)]
    return found


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph(package_dir(), PACKAGE)


def test_no_import_cycles(graph):
    cycles = graph.cycles()
    components = graph.strongly_connected_components()
    assert not cycles, (
        f"{len(components)} group(s) of {PACKAGE} modules import each other "
        f"({'; '.join(', '.join(c) for c in components)}).\n"
        f"Shortest cycle through each import edge involved (cut one edge of each):\n"
        + "\n".join(graph.describe_cycle(c) for c in cycles)
    )


def test_package_imports_at_module_top(graph):
    bad = unexplained_function_imports(graph)
    assert not bad, (
        f"{len(bad)} import(s) of {PACKAGE} modules inside functions; move them to the top of the module, "
        f"or say why on the line (or the line above) with a comment containing one of "
        f"{', '.join(repr(m) for m in LAZY_IMPORT_MARKERS)}:\n"
        + "\n".join(f"  {e.where}: {e.source} imports {e.target}" for e in bad)
    )


def test_module_size():
    pkg = package_dir()
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in python_files(pkg)}
    too_long = {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(
        f"  {rel(p)}: {n} lines" for p, n in sorted(too_long.items(), key=lambda kv: -kv[1])
    )


def test_variant_names_listed_only_in_registry():
    names = load_variant_names()
    found = sources_listing_variants(names)
    assert not found, (
        f"{len(found)} literal(s) list variant names outside {PACKAGE}/variants.py; "
        f"take them from the registry (VARIANT_NAMES and its groups) instead:\n"
        + "\n".join(f"  {f}" for f in found)
    )


# --------------------------------------------------------------------------------------------
# Self-tests of the checkers, on small fake sources
# --------------------------------------------------------------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root`` and return ``root``."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def test_graph_finds_cycle_hidden_in_function(tmp_path):
    pkg = _write_package(tmp_path / "fakepkg", {
        "__init__.py": "",
        "a.py": "from .b import helper\n",
        "b.py": "import os\n\ndef helper():\n    from .a import thing  # a cycle at call time\n    return thing\n",
        "c.py": "from . import a\n",
    })
    g = ImportGraph(pkg, "fakepkg")
    assert g.strongly_connected_components() == [["fakepkg.a", "fakepkg.b"]]
    assert g.cycles() == [["fakepkg.a", "fakepkg.b", "fakepkg.a"]]
    text = g.describe_cycle(g.cycles()[0])
    assert "fakepkg/a.py:1" in text and "fakepkg/b.py:4" in text
    assert [e.where.rsplit("/", 1)[-1] for e in unexplained_function_imports(g)] == ["b.py:4"]


def test_graph_resolves_every_import_form(tmp_path):
    pkg = _write_package(tmp_path / "fakepkg", {
        "__init__.py": "__version__ = '1'\n",
        "base.py": "import json\n",
        "top.py": "import fakepkg.sub.leaf as leaf\nfrom fakepkg import base\nfrom . import __version__\n",
        "user.py": "from .sub import other\n",
        "sub/__init__.py": "from .leaf import f\nfrom . import other\n",
        "sub/leaf.py": "from ..base import json\ntry:\n    from .. import base, top\nexcept ImportError:\n    pass\n",
        "sub/other.py": (
            "class K:\n    def m(self):\n        from fakepkg.sub import leaf  # heavy: only for m\n"
            "\n\ndef g():\n    # lazy: keeps sub light\n    from .. import base\n"
        ),
    })
    g = ImportGraph(pkg, "fakepkg")
    edges = {(e.source, e.target) for e in g.edges}
    assert edges == {
        ("fakepkg.top", "fakepkg.sub.leaf"),  # parents run implicitly, not edges
        ("fakepkg.top", "fakepkg.base"),
        ("fakepkg.top", "fakepkg"),  # a name that is no submodule: the __init__
        ("fakepkg.sub", "fakepkg.sub.leaf"),
        ("fakepkg.sub", "fakepkg.sub.other"),
        ("fakepkg.sub.leaf", "fakepkg.base"),
        ("fakepkg.sub.leaf", "fakepkg.top"),  # in a try block
        ("fakepkg.user", "fakepkg.sub"),  # from .pkg import submodule: the __init__ and the submodule
        ("fakepkg.user", "fakepkg.sub.other"),
        ("fakepkg.sub.other", "fakepkg.sub.leaf"),
        ("fakepkg.sub.other", "fakepkg.base"),
    }
    assert g.cycles() == [["fakepkg.sub.leaf", "fakepkg.top", "fakepkg.sub.leaf"]]
    assert unexplained_function_imports(g) == []  # both function imports say why


def test_graph_of_acyclic_package_has_no_cycles(tmp_path):
    pkg = _write_package(tmp_path / "fakepkg", {
        "__init__.py": "from .a import x\nfrom .b import y\n",
        "a.py": "x = 1\n",
        "b.py": "from .a import x\n\ndef y():\n    from . import a  # optional: demo\n    return a.x\n",
    })
    g = ImportGraph(pkg, "fakepkg")
    assert g.strongly_connected_components() == [] and g.cycles() == []
    assert unexplained_function_imports(g) == []


@pytest.mark.parametrize(("code", "listed"), [
    ("train_student('multitask', 28)", False),
    ("x = ('baseline', 'teacher')", False),
    ("if v in ('multitask', 'mlcak-mt'): pass", True),
    ("d = {'baseline': 1, 'mlcak': 2}", True),
    ("s = {'baseline', 'mlcak', 'other'}", True),
    ("f(['mlcak'], ['output-kd'])", False),
])
def test_variant_literal_detector(code, listed):
    names = frozenset(KNOWN_VARIANTS)
    assert bool(variant_literals(ast.parse(code), names, code)) is listed


def test_notebook_magics_are_neutralized(tmp_path):
    nb = tmp_path / "n.ipynb"
    lines = ["if True:\n", "    !pip install x\n", "    %cd y\n", "V = ['mlcak', 'multitask']\n"]
    cell = {"cell_type": "code", "source": lines}
    nb.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": "x"}, cell]}), encoding="utf-8")
    (index, source), = notebook_code_cells(nb)
    assert index == 1
    assert variant_literals(ast.parse(source), frozenset(KNOWN_VARIANTS), source) == [(4, "['mlcak', 'multitask']")]
