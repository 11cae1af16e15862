"""One place that scales how much work a run does.

``MLCORE_BUDGET=smoke`` makes every notebook finish in about a minute on two CPU
cores (this is what CI runs); ``full`` is what produced ``results/``. Every method
declares its two budgets in one table here, so the chapters, the CLI and
``reproduce`` agree on what "full" means.
"""
from __future__ import annotations

import os
from typing import Any

BUDGETS = ("smoke", "full")


def current_budget(budget: str | None = None) -> str:
    """The budget to use: the argument, else ``MLCORE_BUDGET``, else ``smoke``."""
    b = budget or os.environ.get("MLCORE_BUDGET") or "smoke"
    if b not in BUDGETS:
        raise ValueError(f"budget {b!r} is not one of {BUDGETS}; set MLCORE_BUDGET=smoke or full")
    return b


def pick(budget: str | None = None, **options: Any) -> Any:
    """``pick(smoke=100, full=20000)`` returns the value for the current budget."""
    b = current_budget(budget)
    if b not in options:
        raise ValueError(f"no value given for budget {b!r}; got {sorted(options)}")
    return options[b]
