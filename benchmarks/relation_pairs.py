"""Relation Network training step: the first relation convolution by parts against the stacked pairs.

The paper describes the relation module's input as each (query, class) pair of feature maps stacked along the
channels. ``RelationNet.relation_logits`` never builds that stack: it convolves each class map and each query map
once with its half of the first relation kernel and adds the two per pair (``RelationNet.pair_conv``). Both
compute the same function; this script times a training step (forward, backward) of each at the four settings of
Sung et al.'s recipe, one CPU thread, alternating rounds so that other load on the machine falls on all alike,
after checking in float64 that scores and gradients agree. A third variant adds what the recipe also turns on,
NHWC convolutions (``channels_last``). It writes ``benchmarks/results/relation_pairs_cpu.json``.

    python benchmarks/relation_pairs.py [--rounds 3] [--iters 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mlcore.data import EpisodeSampler, load_split
from mlcore.metric.relation import RelationNet
from mlcore.results import atomic_write_text
from mlcore.runtime import hardware, keep_freed_memory

OUT = Path(__file__).resolve().parent / "results" / "relation_pairs_cpu.json"
SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]


def stacked_pair_logits(net: RelationNet, support_x, support_y, query_x, ways: int) -> torch.Tensor:
    """The paper's formulation, written out: stack every (query, class) pair, then run the relation module."""
    b, n, m = support_x.shape[0], support_x.shape[1], query_x.shape[1]
    fs = net.embedding(support_x.flatten(0, 1)).view(b, n, -1)
    fq = net.embedding(query_x.flatten(0, 1))
    fq = fq.view(b, m, *fq.shape[1:])
    fc = (F.one_hot(support_y.long(), ways).to(fs.dtype).transpose(1, 2) @ fs).view(b, ways, *fq.shape[2:])
    pairs = torch.cat([fc[:, None].expand(b, m, ways, *fq.shape[2:]),
                       fq[:, :, None].expand(b, m, ways, *fq.shape[2:])], dim=3)
    return net.relation_fc(net.relation_conv(pairs.flatten(0, 2)).flatten(1)).view(b, m, ways)


def train_step(net: RelationNet, ep, logits_fn) -> None:
    net.zero_grad(set_to_none=True)
    logits = logits_fn(net, ep.support_x, ep.support_y, ep.query_x, ep.ways)
    F.mse_loss(torch.sigmoid(logits), F.one_hot(ep.query_y, ep.ways).to(logits.dtype)).backward()


def max_gradient_gap(net: RelationNet, ep) -> tuple[float, float]:
    """float64: the largest score difference, and the largest gradient difference relative to the gradient's norm."""
    net64 = copy.deepcopy(net).double()
    ep64 = type(ep)(ep.support_x.double(), ep.support_y, ep.query_x.double(), ep.query_y, ep.ways, ep.shots,
                    ep.queries)
    grads, scores = [], []
    for fn in (RelationNet.relation_logits, stacked_pair_logits):
        train_step(net64, ep64, fn)
        grads.append(torch.cat([p.grad.flatten() for p in net64.parameters()]))
        with torch.no_grad():
            scores.append(fn(net64, ep64.support_x, ep64.support_y, ep64.query_x, ep64.ways))
    return float((scores[0] - scores[1]).abs().max()), float((grads[0] - grads[1]).abs().max() / grads[1].norm())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the speed-up is their median")
    ap.add_argument("--iters", type=int, default=3, help="timed steps per method and round")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.rounds < 1 or args.iters < 1:
        ap.error(f"--rounds and --iters must be >= 1, got {args.rounds} and {args.iters}")
    torch.set_num_threads(1)
    keep_freed_memory()  # as benchmarks/long_run.py trains
    classes = load_split("vinyals/train")
    rows = []
    for ways, shots in SETTINGS:
        recipe = RelationNet.recipe(ways, shots, "full")
        torch.manual_seed(0)
        net = RelationNet(**recipe.model).train()
        ep = EpisodeSampler(classes, ways, shots, recipe.queries, seed=0).sample()
        score_gap, grad_gap = max_gradient_gap(net, ep)
        if not (score_gap < 1e-9 and grad_gap < 1e-9):
            raise AssertionError(f"{ways}w{shots}s: the two formulations differ (scores {score_gap:.1e}, "
                                 f"gradients {grad_gap:.1e}); not timing")
        nhwc = copy.deepcopy(net).to(memory_format=torch.channels_last)
        variants = {"by_parts": (net, RelationNet.relation_logits), "stacked": (net, stacked_pair_logits),
                    "by_parts_channels_last": (nhwc, RelationNet.relation_logits)}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for model, fn in variants.values():
            train_step(model, ep, fn)  # warm-up
        for _ in range(args.rounds):
            for name, (model, fn) in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    train_step(model, ep, fn)
                times[name].append((time.perf_counter() - t0) / args.iters)
        ratios = [s / p for s, p in zip(times["stacked"], times["by_parts"])]
        nhwc_ratios = [s / p for s, p in zip(times["stacked"], times["by_parts_channels_last"])]
        row = {"setting": f"{ways}w{shots}s", "queries_per_class": recipe.queries,
               "pairs_per_episode": ways * recipe.queries * ways, "score_gap_float64": score_gap,
               "gradient_gap_float64": grad_gap, "s_per_step_by_parts": statistics.median(times["by_parts"]),
               "s_per_step_stacked": statistics.median(times["stacked"]), "speedup_per_round": ratios,
               "speedup": statistics.median(ratios),
               "s_per_step_by_parts_channels_last": statistics.median(times["by_parts_channels_last"]),
               "speedup_channels_last_per_round": nhwc_ratios, "speedup_channels_last": statistics.median(nhwc_ratios)}
        rows.append(row)
        print(f"{row['setting']}: {row['pairs_per_episode']:,} pairs per episode; stacked "
              f"{row['s_per_step_stacked']:.3f} s, by parts {row['s_per_step_by_parts']:.3f} s per step -> "
              f"{row['speedup']:.2f}x; by parts in channels_last {row['s_per_step_by_parts_channels_last']:.3f} s -> "
              f"{row['speedup_channels_last']:.2f}x (float64 gaps: scores {score_gap:.0e}, gradients {grad_gap:.0e})",
              flush=True)
    result = {"benchmark": "relation_pairs", "rounds": args.rounds, "iters": args.iters, "threads": 1,
              "load_average": os.getloadavg(), "rows": rows, "hardware": hardware()}
    out = Path(args.out)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
