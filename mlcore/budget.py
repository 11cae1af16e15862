"""One place that scales how much work a run does.

``MLCORE_BUDGET=smoke`` makes every notebook finish in about a minute on two CPU
cores (this is what CI runs); ``full`` is the paper's own recipe; ``cpu`` is what fits a
few hours on one CPU core (a shorter schedule of the same recipe, for methods that name
one; every other method runs its ``full`` recipe). Each record says which budget it ran.
"""
from __future__ import annotations

import os
from typing import Any

BUDGETS = ("smoke", "full", "cpu")


def current_budget(budget: str | None = None) -> str:
    """The budget to use: the argument, else ``MLCORE_BUDGET``, else ``smoke``."""
    b = budget or os.environ.get("MLCORE_BUDGET") or "smoke"
    if b not in BUDGETS:
        raise ValueError(f"budget {b!r} is not one of {BUDGETS}; set MLCORE_BUDGET=smoke, full or cpu")
    return b


def pick(budget: str | None = None, **options: Any) -> Any:
    """``pick(smoke=100, full=20000)`` returns the value for the current budget.

    ``cpu`` falls back to ``full`` where a method gives no ``cpu`` value: most recipes have
    no reason to differ on a CPU.
    """
    b = current_budget(budget)
    if b == "cpu" and "cpu" not in options:
        b = "full"
    if b not in options:
        raise ValueError(f"no value given for budget {b!r}; got {sorted(options)}")
    return options[b]
