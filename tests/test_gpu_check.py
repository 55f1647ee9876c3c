"""benchmarks/gpu_check.py without a GPU, and the wheel list scripts/gpu_check.sh installs on one."""

from __future__ import annotations

import ast
import json
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
            spec, module = line.split()[:2]
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


def test_the_on_device_marks_are_the_only_third_column():
    for line in (ROOT / "scripts" / "gpu_wheels.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split()
            assert len(fields) in (2, 3) and fields[2:] in ([], ["on-device"]), line


def test_a_missing_wheel_stops_the_script_in_one_line_naming_the_fix(tmp_path):
    # a python with no robustune dependencies at all: every module is missing, no wheel is there
    fake = tmp_path / "python3"
    fake.write_text("#!/usr/bin/env bash\nexit 1\n")
    fake.chmod(0o755)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake),
                                                    "WHEELS": str(tmp_path / "none"), "OUT": str(tmp_path / "out")})
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "no wheel for" in err[0] and "--download" in err[0]


def _load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


def test_a_failing_measurement_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    gc = _load_gpu_check()
    figures = {"s_per_step": 0.5, "images_per_s": 4.0, "batch": 2, "peak_gib": None, "precision": "fp32", "steps": 1}

    def broken(*_):
        raise RuntimeError("CUDA out of memory (planted)")

    monkeypatch.setattr(gc, "preset_gfn", broken)
    monkeypatch.setattr(gc, "preset_clip", lambda *_: dict(figures))
    monkeypatch.setattr(gc, "preset_det", lambda *_: dict(figures))
    out = tmp_path / "gpu_check.json"
    rc = gc.main(["--smoke", "--sections", "presets", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc == 1 and r["failed"] == ["presets.gfn_vit_b16_imagenet"]
    assert "planted" in r["presets"]["gfn_vit_b16_imagenet"]["error"]
    assert r["presets"]["det_gfn_vit_b16_coco"]["images_per_s"] == 4.0
    # the projection of a failed preset is left out, the others are computed from their rates
    assert "gfn_imagenet_finetune" not in r["projections"]
    assert r["projections"]["gfn_det_coco"]["hours"] == pytest.approx(117_266 * 12 / 4.0 / 3600)
    assert "corruptions" not in r and "pgd" not in r


def test_unknown_sections_are_refused_in_one_line(capsys):
    gc = _load_gpu_check()
    with pytest.raises(SystemExit):
        gc.main(["--smoke", "--sections", "presets,pdg"])
    assert "unknown section(s) pdg" in capsys.readouterr().err
