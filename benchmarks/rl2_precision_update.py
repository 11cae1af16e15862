"""How far one PPO update moves an RL^2 policy when its passes run in float32 and in bfloat16, from the same start.

    python benchmarks/rl2_precision_update.py mdp_n25 [--weights init|record] [--no-kl-stop]
    python benchmarks/rl2_precision_update.py mdp_n25 --checkpoint RUN_DIR/last.pt

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

``--checkpoint`` starts from a training run's ``last.pt`` instead, with that run's recipe (read from the
checkpoint, whatever ``rl2_config`` says today) at the schedule of its next update, and runs the update twice
per precision: with the Adam state the run had built (``carried``, as training goes on) and with
a fresh Adam. Adam divides each coordinate's step by the root of its running mean square gradient; where that
is tiny (coordinates whose float32 gradients were tiny), a few bfloat16 rounding errors in the new gradient could
move the weight far. To test that, for the carried state it also reports how the first step's length splits over the
quartiles of that root-mean-square (lowest first), in each precision.

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
from mlcore.rl.rl2 import RL2Config, RL2Policy, ppo_update, rl2_schedule, rollout
from mlcore.runtime import git_commit, hardware, keep_freed_memory, seeded_global_rng

KL_TRIALS = 200


@torch.no_grad()
def exact_kl(old_logp: torch.Tensor, policy: RL2Policy, inputs: torch.Tensor) -> float:
    """Mean over trials and steps of KL(old || new) between the action distributions, in float32."""
    new_logp = torch.log_softmax(policy(inputs)[0].float(), -1)
    return float((old_logp.exp() * (old_logp - new_logp)).sum(-1).mean())


class TracingAdam(torch.optim.Adam):
    """Adam that keeps the first step's gradients and, after every step, the policy's KL and distance moved."""

    def __init__(self, policy: RL2Policy, lr: float, inputs: torch.Tensor, state: dict | None = None):
        super().__init__(policy.parameters(), lr=lr, eps=1e-5)  # as train_rl2 builds it
        if state is not None:  # a run's Adam state (moments and step counts), at this update's learning rate
            self.load_state_dict(state)
            for group in self.param_groups:
                group["lr"] = lr
        self.policy, self.inputs = policy, inputs
        self.start = [p.detach().clone() for p in policy.parameters()]
        with torch.no_grad():
            self.old_logp = torch.log_softmax(policy(inputs)[0].float(), -1)
        self.first_grads: list[torch.Tensor] | None = None
        self.first_step: list[torch.Tensor] | None = None
        self.trace: list[dict] = []

    def step(self, closure=None):
        if self.first_grads is None:
            self.first_grads = [p.grad.detach().clone() for p in self.policy.parameters()]
        out = super().step(closure)
        if self.first_step is None:
            self.first_step = [p.detach() - s for p, s in zip(self.policy.parameters(), self.start)]
        moved = math.sqrt(sum(float((p.detach() - s).pow(2).sum()) for p, s in zip(self.policy.parameters(), self.start)))
        self.trace.append({"step": len(self.trace) + 1, "kl": exact_kl(self.old_logp, self.policy, self.inputs),
                           "weights_moved": moved})
        return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-30))


def step_by_rms_quartile(step: list[torch.Tensor], rms: torch.Tensor) -> list[float]:
    """The first step's length in each quartile of the carried Adam root-mean-square (lowest first)."""
    flat = torch.cat([d.flatten() for d in step])
    order = torch.argsort(rms)
    return [float(part.norm()) for part in flat[order].chunk(4)]


