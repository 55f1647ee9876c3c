"""The precision policy shared by training and evaluation: ``fp32 | bf16 | fp16 | auto``.

- ``auto`` is bf16 on a CUDA device that supports it, else fp32 (ours; on a CPU bf16 autocast is
  correct but rarely faster).
- Forward-only work (clean accuracy, corrupted cells, ImageNet-A/R/P, detection mAP) runs under
  ``torch.autocast`` in the policy's dtype.
- Attacks in evaluation run their gradient steps outside autocast, in fp32; under a reduced policy
  TF32 matmuls are allowed there (``torch.set_float32_matmul_precision("high")``, restored after),
  and every point an attack leaves correct is re-checked by an fp32 forward before it counts
  (:func:`robustune.eval.robust.attack_outcomes`), so a reduced-precision forward can only lower,
  never raise, a robust accuracy.
- Training: the whole step (inner attack included) runs under autocast. fp16 is refused for a
  method with an inner attack: the GradScaler scales only the outer loss, so the attack's input
  gradient can underflow to 0 and ``sign(0) = 0`` silently weakens the attack; bf16 has fp32's
  exponent range and needs no scaling (:func:`check_inner_attack_precision`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision that is unknown, or unsafe for the method it would train."""


def resolve_precision(name: str, device: torch.device | str) -> str:
    """``auto`` → bf16 on a CUDA device with bf16 support, else fp32; others are checked and returned."""
    if name not in PRECISIONS:
        raise PrecisionError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast in the policy's dtype for forward-only work; a no-op for fp32."""
    dtype = _DTYPES.get(precision)
    if dtype is None:
        if precision not in ("fp32",):
            raise PrecisionError(f"resolve precision {precision!r} first (fp32, bf16 or fp16 here)")
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def _fp32_without_autocast(matmul_precision: str | None) -> Iterator[None]:
    """Autocast off on every device; fp32 matmul precision set for the block (None: unchanged)."""
    before = torch.get_float32_matmul_precision()
    if matmul_precision is not None:
        torch.set_float32_matmul_precision(matmul_precision)
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(before)


def fp32_gradients(precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast off (an attack's gradient steps in fp32); TF32 matmuls allowed under a reduced policy."""
    return _fp32_without_autocast(None if precision == "fp32" else "high")


def strict_fp32() -> contextlib.AbstractContextManager[None]:
    """Autocast off and full-precision fp32 matmuls (no TF32): the re-check that decides a point."""
    return _fp32_without_autocast("highest")


def correct_rechecked(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> torch.Tensor:
    """Per-sample ``argmax == y`` under the policy; under a reduced one, the correct points re-checked in fp32.

    A point counts only if both the reduced-precision and the fp32 forward classify it correctly, so
    a reduced policy can lower a robust accuracy (by the points bf16 alone misclassifies), never raise it.
    """
    with torch.no_grad():
        with autocast(precision, x.device):
            ok = model(x).argmax(1) == y
        if precision != "fp32" and bool(ok.any()):
            idx = ok.nonzero().squeeze(1)
            with strict_fp32():
                ok[idx] = model(x[idx]).argmax(1) == y[idx]
    return ok


def check_inner_attack_precision(precision: str, method_name: str, has_inner_attack: bool) -> None:
    """Refuse fp16 training for a method whose step runs an attack (its input gradient is not scaled)."""
    if precision == "fp16" and has_inner_attack:
        raise PrecisionError(
            f"train.precision fp16 is refused for {method_name!r}: its training step runs an inner attack "
            "whose input gradient the GradScaler does not scale, so it can underflow to 0 and sign(0) = 0 "
            "silently weakens the attack. Use train.precision=bf16 (fp32's exponent range, no scaling) "
            "or fp32")
