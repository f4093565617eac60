"""The package's import layers: a module may import its own layer and the layers below it, never one
above (docs/architecture.md draws them). Checked on the source with ``ast``, so lazy imports inside
functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "colorization"

# Bottom to top: the first names the root's own small modules; a top-level module or sub-package not
# listed fails the test. "video" may be absent (tolerated).
LAYERS: list[tuple[str, ...]] = [
    ("_version", "_lazy", "_extras"),
    ("color",),
    ("srgb8",),  # the fast 8-bit output of color's Lab (OpenCV)
    ("image_io",),
    ("data",),
    ("ingest",),  # building training sets (colorization data build): reads photos, no models
    ("models",),
    ("inference",),
    ("video",),
    ("evaluation",),
    ("train",),
    ("batch",),
    ("serve",),
    ("study",),
    ("commands",),
    ("cli",),
    ("__init__",),  # the package root: lazy re-exports of the public API, above everything
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The top-level module or sub-package a file of the package belongs to."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(tree: ast.AST) -> set[str]:
    """Top-level units of ``colorization`` that a module imports (``colorization`` alone: the root)."""
    units: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "colorization":
                # `from colorization import color` imports a unit; `... import Colorizer` the root
                units.update(a.name if a.name in RANK and a.name != "__init__" else "__init__" for a in node.names)
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "colorization":
                units.add(parts[1] if len(parts) > 1 else "__init__")
    return units


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "weights" not in p.relative_to(PACKAGE).parts)


def test_every_unit_is_in_a_layer():
    present = {_unit(p) for p in _sources()}
    assert present - set(RANK) == set(), "add the new module or package to LAYERS"
    assert {"models", "inference", "train", "serve", "commands"} <= present


def test_no_relative_imports():
    # the check below resolves absolute imports only; the package uses them throughout
    relative = [
        str(p)
        for p in _sources()
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(p.read_text())))
    ]
    assert relative == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward_only(path: Path):
    unit = _unit(path)
    upward = sorted(u for u in _imported_units(ast.parse(path.read_text())) if u != unit and RANK[u] > RANK[unit])
    assert upward == [], f"{path.relative_to(PACKAGE)} ({unit}) imports higher layers {upward}"


def test_the_checker_sees_an_upward_import():
    tree = ast.parse("from colorization import __version__\nfrom colorization.serve.serving import run_app\n")
    assert _imported_units(tree) == {"__init__", "serve"}


def _module_name(path: Path) -> str:
    parts = ("colorization", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _eager_imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Modules of the package imported when the module loads (top-level statements, not those under
    ``if TYPE_CHECKING:`` nor inside functions)."""
    return _imports(tree.body, known)


def _all_imports(tree: ast.Module, known: set[str]) -> set[str]:
    """Modules of the package a module imports anywhere: at load time or lazily inside functions
    (``if TYPE_CHECKING:`` blocks left out: they never run)."""
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for n in ast.walk(node)
    }
    return _imports([n for n in ast.walk(tree) if id(n) not in skipped], known)


def _imports(nodes: list[ast.AST], known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            )
    return found & known


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_no_import_cycles_between_modules():
    sources = {_module_name(p): p for p in _sources()}
    graph = {name: _eager_imports(ast.parse(p.read_text()), set(sources)) - {name} for name, p in sources.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycles_lazy_imports_included():
    # a lazy import inside a function that closes a circle still ties two modules together (issue #31:
    # batch.distributed and batch.video_chunks over STATE_DIR); a module's own package __init__ (which
    # names its API by importing the modules) is not counted as a dependency of the module
    sources = {_module_name(p): p for p in _sources()}
    graph = {
        name: {d for d in _all_imports(ast.parse(p.read_text()), set(sources)) if not name.startswith(d + ".")} - {name}
        for name, p in sources.items()
    }
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_lazy_cycle():
    a = ast.parse("def f():\n    from colorization.b import X\n")
    b = ast.parse("from colorization import a\n")
    known = {"colorization.a", "colorization.b"}
    graph = {"colorization.a": _all_imports(a, known), "colorization.b": _all_imports(b, known)}
    assert _find_cycle(graph) == ["colorization.a", "colorization.b", "colorization.a"]
    assert _find_cycle({"colorization.a": _eager_imports(a, known), "colorization.b": graph["colorization.b"]}) is None


def test_package_inits_name_their_api():
    # a sub-package's __init__ names its API (imports, lazy tables, constants, the module __getattr__
    # of lazy names); its code lives in modules
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        defined = [
            n.name for n in ast.parse(init.read_text()).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("__")
        ]
        assert defined == [], f"{init.relative_to(PACKAGE)} defines {defined}; move the code into a module"
