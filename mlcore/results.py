"""Result records: one JSON file per reference run, the only source of the book's numbers.

A record names its method and setting, the metric and its 95 % CI, the seed, the full
config, the hardware, the wall time, the git commit and (for trained learners) the
checkpoint it came from, relative to the record's own folder.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .runtime import git_commit, hardware

RESULTS_ENV = "MLCORE_RESULTS"
_PACKAGE_RESULTS = Path(__file__).resolve().parent.parent / "results"  # right only for an editable install


def _holds_records(d: Path) -> bool:
    """Whether ``d`` has a record JSON (a dict naming ``name``, ``method`` and ``dataset``) among its first files."""
    for p in sorted(d.glob("*.json"))[:5]:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and {"name", "method", "dataset"} <= data.keys():
            return True
    return False


def results_dir(directory: str | os.PathLike | None = None) -> Path:
    """Where the records live: ``directory``, else ``$MLCORE_RESULTS``, else a ``results/`` with records
    found walking up from the working directory, else the package's sibling ``results/``.

    The package-relative path is only right for an editable install; ``pip install git+...``
    (the Colab cell) puts the package in site-packages, away from the book's records.
    """
    if directory is not None:
        return Path(directory)
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working directory was deleted
        cwd = None
    for d in ([cwd, *cwd.parents] if cwd is not None else []):
        if (d / "results").is_dir() and _holds_records(d / "results"):
            return d / "results"
    return _PACKAGE_RESULTS


RESULTS_DIR = results_dir()  # resolved once at import; functions here call results_dir() to see later changes


def record_dir(out_dir: str | os.PathLike | None, budget: str) -> Path:
    """Where a study writes its records: ``out_dir`` when the caller names one, else ``results/`` for the
    full budget (the reference records), else ``runs/`` (a smoke run never overwrites a reference record)."""
    return Path(out_dir) if out_dir is not None else (RESULTS_DIR if budget == "full" else Path("runs"))


@dataclass
class Record:
    name: str
    method: str
    dataset: str
    split: str | None = None
    ways: int | None = None
    shots: int | None = None
    accuracy: float | None = None
    ci95: float | None = None
    episodes: int | None = None
    seed: int = 0
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    wall_s: float | None = None
    train_wall_s: float | None = None
    git_commit: str = "unknown"
    checkpoint: str | None = None
    budget: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        missing = [k for k in ("name", "method", "dataset") if k not in known]
        if missing:
            raise ValueError(f"record lacks required fields {missing}")
        return cls(**known)


def run_record(started: float, **fields: Any) -> Record:
    """The :class:`Record` of a run that began at ``started`` (a ``time.perf_counter()`` value).

    Every record carries the hardware it ran on, its wall time and the git commit of the code; this
    fills in those three (a caller may still pass ``hardware`` or ``git_commit``, e.g. a distributed
    run adds its world size, a study names the commit it read before a long run), so no study writes
    them by hand.
    """
    fields.setdefault("hardware", hardware())
    fields.setdefault("git_commit", git_commit())
    return Record(wall_s=time.perf_counter() - started, **fields)


def mean_ci95(values) -> tuple[float, float]:
    """Mean and 95 % CI half-width (1.96 * std / sqrt(n)) of per-episode values."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    if t.numel() == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if t.numel() == 1:
        return float(t[0]), float("nan")
    return float(t.mean()), float(1.96 * t.std(unbiased=True) / math.sqrt(t.numel()))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` all-or-nothing: ``write(f)`` fills a temp file beside it, flushed, fsynced, then renamed.

    A crash or an exception mid-write leaves the old file (or none) and no temp file, never a
    half-written one; records and checkpoints are read by other users, so the file is 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (best effort: not every platform can open a directory)
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


_NUMBER_LIST = re.compile(r"\[\s*((?:-?(?:[0-9.eE+-]+|NaN|Infinity),\s*)*-?(?:[0-9.eE+-]+|NaN|Infinity))\s*\]")


def record_json(data: dict) -> str:
    """JSON for a record: indented, but every list of plain numbers on one line.

    Records carry per-episode accuracies and matrices; one number per line would make them
    ten times longer and unreadable in a diff.
    """
    text = json.dumps(data, indent=2, sort_keys=False)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def save_record(record: Record, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<directory>/<record.name>.json`` atomically (default: :func:`results_dir`)."""
    d = results_dir(directory)
    path = d / f"{record.name}.json"
    atomic_write_text(path, record_json(record.to_dict()))
    return path


def load_record(path: str | os.PathLike) -> Record:
    path = Path(path)
    if not path.exists():
        rdir = results_dir()
        candidate = rdir / path.name if path.suffix == ".json" else rdir / f"{path}.json"
        if candidate.exists():
            path = candidate
        else:
            raise FileNotFoundError(f"no record at {path}; records live in {rdir} as <name>.json (set {RESULTS_ENV} "
                                    "to point elsewhere)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    rec = Record.from_dict(data)
    rec._path = path  # type: ignore[attr-defined]
    return rec


def list_records(directory: str | os.PathLike | None = None) -> list[Record]:
    d = results_dir(directory)
    return [load_record(p) for p in sorted(d.glob("*.json"))]


def checkpoint_path(record: Record) -> Path | None:
    if not record.checkpoint:
        return None
    base = Path(getattr(record, "_path", results_dir() / f"{record.name}.json")).parent
    return (base / record.checkpoint).resolve()
