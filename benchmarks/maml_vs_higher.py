"""Second-order MAML meta-training throughput: mlcore (torch.func + vmap) vs ``higher`` 0.2.1.

Same strided Conv-4 (the very same module object), same tasks (Omniglot 5-way 1-shot,
5 queries per class, from the Vinyals training split), meta-batch 32, second order,
1 and 5 inner steps, both measured in the same run, alternating.

* mlcore: :meth:`mlcore.optimization.maml.MAML.meta_loss` — the B inner loops run as one
  ``vmap`` (on a GPU the query passes too; on the CPU those run task by task: ``batching="auto"``);
  ``loss.backward()`` differentiates through the inner gradients.
* higher: the textbook loop — for each task, ``higher.innerloop_ctx`` with a differentiable
  SGD, ``diffopt.step(support_loss)`` per inner step, then ``query_loss.backward()``.

Before timing, the script checks that both produce the same meta-gradient (relative
difference of the flattened gradients < 1e-9, computed in float64 on the same weights and
tasks), because a faster but different gradient would not count. Timing is in float32. It prints tasks/s and the speed-up, and writes
``benchmarks/results/maml_vs_higher_<device>.json`` with the hardware.

    python benchmarks/maml_vs_higher.py [--device cuda] [--iters 5] [--steps 1 5] [--threads 2]

On a CPU, ``--threads`` sets the intra-op threads of both (default 1, one run per core as the long runs train;
a run with more threads writes ``maml_vs_higher_cpu_<n>threads.json``). Batched operations spread over
threads; ``higher``'s per-task ones are too small to, so the ratio grows with the threads.
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

from mlcore.data import Episode, EpisodeSampler, load_split
from mlcore.optimization.maml import MAML, resolve_batching
from mlcore.runtime import get_device, hardware, keep_freed_memory

OUT_DIR = Path(__file__).resolve().parent / "results"


def higher_meta_grad(learner: MAML, ep, steps: int, lr: float) -> None:
    """Accumulate the second-order meta-gradient of the batch with higher, task by task."""
    import higher  # benchmark peer only; not a dependency of mlcore

    net = learner.net
    inner_opt = torch.optim.SGD(net.parameters(), lr=lr)
    b = ep.batch_size
    for i in range(b):
        with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False, track_higher_grads=True) as (fnet, dopt):
            for _ in range(steps):
                dopt.step(F.cross_entropy(fnet(ep.support_x[i]), ep.support_y[i]))
            (F.cross_entropy(fnet(ep.query_x[i]), ep.query_y[i]) / b).backward()


def ours_meta_grad(learner: MAML, ep) -> None:
    loss, _ = learner.meta_loss(ep)
    loss.backward()


def flat_grad(learner: MAML) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in learner.net.parameters()])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, iters: int) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--iters", type=int, default=None, help="timed meta-steps per method and round (default: 2 CPU, 10 GPU)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the speed-up is their median")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="run both under mlcore.runtime.keep_freed_memory, as the CLI trains (default: glibc's malloc "
                         "as a plain Python process has it)")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads for both methods (default 1)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    # one process-wide allocator setting, so it applies to both methods alike
    malloc = "keep freed memory" if args.keep_freed_memory and keep_freed_memory() else "glibc default"
    device = get_device(args.device)
    iters = args.iters or (10 if device.type == "cuda" else 2)
    import higher

    sampler = EpisodeSampler(load_split("vinyals/train"), 5, 1, 5, batch_size=args.meta_batch, device=device, seed=0)
    ep = sampler.sample()
    rows = []
    for steps in args.steps:
        torch.manual_seed(0)
        learner = MAML(ways=5, inner_steps=steps, inner_lr=0.4).to(device)
        lr = float(learner.inner_lrs[0])  # higher gets the very α MAML stores (0.4 rounded to float32)
        # 1) same meta-gradient, checked in float64 so round-off cannot hide (or fake) a difference:
        #    float32 differs by up to ~1e-3 relative at meta-batch 32 (BN on 5-image support sets is
        #    ill-conditioned), which would make a float32 tolerance meaningless
        exact = copy.deepcopy(learner).double()
        ep64 = Episode(ep.support_x.double(), ep.support_y, ep.query_x.double(), ep.query_y, ep.ways, ep.shots,
                       ep.queries)
        exact.zero_grad(set_to_none=True)
        ours_meta_grad(exact, ep64)
        g_ours = flat_grad(exact).clone()
        exact.zero_grad(set_to_none=True)
        higher_meta_grad(exact, ep64, steps, lr)
        g_higher = flat_grad(exact).clone()
        rel = float((g_ours - g_higher).norm() / g_higher.norm())
        del exact
        if not rel < 1e-9:
            raise AssertionError(f"meta-gradients differ (relative {rel:.2e}) at {steps} inner steps; not timing")

        # 2) throughput, alternating so both see the same machine state
        def run_ours(learner=learner):
            learner.zero_grad(set_to_none=True)
            ours_meta_grad(learner, ep)

        def run_higher(learner=learner, steps=steps, lr=lr):
            learner.zero_grad(set_to_none=True)
            higher_meta_grad(learner, ep, steps, lr)

        run_ours(), run_higher()  # warm-up
        t_ours, t_higher = [], []
        for _ in range(args.rounds):  # alternating rounds: a burst of load hits both alike
            t_ours.append(timed(run_ours, device, iters))
            t_higher.append(timed(run_higher, device, iters))
        ratios = [h / o for o, h in zip(t_ours, t_higher)]
        s_ours, s_higher = statistics.median(t_ours), statistics.median(t_higher)
        row = {"inner_steps": steps, "meta_batch": args.meta_batch, "grad_rel_diff": rel,
               "mlcore_batching": resolve_batching("auto", device),
               "s_per_meta_step_mlcore": s_ours, "s_per_meta_step_higher": s_higher,
               "tasks_per_s_mlcore": args.meta_batch / s_ours, "tasks_per_s_higher": args.meta_batch / s_higher,
               "speedup_per_round": ratios, "speedup": statistics.median(ratios)}
        rows.append(row)
        print(f"inner steps {steps}: same meta-gradient (float64 rel diff {rel:.1e}); mlcore {row['tasks_per_s_mlcore']:.1f} "
              f"tasks/s, higher {row['tasks_per_s_higher']:.1f} tasks/s -> {row['speedup']:.2f}x", flush=True)
    result = {"benchmark": "maml_vs_higher", "setting": "Omniglot 5w1s, 5 queries/class, strided Conv-4, 2nd order",
              "device": str(device), "iters": iters, "rounds": args.rounds, "malloc": malloc, "load_average": os.getloadavg(), "higher_version": getattr(higher, "__version__", "0.2.1"),
              "rows": rows, "hardware": hardware()}
    suffix = "_keep_freed_memory" if malloc == "keep freed memory" else ""
    if device.type == "cpu" and args.threads > 1:
        suffix += f"_{args.threads}threads"
    out = Path(args.out) if args.out else OUT_DIR / f"maml_vs_higher_{device.type}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
