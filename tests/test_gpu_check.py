"""benchmarks/gpu_check.py without a GPU, and the wheel list scripts/gpu_check.sh installs on one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ON_THE_MACHINE = {"torch", "torchvision", "timm"}  # the GPU machine's own builds are kept
# Imported only inside functions, behind an opt-in the GPU check never takes: not shipped there.
NOT_FOR_THE_GPU_CHECK = {
    "wandb": "train.report_to=wandb (robustune/tracking.py); the GPU machine has no network",
    "submitit": "reproduce --launcher slurm (robustune/reproduce/launch.py); no SLURM on the GPU machine",
}


def wheel_list() -> dict[str, str]:
    """import name → distribution==version, from scripts/gpu_wheels.txt."""
    out = {}
    for line in (ROOT / "scripts" / "gpu_wheels.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            spec, module = line.split()
            out[module] = spec
    return out


def third_party_imports() -> set[str]:
    """Top-level modules robustune imports (lazy imports inside functions included), stdlib excluded."""
    found = set()
    for path in (ROOT / "robustune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "robustune"}


def module_level_imports() -> set[str]:
    """Top-level modules robustune imports at module level (what ``import robustune.x`` needs)."""
    found = set()
    for path in (ROOT / "robustune").rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_the_wheel_list_covers_every_third_party_import():
    missing = sorted(third_party_imports() - ON_THE_MACHINE - set(NOT_FOR_THE_GPU_CHECK) - set(wheel_list()))
    assert not missing, f"add these to scripts/gpu_wheels.txt: {missing}"


def test_what_the_gpu_check_leaves_out_is_only_imported_lazily():
    eager = sorted(set(NOT_FOR_THE_GPU_CHECK) & module_level_imports())
    assert not eager, f"import these inside the function that needs them, or add them to scripts/gpu_wheels.txt: {eager}"


def test_the_wheel_list_pins_the_lock_versions():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            lock[name.lower().replace("_", "-")] = version
    from robustune.attacks.external import TORCHATTACKS_VERSION

    lock["torchattacks"] = TORCHATTACKS_VERSION  # installed --no-deps by make, outside the lock
    for spec in wheel_list().values():
        name, version = spec.split("==")
        assert lock.get(name.lower().replace("_", "-")) == version, spec


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_says_so_in_one_line_without_a_gpu():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
