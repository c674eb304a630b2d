"""One line of `claw doctor`'s checklist."""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class Check:
    name: str
    status: str  # "pass" | "warn" | "fail" | "skip" (could not be checked here; says how to check it)
    detail: str
    hint: str = ""


def worst(statuses: list[str]) -> str:
    """The status of a check made of several findings: fail over warn over pass."""
    for status in ("fail", "warn"):
        if status in statuses:
            return status
    return "pass"
