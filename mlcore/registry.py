"""Where methods and reproductions are found.

Each family package (``mlcore.memory``, ``mlcore.metric``, ``mlcore.optimization``,
``mlcore.rl``, ...) declares two plain dicts in its ``__init__``:

* ``LEARNERS``: method name -> ``"module:Class"`` (a learner with ``from_config``);
* ``REPRODUCTIONS``: record name -> spec. A spec is either
  ``{"method": m, "ways": N, "shots": K}`` (trained and scored by :func:`mlcore.runs.train_and_record`)
  or ``{"fn": "module:function", ...kwargs}`` called as ``fn(budget=..., seed=..., out_dir=..., **kwargs)``
  and returning the paths of the records it wrote. A ``fn`` spec whose records have other names than the
  reproduction lists them under ``"records"`` (so a record can name the command that regenerates it).

Nothing heavy is imported until a method is asked for.
"""
from __future__ import annotations

import importlib

FAMILIES = ("mlcore.memory", "mlcore.metric", "mlcore.optimization", "mlcore.rl", "mlcore.baselines")


def _family_dicts(attr: str) -> dict:
    out: dict = {}
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(fam)
        except ModuleNotFoundError as e:
            if e.name == fam:
                continue
            raise
        out.update(getattr(mod, attr, {}))
    return out


def learners() -> dict[str, str]:
    return _family_dicts("LEARNERS")


def reproductions() -> dict[str, dict]:
    return _family_dicts("REPRODUCTIONS")


def reproduction_for(record_name: str) -> str | None:
    """The name ``python -m mlcore reproduce --only NAME`` takes to regenerate ``record_name`` (None if none does)."""
    table = reproductions()
    if record_name in table:
        return record_name
    return next((name for name, spec in table.items() if record_name in spec.get("records", ())), None)


def eval_fn_for(record_name: str, method: str) -> str | None:
    """The ``"module:function"`` that re-scores a record which is not a few-shot classifier (None for one that is).

    Reproductions of such methods (RL², the task-retrieval study, ...) name it as ``eval_fn``; a record
    trained outside the table (a renamed or retrained copy) is matched by its method.
    """
    table = reproductions()
    own = table.get(record_name, {}).get("eval_fn")
    if own:
        return own
    return next((spec["eval_fn"] for spec in table.values()
                 if spec.get("method") == method and spec.get("eval_fn")), None)


def resolve(target: str):
    """Import ``"module:attr"``."""
    mod, _, attr = target.partition(":")
    return getattr(importlib.import_module(mod), attr)


def learner_class(method: str):
    table = learners()
    if method not in table:
        raise ValueError(f"unknown method {method!r}; available: {sorted(table)}")
    return resolve(table[method])
