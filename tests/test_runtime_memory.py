"""keep_freed_memory: freed blocks are reused instead of re-faulted from the system every step."""
from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys
import torch
if sys.argv[1] == "1":
    from mlcore.runtime import keep_freed_memory
    assert keep_freed_memory()
def step():
    x = torch.ones(64 * 2**20 // 4)  # a 64 MiB buffer, allocated and freed, like an activation each step
    return float(x[0])
step()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_refaulting_large_buffers():
    def faults(tuned: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, tuned], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    default, kept = faults("0"), faults("1")
    # by default each 64 MiB buffer comes back from mmap and is faulted in page by page (16,384 pages)
    assert default > 10 * 10_000
    assert kept < default / 5  # at most one buffer's worth, against one per step
