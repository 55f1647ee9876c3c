"""The house's one direction of imports (docs/architecture.md), checked on the source.

base → data / models / losses / attacks → clip, gfn, corruptions, analysis → eval, methods →
runs, report → engine → workflows → cli: a module may import its own layer and the layers below it,
never one above; and no import circle anywhere, between files or between the parts of the house
(``data`` ↔ ``models`` would be one even where no two files import each other). Lazy imports
inside functions count too.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robustune"

# Layer of each part: a top-level module or package, or a dotted prefix (the longest match wins).
LAYERS = {
    # base: errors, configs, registries, files, small helpers, torch.distributed
    "errors": 0, "registry": 0, "config": 0, "utils": 0, "files": 0, "distributed": 0, "resources": 0,
    "preemption": 0, "precision": 0, "tracking": 0,
    # the library's ground floor: data, models, losses, attacks
    "data": 1, "models": 1, "losses": 1, "attacks": 1,
    # built on it: CLIP, GFN's own pieces, corruptions, the analyses' functions
    "clip": 2, "gfn": 2, "corruptions": 2, "analysis": 2,
    # evaluation suites and training methods (neither knows the other)
    "eval": 3, "methods": 3,
    # runs (build, load, record, evaluate a run) and reports (read results.json files)
    "runs": 4, "report": 4,
    # the training loop
    "engine": 5,
    # workflows that train and evaluate many runs
    "demo": 6, "ablation": 6, "fewshot": 6, "analyze": 6, "reproduce": 6,
    # the command line
    "cli": 7,
}
SKIP = ("__init__", "__main__", "_version")


def layer_of(dotted: str) -> tuple[str, int]:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return key, LAYERS[key]
    raise KeyError(dotted)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) if parts else "__init__"


def robustune_imports(path: Path) -> list[str]:
    """Every ``robustune.X`` a file imports (names as ``module.name``), lazy imports included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustune."):
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "robustune":
            found += [f"robustune.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("robustune.")]
    return [f.removeprefix("robustune.") for f in found]


def imported_modules(path: Path) -> list[str]:
    """The ``robustune.X`` modules a file imports from (``from robustune.X import y``, ``import robustune.X``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustune."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("robustune.")]
    return [f.removeprefix("robustune.") for f in found]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The module an import reaches: ``a.b.c`` if that is a module, else ``a.b`` (a name in it)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in known:
            return name
    return None


def upward_imports() -> list[str]:
    bad = []
    for name, path in modules().items():
        if name in SKIP:
            continue
        src_key, src = layer_of(name)
        for target in robustune_imports(path):
            try:
                dst_key, dst = layer_of(target)
            except KeyError:
                continue  # robustune.__version__ and the like
            if dst > src:
                bad.append(f"{name} (layer {src_key}) imports robustune.{target} (layer {dst_key})")
    return bad


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target in robustune_imports(path):
            dst = resolve(target, known)
            if dst is not None and dst != name:
                graph[name].add(dst)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def file_circles() -> list[list[str]]:
    """Files that import each other in a loop (through package ``__init__`` files too)."""
    return circles(import_graph())


def part_of(name: str) -> str:
    return "robustune" if name in SKIP else layer_of(name)[0]


def part_circles() -> list[list[str]]:
    """Parts of the house (the keys of LAYERS) that import each other in a loop."""
    graph: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        if name in SKIP:
            continue
        src = part_of(name)
        graph.setdefault(src, set())
        graph[src] |= {part_of(t) for t in targets if t not in SKIP and part_of(t) != src}
    return circles(graph)


def test_every_module_has_a_layer():
    for name in modules():
        if name not in SKIP:
            layer_of(name)


def test_every_import_names_a_module_that_exists():
    """A module moved or renamed leaves no import of its old path behind (lazy ones included)."""
    known = modules()
    stale = [f"{name} imports robustune.{target}" for name, path in known.items()
             for target in imported_modules(path) if target not in known]
    assert stale == []


def test_imports_go_one_way():
    assert upward_imports() == []


def test_no_import_circles_between_files():
    assert file_circles() == []


def test_no_import_circles_between_parts():
    assert part_circles() == []


def _fake_package(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    fake = tmp_path / "robustune"
    for rel, text in files.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, {"models/bad.py": "def f():\n    from robustune.engine import train\n"})
    assert upward_imports() == ["models.bad (layer models) imports robustune.engine.train (layer engine)"]


def test_a_circle_between_files_is_caught(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, {
        "files.py": "from robustune.utils import helper\n",
        "utils.py": "def helper():\n    from robustune.files import write\n",
    })
    assert upward_imports() == []
    assert file_circles() == [["files", "utils"]]


def test_a_circle_through_a_package_init_is_caught(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, {
        "models/__init__.py": "from robustune.models.factory import create\n",
        "models/factory.py": "def create():\n    pass\n",
        "models/tiny.py": "from robustune.models import create\n",
    })
    assert file_circles() == []
    (PACKAGE / "models" / "__init__.py").write_text(
        "from robustune.models.factory import create\nfrom robustune.models import tiny\n")
    assert file_circles() == [["models", "models.tiny"]]


def test_a_circle_between_parts_of_one_layer_is_caught(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, {
        "data/a.py": "from robustune.models.b import g\n",
        "models/b.py": "def g():\n    pass\n",
        "models/c.py": "from robustune.data.x import h\n",
        "data/x.py": "def h():\n    pass\n",
    })
    assert upward_imports() == [] and file_circles() == []
    assert part_circles() == [["data", "models"]]


@pytest.mark.parametrize("lower", ["eval", "methods", "clip", "models", "data"])
def test_the_library_never_imports_the_engine_or_the_cli(lower):
    for name, path in modules().items():
        if name == lower or name.startswith(lower + "."):
            assert not [t for t in robustune_imports(path) if t.split(".")[0] in ("engine", "cli", "runs")], name
