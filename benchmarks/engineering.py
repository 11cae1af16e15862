"""Chapter 8's engineering measurements on this machine; writes ``benchmarks/results/engineering_<device>.json``.

Sections (``--only`` picks some; results of sections not rerun are kept in the file):

* ``channels_last``  Conv-4 forward+backward, NCHW vs NHWC, 5-way 1-shot and 20-way 5-shot episodes (15 queries)
* ``compile``        the same step eager vs ``torch.compile`` (compile time too). On a CPU without
                     ``--compile-cpu`` this is skipped: inductor took 81.5 s to compile Conv-4 fwd+bwd
                     on the busy 2-core machine (the JSON says so)
* ``compile_second_order``  second-order gradients through compiled code: what works, what raises
* ``autocast``       ProtoNet predictions in fp32 vs bf16 autocast on the same 200 fixed test episodes
                     (the 5-way 1-shot reference record if present, else a briefly trained model)
* ``vmap``           one MAML meta-step, ``vmap`` over tasks vs a Python loop; and what vmap refuses
* ``memory``         MAML meta-step memory vs inner steps and meta-batch; first order; checkpointing
* ``determinism``    same seed twice, threads, memory format: bit-identical or not

    python benchmarks/engineering.py                 # this machine's default device
    python benchmarks/engineering.py --device cuda   # on a GPU (about a minute)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "benchmarks" / "results"
SECTIONS = ("channels_last", "compile", "compile_second_order", "autocast", "vmap", "memory", "determinism")


def sizes(device: torch.device) -> dict:
    """Problem sizes per device: the CPU runs are sized for a shared 2-core machine."""
    if device.type == "cuda":
        return {"repeats": 20, "maml_hidden": 64, "vmap_batch": 32, "vmap_hidden": 64, "mem_steps": [1, 2, 3, 5],
                "mem_batches": [1, 4, 16, 32], "ckpt_batch": 16, "autocast_episodes": 200}
    # vmap vs loop at the paper's 5w1s training shape (meta-batch 32, Conv-4 64): which wins depends on it
    return {"repeats": 5, "maml_hidden": 16, "vmap_batch": 32, "vmap_hidden": 64, "mem_steps": [1, 2, 3],
            "mem_batches": [1, 2, 4], "ckpt_batch": 4, "autocast_episodes": 100}


def protonet_for_autocast(device: torch.device) -> tuple[torch.nn.Module, str]:
    from mlcore.results import RESULTS_DIR

    rec = RESULTS_DIR / "protonet_omniglot_5w1s.json"
    if rec.exists():
        from mlcore.runs import load

        return load(rec, device), "reference record protonet_omniglot_5w1s (full budget)"
    from mlcore.data import EpisodeSampler, load_split
    from mlcore.engine import fit
    from mlcore.memory.protonet import ProtoNet
    from mlcore.runtime import seed_everything

    seed_everything(0)
    learner = ProtoNet().to(device)
    steps = 60
    fit(learner, EpisodeSampler(load_split("vinyals/trainval"), 20, 1, 5, device=device, seed=0), steps,
        progress=False, log_every=steps)
    return learner, f"ProtoNet trained here for {steps} steps of 20-way 1-shot (no reference record yet)"


def run(section: str, device: torch.device, sz: dict, compile_cpu: bool) -> dict:
    from mlcore.book import engineering as E

    if section == "channels_last":
        return {f"{n}w{k}s": E.channels_last_speed(n, k, device, repeats=sz["repeats"]) for n, k in ((5, 1), (20, 5))}
    if section == "compile":
        if device.type == "cpu" and not compile_cpu:
            return {"skipped": "on a CPU the first call of a compiled Conv-4 forward+backward (inductor, 30 "
                               "images) compiles for over a minute (81.5 s, measured once on two busy cores); "
                               "rerun with --compile-cpu to time it"}
        return {f"{n}w{k}s": E.compile_speed(n, k, device, repeats=sz["repeats"]) for n, k in ((5, 1), (20, 5))}
    if section == "compile_second_order":
        return E.second_order_through_compile(device)
    if section == "autocast":
        from mlcore.engine import test_sampler

        learner, source = protonet_for_autocast(device)
        eps = list(test_sampler(5, 1, 15, device=device).fixed_set(sz["autocast_episodes"], seed=2017, chunk=50))
        out = {"model": source}
        for dt in ("bf16",) + (("fp16",) if device.type == "cuda" else ()):
            out[dt] = E.autocast_protonet(learner, eps, device, dt, repeats=sz["repeats"])
        out["training_step"] = E.autocast_training_step(device=device, repeats=sz["repeats"])
        return out
    if section == "vmap":
        return {"speed": E.vmap_vs_loop(meta_batch=sz["vmap_batch"], device=device, repeats=max(2, sz["repeats"] // 2),
                                        hidden=sz["vmap_hidden"]),
                "limits": E.vmap_limits()}
    if section == "memory":
        h = sz["maml_hidden"]
        b_fix, s_fix = sz["mem_batches"][-1], 1
        rows = []
        for s in sz["mem_steps"]:
            for fo in (False, True):
                rows.append(E.maml_memory(s, b_fix, first_order=fo, device=device, hidden=h))
        for b in sz["mem_batches"][:-1]:
            rows.append(E.maml_memory(s_fix, b, device=device, hidden=h))
        for ck in (False, True):
            rows.append(E.maml_memory(sz["mem_steps"][-1], sz["ckpt_batch"], checkpoint=ck, device=device, hidden=h))
        return {"hidden": h, "ways": 5, "shots": 1, "queries": 5, "rows": rows,
                "checkpoint_variants": E.checkpoint_compatibility()}
    if section == "determinism":
        a = E.train_fingerprint(seed=0, device=device)
        b = E.train_fingerprint(seed=0, device=device)
        out = {"same_seed_twice": E.weights_diff(a, b), "digest": E.fingerprint_digest(a),
               "other_seed": E.weights_diff(a, E.train_fingerprint(seed=1, device=device))}
        if device.type == "cpu":
            threads = torch.get_num_threads()
            other = 1 if threads > 1 else 2
            out["threads"] = {"default": threads, "other": other,
                              **E.weights_diff(a, E.train_fingerprint(seed=0, threads=other, device=device))}
        out["channels_last"] = E.weights_diff(a, E.train_fingerprint(seed=0, channels_last=True, device=device))
        out["nondeterministic_mode"] = E.weights_diff(a, E.train_fingerprint(seed=0, deterministic=False,
                                                                                device=device))
        return out
    raise ValueError(f"unknown section {section!r}; choose from {SECTIONS}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None)
    p.add_argument("--only", default=None, help=f"comma-separated sections of {SECTIONS}")
    p.add_argument("--compile-cpu", action="store_true", help="also time torch.compile on the CPU (slow)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="run under mlcore.runtime.keep_freed_memory, as the CLI trains; stored as '<section>@keep_freed_memory'")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("MLCORE_DATA", str(ROOT.parent / "shared" / "data"))
    sys.path.insert(0, str(ROOT))
    from mlcore.runtime import get_device, hardware, keep_freed_memory

    # a plain Python process (a notebook) runs with glibc's default; `python -m mlcore train` keeps freed memory
    malloc = "keep freed memory" if args.keep_freed_memory and keep_freed_memory() else "glibc default"
    device = get_device(args.device)
    sz = sizes(device)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    out_path = Path(args.out) if args.out else OUT_DIR / f"engineering_{device.type}.json"
    data = json.loads(out_path.read_text()) if out_path.exists() else {"sections": {}}
    for name in sections:
        t0 = time.perf_counter()
        res = run(name, device, sz, args.compile_cpu)
        key = f"{name}@keep_freed_memory" if malloc == "keep freed memory" else name
        data["sections"][key] = {"result": res, "hardware": hardware(), "device": str(device),
                                  "wall_s": time.perf_counter() - t0, "sizes": sz, "malloc": malloc,
                                  "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
        print(json.dumps({name: res}, default=str)[:2000], flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(data, indent=1, default=str))
    print(json.dumps({"written": str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
