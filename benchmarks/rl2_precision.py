"""RL^2's PPO passes in bfloat16 against float32 on this CPU: speed, and how far the policy's numbers move.

    python benchmarks/rl2_precision.py [--settings bandit_n100_k5 mdp_n10] [--rounds 3] [--steps 4]

An RL^2 update is one rollout (the GRU stepped once per time step, without gradients) and then
``epochs x minibatches`` PPO passes, each re-reading a minibatch of whole trials through the GRU, forward and
backward. The passes take ~95 % of an update, so ``RL2Config.precision="bfloat16"`` puts only them under
autocast. For each setting this script

* rolls out the committed record's trained policy (``results/rl2_<setting>.pt``) on its recipe's 2,000 trials,
* times ``--steps`` PPO minibatch steps (forward, backward, Adam) in float32 and in bfloat16, alternating
  ``--rounds`` times on copies of the same weights, and reports the median ratio,
* measures what bfloat16 does to the numbers PPO uses: the log-probabilities of the rollout's actions under the
  trained policy (mean and max absolute difference, and the approximate KL that PPO's early stop would see at
  the first minibatch, against the recipe's ``target_kl`` of 0.02).

One thread (as the long runs train). Writes ``benchmarks/results/rl2_precision_cpu.json`` with the hardware.
Whether bfloat16 *trains* as well is a separate question, answered by a training run
(``rl2_long_run.py bandit_n10_k5 --set precision=bfloat16 --name ...``), not by this script.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from mlcore.experiments.rl2_records import SPECS, load_rl2, rl2_config
from mlcore.results import atomic_write_text
from mlcore.rl.envs import make_env
from mlcore.rl.rl2 import ppo_update, rollout
from mlcore.runtime import hardware, keep_freed_memory


def time_ppo_steps(policy, ro, cfg, steps: int) -> float:
    """Seconds per PPO minibatch step: ``steps`` steps of one epoch over the first minibatches."""
    policy = copy.deepcopy(policy).train()
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    cfg = copy.copy(cfg)
    cfg.epochs, cfg.target_kl = 1, None
    trials = steps * (ro.actions.shape[0] // cfg.minibatches)  # `steps` minibatches of the recipe's size
    sub = type(ro)(*(t[:trials] for t in (ro.inputs, ro.actions, ro.logp, ro.values, ro.rewards)))
    cfg.minibatches = steps
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    ppo_update(policy, opt, sub, cfg, entropy_coef=cfg.entropy, generator=gen)
    return (time.perf_counter() - t) / steps


@torch.no_grad()
def logprob_drift(policy, ro) -> dict:
    """How far bfloat16 moves the log-probabilities of the rollout's actions under the same weights."""
    a = ro.actions[..., None]
    lp32 = torch.log_softmax(policy(ro.inputs)[0].float(), -1).gather(-1, a)[..., 0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits16 = policy(ro.inputs)[0]
    lp16 = torch.log_softmax(logits16.float(), -1).gather(-1, a)[..., 0]
    d = lp16 - lp32
    return {"mean_abs_logp_diff": float(d.abs().mean()), "max_abs_logp_diff": float(d.abs().max()),
            "approx_kl": float(((d.exp() - 1) - d).mean()),
            "fp32_sequence_vs_rollout_max_abs_logp_diff": float((lp32 - ro.logp).abs().max())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["bandit_n100_k5", "mdp_n10"], choices=sorted(SPECS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="PPO minibatch steps timed per round and precision")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rl2_precision_cpu.json")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        raise SystemExit(f"--rounds and --steps must be >= 1, got {args.rounds} and {args.steps}")
    torch.set_num_threads(1)
    keep_freed_memory()
    rows = []
    for key in args.settings:
        policy, rec = load_rl2(ROOT / "results" / f"rl2_{key}.json", "cpu")
        cfg = rl2_config(SPECS[key], "full")
        env = make_env(SPECS[key], cfg.trials_per_update, 0, "cpu")
        t = time.perf_counter()
        ro = rollout(policy, env, torch.Generator().manual_seed(0))
        rollout_s = time.perf_counter() - t
        per = {"float32": [], "bfloat16": []}
        for _ in range(args.rounds):  # alternating, so that load from other work falls on both alike
            for precision, times in per.items():
                cfg.precision = precision
                times.append(time_ppo_steps(policy, ro, cfg, args.steps))
        ratios = [a / b for a, b in zip(per["float32"], per["bfloat16"])]
        cfg.precision = "float32"
        passes = cfg.epochs * cfg.minibatches
        fp32_s, bf16_s = statistics.median(per["float32"]), statistics.median(per["bfloat16"])
        row = {"setting": key, "record": rec.name, "trials": cfg.trials_per_update,
               "steps_per_trial": env.steps_per_trial, "minibatch_trials": cfg.trials_per_update // cfg.minibatches,
               "rollout_s": rollout_s, "ppo_step_s": {"float32": fp32_s, "bfloat16": bf16_s},
               "ppo_step_s_per_round": per, "speedup_per_round": ratios, "speedup": statistics.median(ratios),
               "update_s_estimate": {"float32": rollout_s + passes * fp32_s, "bfloat16": rollout_s + passes * bf16_s},
               **logprob_drift(policy, ro)}
        rows.append(row)
        print(f"{key}: PPO step {1e3 * fp32_s:.0f} ms float32, {1e3 * bf16_s:.0f} ms bfloat16 -> x{row['speedup']:.2f}; "
              f"a whole update ~{row['update_s_estimate']['float32']:.1f} s -> ~{row['update_s_estimate']['bfloat16']:.1f} s; "
              f"log-prob drift mean {row['mean_abs_logp_diff']:.1e}, max {row['max_abs_logp_diff']:.1e}, "
              f"approx KL {row['approx_kl']:.1e} (target_kl {rl2_config(SPECS[key], 'full').target_kl})")
    result = {"benchmark": "rl2_precision", "rounds": args.rounds, "steps": args.steps, "threads": 1,
              "rows": rows, "hardware": hardware()}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
