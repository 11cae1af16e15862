"""How far one PPO update moves an RL^2 policy when its passes run in float32 and in bfloat16, from the same start.

    python benchmarks/rl2_precision_update.py mdp_n25 [--weights init|record] [--no-kl-stop]

Trained in bfloat16, a 25-episode MDP agent learned far less than in float32 (278.7 against 308.6), and PPO's
KL stop cut twice as many of its early updates, although bfloat16 moves the log-probabilities PPO compares by
only ~10^-3 (``rl2_precision.py``). This script takes one update apart. From the same weights (``init``: the
policy as training initialises it with seed 0, where those early updates start; ``record``: the committed
record's), one rollout of the recipe's trials, a fresh Adam and the same minibatch order, it runs the recipe's
PPO update once per precision and reports:

* the gradient of the first minibatch in each precision: their cosine and norm ratio, over all weights and per
  weight tensor;
* after every optimiser step, the exact KL(old || new) of the action distributions, computed in float32 on the
  first 200 trials, and the distance the weights have moved;
* the steps the update took before the KL stop (``--no-kl-stop`` runs all ``epochs x minibatches`` of them).

One thread. Writes ``benchmarks/results/rl2_precision_update_<setting>_<weights>.json`` with the hardware.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from mlcore.experiments.rl2_records import SPECS, load_rl2, rl2_config
from mlcore.results import atomic_write_text
from mlcore.rl.envs import make_env
from mlcore.rl.rl2 import RL2Policy, ppo_update, rl2_schedule, rollout
from mlcore.runtime import git_commit, hardware, keep_freed_memory, seeded_global_rng

KL_TRIALS = 200


@torch.no_grad()
def exact_kl(old_logp: torch.Tensor, policy: RL2Policy, inputs: torch.Tensor) -> float:
    """Mean over trials and steps of KL(old || new) between the action distributions, in float32."""
    new_logp = torch.log_softmax(policy(inputs)[0].float(), -1)
    return float((old_logp.exp() * (old_logp - new_logp)).sum(-1).mean())


class TracingAdam(torch.optim.Adam):
    """Adam that keeps the first step's gradients and, after every step, the policy's KL and distance moved."""

    def __init__(self, policy: RL2Policy, lr: float, inputs: torch.Tensor):
        super().__init__(policy.parameters(), lr=lr, eps=1e-5)  # as train_rl2 builds it
        self.policy, self.inputs = policy, inputs
        self.start = [p.detach().clone() for p in policy.parameters()]
        with torch.no_grad():
            self.old_logp = torch.log_softmax(policy(inputs)[0].float(), -1)
        self.first_grads: list[torch.Tensor] | None = None
        self.trace: list[dict] = []

    def step(self, closure=None):
        if self.first_grads is None:
            self.first_grads = [p.grad.detach().clone() for p in self.policy.parameters()]
        out = super().step(closure)
        moved = math.sqrt(sum(float((p.detach() - s).pow(2).sum()) for p, s in zip(self.policy.parameters(), self.start)))
        self.trace.append({"step": len(self.trace) + 1, "kl": exact_kl(self.old_logp, self.policy, self.inputs),
                           "weights_moved": moved})
        return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-30))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setting", choices=sorted(SPECS))
    ap.add_argument("--weights", choices=("init", "record"), default="init")
    ap.add_argument("--no-kl-stop", action="store_true", help="run every PPO step (target_kl off)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()
    spec = SPECS[args.setting]
    cfg = rl2_config(spec, "full")
    if args.no_kl_stop:
        cfg.target_kl = None
    env = make_env(spec, cfg.trials_per_update, 0, "cpu")
    if args.weights == "record":
        start, _ = load_rl2(ROOT / "results" / f"rl2_{args.setting}.json", "cpu")
    else:
        with seeded_global_rng(0):  # as train_rl2(seed=0) initialises it
            start = RL2Policy(env.num_states, env.num_actions, cfg.hidden)
    t0 = time.perf_counter()
    ro = rollout(start, env, torch.Generator().manual_seed(0))
    sched = rl2_schedule(cfg, 0)
    floor = sched["entropy_floor"] * math.log(env.num_actions)
    runs = {}
    for precision in ("float32", "bfloat16"):
        cfg.precision = precision
        policy = copy.deepcopy(start).train()
        opt = TracingAdam(policy, sched["lr"], ro.inputs[:KL_TRIALS])
        t = time.perf_counter()
        stats = ppo_update(policy, opt, ro, cfg, sched["entropy_coef"], torch.Generator().manual_seed(1), floor)
        runs[precision] = {"seconds": time.perf_counter() - t, "ppo_steps": stats["ppo_steps"],
                           "kl_stopped": stats["kl_stopped"], "approx_kl_mean": stats["approx_kl"],
                           "trace": opt.trace, "first_grads": opt.first_grads}
        tr = opt.trace
        print(f"{precision}: {stats['ppo_steps']} PPO steps (KL stop: {stats['kl_stopped']}), exact KL after "
              f"step 1 / 4 / last: {tr[0]['kl']:.2e} / {tr[min(3, len(tr) - 1)]['kl']:.2e} / {tr[-1]['kl']:.2e}, "
              f"weights moved {tr[-1]['weights_moved']:.3f}", flush=True)
    g32, g16 = runs["float32"].pop("first_grads"), runs["bfloat16"].pop("first_grads")
    names = [n for n, _ in start.named_parameters()]
    flat32, flat16 = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
    per_tensor = {n: {"cosine": cosine(a, b), "norm_ratio_bf16_over_fp32": float(b.norm() / (a.norm() + 1e-30))}
                  for n, a, b in zip(names, g32, g16)}
    first = {"cosine": cosine(flat32, flat16), "norm_ratio_bf16_over_fp32": float(flat16.norm() / flat32.norm()),
             "per_tensor": per_tensor}
    print(f"first minibatch gradient: cosine {first['cosine']:.4f}, norm ratio {first['norm_ratio_bf16_over_fp32']:.3f}; "
          + ", ".join(f"{n} {v['cosine']:.3f}/{v['norm_ratio_bf16_over_fp32']:.2f}" for n, v in per_tensor.items()))
    result = {"benchmark": "rl2_precision_update", "setting": args.setting, "weights": args.weights,
              "trials": cfg.trials_per_update, "kl_trials": KL_TRIALS, "target_kl": cfg.target_kl,
              "epochs": cfg.epochs, "minibatches": cfg.minibatches, "lr": sched["lr"],
              "rollout_mean_total_reward": float(ro.total.mean()), "first_minibatch_gradient": first,
              "updates": runs, "wall_s": time.perf_counter() - t0, "threads": 1, "git_commit": git_commit(),
              "hardware": hardware()}
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"rl2_precision_update_{args.setting}_{args.weights}{'_nokl' if args.no_kl_stop else ''}.json")
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
