"""MAML meta-training steps on a GPU: eager against one CUDA graph per step (mlcore.optimization.cuda_graph).

For each setting (the paper's Omniglot recipes: 5w1s at meta-batch 32 with one inner step, 20w1s at
meta-batch 16 with five), two learners start from the same weights and a fresh Adam (the eager one as ``fit``
builds it, the graphed one with ``capturable=True``) and train on the same episode batches:

1. **same training**: after a few steps on identical batches, the graphed learner's weights must match the
   eager one's (relative difference below 1e-4; cuDNN may pick different kernels, so not bit for bit),
   otherwise nothing is timed;
2. **throughput**: steps per second of each, batch sampling included, alternating rounds; the speed-up is
   the median of the per-round ratios.

    python benchmarks/maml_cuda_graph.py [--steps 50] [--rounds 3] [--out FILE]

Writes ``benchmarks/results/maml_cuda_graph_cuda.json`` with the hardware. Needs a CUDA device.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from mlcore.data import EpisodeSampler, load_split
from mlcore.optimization.cuda_graph import GraphedMetaStep
from mlcore.optimization.maml import MAML
from mlcore.results import atomic_write_text
from mlcore.runtime import hardware

OUT_DIR = Path(__file__).resolve().parent / "results"
SETTINGS = [  # (ways, shots, queries, meta-batch, inner steps, inner lr): Finn et al.'s Omniglot recipes
    (5, 1, 5, 32, 1, 0.4),
    (20, 1, 5, 16, 5, 0.1),
]


def eager_step(learner: MAML, optimizer: torch.optim.Optimizer, batch) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss, _ = learner.meta_loss(batch)
    loss.backward()
    optimizer.step()
    return loss


def rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    va = torch.cat([p.detach().flatten() for p in a.parameters()])
    vb = torch.cat([p.detach().flatten() for p in b.parameters()])
    return float((va - vb).norm() / va.norm())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50, help="timed steps per method and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check-steps", type=int, default=5, help="steps on identical batches before comparing weights")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("maml_cuda_graph: CUDA graphs need a CUDA device; none is visible", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    train = load_split("vinyals/train")
    rows = []
    for ways, shots, queries, meta_batch, inner, lr in SETTINGS:
        torch.manual_seed(0)
        eager = MAML(ways=ways, inner_steps=inner, inner_lr=lr).to(device)
        graphed = copy.deepcopy(eager)
        opt_e = torch.optim.Adam(eager.parameters(), 1e-3)  # the eager step as fit runs it
        opt_g = torch.optim.Adam(graphed.parameters(), 1e-3, capturable=True)
        sampler = EpisodeSampler(train, ways, shots, queries, batch_size=meta_batch, device=device, seed=0)
        t0 = time.perf_counter()
        step = GraphedMetaStep(graphed, opt_g, sampler.sample())
        torch.cuda.synchronize()
        capture_s = time.perf_counter() - t0
        start_diff = rel_diff(eager, graphed)  # the warm-up must leave no trace
        for _ in range(args.check_steps):
            batch = sampler.sample()
            loss_e = eager_step(eager, opt_e, batch)
            loss_g, _ = step.step(batch)
            loss_gap = abs(float(loss_e) - float(loss_g))
        diff = rel_diff(eager, graphed)
        if not (start_diff == 0.0 and diff < 1e-4):
            raise AssertionError(f"{ways}w{shots}s: graphed training differs from eager (weights before "
                                 f"{start_diff:.1e}, after {args.check_steps} steps {diff:.1e}); not timing")

        def run_eager(eager=eager, opt_e=opt_e, sampler=sampler):
            for _ in range(args.steps):
                eager_step(eager, opt_e, sampler.sample())
            torch.cuda.synchronize()

        def run_graphed(step=step, sampler=sampler):
            for _ in range(args.steps):
                step.step(sampler.sample())
            torch.cuda.synchronize()

        t_e, t_g = [], []
        for _ in range(args.rounds):  # alternating, so a burst of other load hits both alike
            for fn, times in ((run_eager, t_e), (run_graphed, t_g)):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) / args.steps)
        ratios = [e / g for e, g in zip(t_e, t_g)]
        row = {"setting": f"{ways}w{shots}s", "queries": queries, "meta_batch": meta_batch, "inner_steps": inner,
               "capture_s": capture_s, "weights_rel_diff_after_check": diff, "last_loss_gap": loss_gap,
               "s_per_step_eager": statistics.median(t_e), "s_per_step_graphed": statistics.median(t_g),
               "speedup_per_round": ratios, "speedup": statistics.median(ratios)}
        rows.append(row)
        print(f"{row['setting']} (meta-batch {meta_batch}, {inner} inner step(s)): eager "
              f"{1 / row['s_per_step_eager']:.1f} steps/s, graphed {1 / row['s_per_step_graphed']:.1f} steps/s -> "
              f"{row['speedup']:.2f}x (weights after {args.check_steps} identical steps differ by {diff:.0e})",
              flush=True)
    result = {"benchmark": "maml_cuda_graph", "steps": args.steps, "rounds": args.rounds, "rows": rows,
              "hardware": hardware()}
    out = Path(args.out) if args.out else OUT_DIR / "maml_cuda_graph_cuda.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")  # a killed run leaves no half-written JSON
    print(f"wrote {out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
