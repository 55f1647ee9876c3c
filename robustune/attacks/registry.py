"""The attack registry: ``create_attack(name, model, eps=..., **kwargs)``."""

from __future__ import annotations

from typing import Any

from robustune.registry import Registry

ATTACKS: Registry[type] = Registry("attack")
register_attack = ATTACKS.register


def create_attack(name: str, model, eps: float, **kwargs: Any):
    return ATTACKS.get(name)(model, eps=eps, **kwargs)


def list_attacks(pattern: str = "*") -> list[str]:
    return ATTACKS.list(pattern)
