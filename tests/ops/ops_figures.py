"""Figures the ops tests measure (printed at the end of the run, written to build/ops-report.json)."""

from __future__ import annotations

from typing import Any

FIGURES: dict[str, Any] = {}


def record(name: str, **values: Any) -> None:
    FIGURES[name] = values