def load_checkpoint(path: Path, setting: str) -> tuple[RL2Config, RL2Policy, dict, int]:
    """A training run's recipe (from the checkpoint's fingerprint, not today's ``rl2_config``), policy, Adam state
    and the index of its next update (0-based, as the schedule counts)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = json.loads(state["fingerprint"])["config"]
    if config["spec"] != SPECS[setting]:
        raise SystemExit(f"--checkpoint: {path} trained {config['spec']}, not {setting} ({SPECS[setting]})")
    cfg = RL2Config(**config)
    env = make_env(cfg.spec, 1, 0, "cpu")
    policy = RL2Policy(env.num_states, env.num_actions, cfg.hidden)
    policy.load_state_dict({k.removeprefix("policy."): v for k, v in state["model"].items() if k.startswith("policy.")})
    return cfg, policy, state["optimizer"], int(state["step"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setting", choices=sorted(SPECS))
    ap.add_argument("--weights", choices=("init", "record"), default="init")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a training run's last.pt: start from its weights, at its next update, with its Adam state "
                         "and with a fresh one (overrides --weights)")
    ap.add_argument("--no-kl-stop", action="store_true", help="run every PPO step (target_kl off)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    keep_freed_memory()
    spec = SPECS[args.setting]
    cfg, start, adam_state, update, weights = rl2_config(spec, "full"), None, None, 0, args.weights
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise SystemExit(f"--checkpoint: no file at {args.checkpoint}; pass a run directory's last.pt")
        cfg, start, adam_state, update = load_checkpoint(args.checkpoint, args.setting)
        weights, run_config = f"update{update}", cfg.to_dict()  # before --no-kl-stop changes cfg
    elif args.weights == "record":
        start, _ = load_rl2(ROOT / "results" / f"rl2_{args.setting}.json", "cpu")
    if args.no_kl_stop:
        cfg.target_kl = None
    env = make_env(spec, cfg.trials_per_update, 0, "cpu")
    if start is None:
        with seeded_global_rng(0):  # as train_rl2(seed=0) initialises it
            start = RL2Policy(env.num_states, env.num_actions, cfg.hidden)
    t0 = time.perf_counter()
    ro = rollout(start, env, torch.Generator().manual_seed(0))
    sched = rl2_schedule(cfg, update)
    floor = sched["entropy_floor"] * math.log(env.num_actions)
    adams = {"carried": adam_state, "fresh": None} if adam_state is not None else {"fresh": None}
    rms = None
    if adam_state is not None:  # Adam's bias-corrected root-mean-square gradient per coordinate, as the run left it
        per = [adam_state["state"][i] for i in range(len(list(start.parameters())))]
        beta2 = adam_state["param_groups"][0]["betas"][1]
        rms = torch.cat([(s["exp_avg_sq"] / (1 - beta2 ** float(s["step"]))).sqrt().flatten() for s in per])
    runs, grads = {}, {}
    for adam, state in adams.items():
        for precision in ("float32", "bfloat16"):
            key = precision if len(adams) == 1 else f"{precision}_{adam}_adam"
            cfg.precision = precision
            policy = copy.deepcopy(start).train()
            opt = TracingAdam(policy, sched["lr"], ro.inputs[:KL_TRIALS], copy.deepcopy(state))
            t = time.perf_counter()
            stats = ppo_update(policy, opt, ro, cfg, sched["entropy_coef"], torch.Generator().manual_seed(1), floor)
            runs[key] = {"seconds": time.perf_counter() - t, "ppo_steps": stats["ppo_steps"],
                         "kl_stopped": stats["kl_stopped"], "approx_kl_mean": stats["approx_kl"], "trace": opt.trace}
            grads[precision] = opt.first_grads
            if rms is not None and adam == "carried":
                runs[key]["first_step_by_rms_quartile"] = step_by_rms_quartile(opt.first_step, rms)
            tr = opt.trace
            print(f"{key}: {stats['ppo_steps']} PPO steps (KL stop: {stats['kl_stopped']}), exact KL after "
                  f"step 1 / 4 / last: {tr[0]['kl']:.2e} / {tr[min(3, len(tr) - 1)]['kl']:.2e} / {tr[-1]['kl']:.2e}, "
                  f"weights moved {tr[-1]['weights_moved']:.3f}"
                  + ("; first step by RMS quartile " + " / ".join(f"{v:.4f}" for v in runs[key]["first_step_by_rms_quartile"])
                     if "first_step_by_rms_quartile" in runs[key] else ""), flush=True)
    g32, g16 = grads["float32"], grads["bfloat16"]  # the first minibatch's gradient does not depend on Adam
    names = [n for n, _ in start.named_parameters()]
    flat32, flat16 = torch.cat([g.flatten() for g in g32]), torch.cat([g.flatten() for g in g16])
    per_tensor = {n: {"cosine": cosine(a, b), "norm_ratio_bf16_over_fp32": float(b.norm() / (a.norm() + 1e-30))}
                  for n, a, b in zip(names, g32, g16)}
    first = {"cosine": cosine(flat32, flat16), "norm_ratio_bf16_over_fp32": float(flat16.norm() / flat32.norm()),
             "per_tensor": per_tensor}
    print(f"first minibatch gradient: cosine {first['cosine']:.4f}, norm ratio {first['norm_ratio_bf16_over_fp32']:.3f}; "
          + ", ".join(f"{n} {v['cosine']:.3f}/{v['norm_ratio_bf16_over_fp32']:.2f}" for n, v in per_tensor.items()))
    result = {"benchmark": "rl2_precision_update", "setting": args.setting, "weights": weights, "update": update,
              "trials": cfg.trials_per_update, "kl_trials": KL_TRIALS, "target_kl": cfg.target_kl,
              "epochs": cfg.epochs, "minibatches": cfg.minibatches, "lr": sched["lr"],
              "entropy_floor_nats": floor, "rollout_mean_total_reward": float(ro.total.mean()),
              "first_minibatch_gradient": first, "updates": runs, "wall_s": time.perf_counter() - t0, "threads": 1,
              "git_commit": git_commit(), "hardware": hardware()}
    if args.checkpoint is not None:  # the run's recipe, which the update used (precision: the run's own)
        result["checkpoint_config"] = run_config
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"rl2_precision_update_{args.setting}_{weights}{'_nokl' if args.no_kl_stop else ''}.json")
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
