"""The house's one direction of imports (docs/architecture.md), checked on the source.

data → models → attacks/losses → methods → engine → eval → report → cli: a module may import its
own layer and the layers below it, never one above. Lazy imports inside functions count too.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robustune"

# Layer of each top-level module or package (a dotted prefix; the longest match wins). The
# orchestration modules sit above the library they drive.
LAYERS = {
    "errors": 0, "registry": 0, "config": 0, "utils": 0, "files": 0, "distributed": 0, "resources": 0,
    "tracking": 0,
    "data": 1, "corruptions": 1,
    "models": 2, "clip.build": 2, "clip.models": 2, "clip.prompted": 2, "clip.prompts": 2,
    "clip.templates": 2, "clip.tiny": 2, "clip.zeroshot": 2,
    "attacks": 3, "losses": 3, "gfn": 3, "analysis": 3,
    "methods": 4, "clip": 4, "clip.methods": 4,  # the clip package's __init__ registers its methods
    "engine": 5,
    "eval": 6, "fewshot": 6, "analysis.run": 6, "ablation": 6,
    "report": 7,
    "demo": 8, "cli": 9,
}
# Upward imports the architecture allows, each with its reason.
ALLOWED = {
    # validation during training reuses the evaluation's pure metric functions (top-1, COCO mAP)
    ("engine", "eval.clean"), ("engine", "eval.detection"),
}


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
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("robustune."):
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "robustune":
            found += [f"robustune.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("robustune.")]
    return [f.removeprefix("robustune.") for f in found]


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name in ("__init__", "__main__", "_version"):
            continue
        src_key, src = layer_of(name)
        for target in robustune_imports(path):
            try:
                dst_key, dst = layer_of(target)
            except KeyError:
                continue  # robustune.__version__ and the like
            allowed = any(src_key == a and (target + ".").startswith(b + ".") for a, b in ALLOWED)
            if dst > src and not allowed:
                bad.append(f"{name} (layer {src_key}) imports robustune.{target} (layer {dst_key})")
    return bad


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name not in ("__init__", "__main__", "_version"):
            layer_of(name)


def test_imports_go_one_way():
    assert upward_imports() == []


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    fake = tmp_path / "robustune"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text("def f():\n    from robustune.engine import train\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert upward_imports() == ["models.bad (layer models) imports robustune.engine.train (layer engine)"]
