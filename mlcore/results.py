"""Result records: one JSON file per reference run, the only source of the book's numbers.

A record names its method and setting, the metric and its 95 % CI, the seed, the full
config, the hardware, the wall time, the git commit and (for trained learners) the
checkpoint it came from, relative to the record's own folder.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


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
    def from_dict(cls, d: dict) -> "Record":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        missing = [k for k in ("name", "method", "dataset") if k not in known]
        if missing:
            raise ValueError(f"record lacks required fields {missing}")
        return cls(**known)


def mean_ci95(values) -> tuple[float, float]:
    """Mean and 95 % CI half-width (1.96 * std / sqrt(n)) of per-episode values."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    if t.numel() == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if t.numel() == 1:
        return float(t[0]), float("nan")
    return float(t.mean()), float(1.96 * t.std(unbiased=True) / math.sqrt(t.numel()))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; records are read by other users and tools
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a committed checkpoint must be readable by everyone
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_record(record: Record, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<directory>/<record.name>.json`` atomically (default: the repository's ``results/``)."""
    d = Path(directory) if directory is not None else RESULTS_DIR
    path = d / f"{record.name}.json"
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def load_record(path: str | os.PathLike) -> Record:
    path = Path(path)
    if not path.exists():
        candidate = RESULTS_DIR / path.name if path.suffix == ".json" else RESULTS_DIR / f"{path}.json"
        if candidate.exists():
            path = candidate
        else:
            raise FileNotFoundError(f"no record at {path}; records live in {RESULTS_DIR} as <name>.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    rec = Record.from_dict(data)
    rec._path = path  # type: ignore[attr-defined]
    return rec


def list_records(directory: str | os.PathLike | None = None) -> list[Record]:
    d = Path(directory) if directory is not None else RESULTS_DIR
    return [load_record(p) for p in sorted(d.glob("*.json"))]


def checkpoint_path(record: Record) -> Path | None:
    if not record.checkpoint:
        return None
    base = Path(getattr(record, "_path", RESULTS_DIR / f"{record.name}.json")).parent
    return (base / record.checkpoint).resolve()
