"""Device choice, seeding, determinism and hardware description.

Everything in :mod:`mlcore` asks this module which device to use, so a reader can
switch the whole library with one environment variable (``MLCORE_DEVICE=cpu``).
"""
from __future__ import annotations

import functools
import os
import platform
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

_ALLOWED_DEVICES = ("cuda", "mps", "cpu")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to run on: the argument, else ``MLCORE_DEVICE``, else cuda > mps > cpu."""
    if device is None:
        device = os.environ.get("MLCORE_DEVICE") or None
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type not in _ALLOWED_DEVICES:
        raise ValueError(f"device {device!r} is not supported; use one of {_ALLOWED_DEVICES}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False; use 'cpu'")
    return dev


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the system.

    A training step allocates and frees the same large activation buffers every time. By default
    glibc serves large blocks with fresh ``mmap`` pages and returns them on ``free``, so every step
    page-faults its activations in again: ~150,000 faults and about 45 % of the CPU time of a 60-way
    ProtoNet step on this book's 2-core machine (``benchmarks/step_speed.py``). With mmap off for the
    allocator and trimming pushed out of reach, freed blocks are reused. The process's memory then stays
    at its peak, which suits a training run. Returns whether the setting was applied (Linux with glibc
    only; elsewhere nothing changes). ``python -m mlcore train|reproduce`` call it.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's <malloc.h>
    return bool(mallopt(m_trim_threshold, ctypes.c_int(2**30 - 1))) and bool(mallopt(m_mmap_max, ctypes.c_int(0)))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a fresh CPU generator seeded with ``seed``.

    This sets process-wide state on purpose: it is for the start of a whole run (a study, the CLI,
    :func:`mlcore.runs.train_and_record`, a notebook's first cell). Library code that only needs its own
    work reproducible uses a ``torch.Generator`` or :func:`seeded_global_rng`, which leave the caller's
    random state as it was.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _cuda_indices(device: str | torch.device | None) -> list[int]:
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@contextmanager
def seeded_global_rng(seed: int, device: str | torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded with ``seed``, then give the caller's state back.

    For code that must draw from torch's default generator (a module's ``__init__``, samplers such as
    ``Beta``/``Gamma`` that take no ``generator``) but should not leave the process seeded: the CPU
    generator, and the generator of ``device`` when it is a CUDA device, are seeded inside the block and
    restored when it ends (``torch.random.fork_rng``). Inside the block the draws are exactly those after
    ``torch.manual_seed(seed)``; other CUDA devices are neither seeded nor touched.
    """
    cuda = _cuda_indices(device)
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for i in cuda:
            torch.cuda.default_generators[i].manual_seed(seed)
        yield


def set_deterministic(enabled: bool = True) -> None:
    """Ask torch for deterministic kernels (and cuBLAS workspace config on CUDA)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def autocast(device: torch.device, dtype: str | None):
    """Autocast context for ``dtype`` in {None, 'bf16', 'fp16'}; ``None`` is a no-op."""
    if dtype is None:
        return nullcontext()
    table = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"autocast dtype {dtype!r} not allowed; use None, 'bf16' or 'fp16'")
    return torch.autocast(device_type=device.type, dtype=table[dtype])


# CPU features bfloat16 kernels can use. Records name them because bfloat16's speed differs between machines:
# RL^2's PPO passes ran 2.4-3.1x faster than float32 on one (its flags were not recorded) and 0.77-1.04x as fast
# on one with AVX-512 BF16 and no AMX (benchmarks/results/rl2_precision_cpu*.json)
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


@functools.cache
def cpu_model() -> dict:
    """The CPU's model name and which of the bfloat16 features AVX-512 BF16 and AMX it has (Linux: /proc/cpuinfo)."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu_model": name, "cpu_bf16_flags": flags}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            name = value.strip()
        elif key.strip() == "flags":
            have = set(value.split())
            flags = [f for f in _BF16_CPU_FLAGS if f in have]
            break
    return {"cpu_model": name, "cpu_bf16_flags": flags}


def hardware() -> dict:
    """A short, JSON-friendly description of where a run happened."""
    info = {
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        **cpu_model(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware_label(hw: dict) -> str:
    """Human label for a hardware dict: the GPU name, else 'CPU (N threads)'."""
    if hw.get("gpu"):
        return hw["gpu"]
    n = hw.get("cpu_threads", "?")
    return f"CPU ({n} thread{'' if n == 1 else 's'})"


@functools.cache
def git_commit(path: str | Path | None = None) -> str:
    """The git commit of the repository holding ``path`` (or 'unknown'), read once per process.

    Cached so that a record carries the commit its run *started* from: a run that takes an hour
    must not pick up the commits made while it was running. ``python -m mlcore train|reproduce``
    reads it before training starts.
    """
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=cwd, capture_output=True, text=True,
                             timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=cwd,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("MLCORE_GIT_COMMIT", "unknown")
