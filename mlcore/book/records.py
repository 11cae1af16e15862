"""Reading the committed records and benchmark files the chapters print, the same way in every chapter.

A chapter asks for a full-budget record by name and gets ``None`` (with one line saying so) while the run that
writes it has not been made::

    from mlcore.book.records import reference

    ref = reference("maml_sinusoid")  # results/maml_sinusoid.json, or None

Benchmark files (``benchmarks/results/*.json``) are read with :func:`benchmark`, which names the command that
writes a missing one. Benchmarks that ran on a shared machine are reported as ratios against the peer measured in
the same run (:func:`memory_rows`, :func:`order_ratios`), not as absolute seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..results import Record, load_record, results_dir


def bench_dir() -> Path:
    """``benchmarks/results`` beside the ``results/`` folder the records are read from."""
    return results_dir().parent / "benchmarks" / "results"


def reference(name: str, directory: str | Path | None = None) -> Record | None:
    """The record ``results/<name>.json``, or None (and one printed line saying so) if it is not there yet."""
    path = Path(directory or results_dir()) / f"{name}.json"
    if not path.exists():
        print(f"{name}: reference record not yet produced")
        return None
    return load_record(path)


def benchmark(name: str, command: str, directory: str | Path | None = None, quiet: bool = False) -> dict | None:
    """The benchmark file ``benchmarks/results/<name>.json`` as a dict, or None.

    For a missing file it prints (unless ``quiet``) which command writes it, so a chapter says how to get the
    numbers instead of drawing an empty panel.
    """
    path = Path(directory or bench_dir()) / f"{name}.json"
    if not path.exists():
        if not quiet:
            print(f"{name}.json is not in benchmarks/results/; `{command}` writes it")
        return None
    return json.loads(path.read_text())


def _same(a: dict, b: dict, keys: tuple[str, ...]) -> bool:
    return all(a[k] == b[k] for k in keys)


def memory_rows(rows: list[dict]) -> list[dict]:
    """The rows of an engineering benchmark's ``memory`` section, each with its time as a ratio to a peer.

    A row's peer is a row measured right next to it in the same run (the row before or after) that differs in
    one thing: a second-order row is compared with the first-order row of the same inner steps and meta-batch,
    a checkpointed row with the plain row of the same size. ``vs`` names the peer and ``time_ratio`` is
    ``step_ms / peer step_ms``; both are None for a row without such a neighbour (the meta-batch sweep, whose
    rows were not measured in pairs).
    """
    out = []
    for i, r in enumerate(rows):
        near = [rows[j] for j in (i - 1, i + 1) if 0 <= j < len(rows)]
        peer, vs = None, None
        if r["checkpoint"]:
            peer = next((p for p in near if not p["checkpoint"]
                         and _same(p, r, ("inner_steps", "meta_batch", "first_order"))), None)
            vs = "no checkpoint"
        elif not r["first_order"]:
            peer = next((p for p in near if p["first_order"] and not p["checkpoint"]
                         and _same(p, r, ("inner_steps", "meta_batch"))), None)
            vs = "first order"
        ratio = r["step_ms"] / peer["step_ms"] if peer and peer["step_ms"] else None
        out.append({**r, "vs": vs if peer else None, "time_ratio": ratio})
    return out


def order_ratios(rows: list[dict], field: str) -> dict[int, float]:
    """inner steps -> second-order ``field`` / first-order ``field``, for rows of one run (``maml_memory``).

    Only inner-step counts measured in both orders appear.
    """
    by = {(r["inner_steps"], bool(r["first_order"])): r[field] for r in rows}
    return {s: by[(s, False)] / by[(s, True)] for s, fo in sorted(by) if not fo and (s, True) in by and by[(s, True)]}
