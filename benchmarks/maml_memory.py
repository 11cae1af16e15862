"""Peak memory and time per MAML meta-step versus inner steps, second vs first order.

Omniglot 5-way 1-shot, 5 queries per class, strided Conv-4, meta-batch 32 (default).
On the CPU each configuration runs in its own subprocess so peaks do not leak into each other:

* GPU: ``torch.cuda.max_memory_allocated`` during one meta-step (forward + backward),
  minus what was allocated before it.
* CPU: the peak of the process's resident set during the meta-steps (sampled every
  millisecond by a thread), over the resident set just before them (PyTorch's CPU
  allocator hands tensors straight to malloc, so this tracks what the step keeps alive,
  mostly the autograd graph). Loading the data set happens before, so its peak is excluded.

Also used for the per-setting step times of the chapter (``--settings``: the recipe of
every Omniglot reproduction at its full meta-batch). Writes
``benchmarks/results/maml_memory_<device>.json``.

    python benchmarks/maml_memory.py [--device cuda] [--steps 1 2 3 5 10] [--settings]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

OUT_DIR = Path(__file__).resolve().parent / "results"


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(method: str, ways: int, shots: int, inner_steps: int | None, first_order: bool | None,
                meta_batch: int | None, device_name: str | None, repeats: int) -> dict:
    """One configuration in this process: peak extra memory (MiB) and seconds per meta-step."""
    from mlcore.data import EpisodeSampler, load_split
    from mlcore.registry import learner_class
    from mlcore.runtime import get_device

    device = get_device(device_name)
    cls = learner_class(method)
    recipe = cls.recipe(ways, shots, "full")
    cfg = dict(recipe.model)
    if inner_steps is not None:
        cfg["inner_steps"] = inner_steps
    if first_order is not None and "first_order" in cfg:
        cfg["first_order"] = first_order
    mb = meta_batch or recipe.meta_batch
    torch.manual_seed(0)
    learner = cls.from_config(cfg).to(device)
    sampler = EpisodeSampler(load_split(recipe.train_split), ways, shots, recipe.queries, batch_size=mb,
                             device=device, seed=0)
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-3)

    def step():
        loss, _ = learner.meta_loss(sampler.sample())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        step()  # warm-up (kernels, allocator pools)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        # the first step on fresh memory: later steps reuse what malloc kept and would show ~0
        base = _rss_mib()
        peak_box, stop = [base], threading.Event()

        def sample_rss():
            while not stop.is_set():
                peak_box[0] = max(peak_box[0], _rss_mib())
                time.sleep(0.001)

        sampler_thread = threading.Thread(target=sample_rss, daemon=True)
        sampler_thread.start()
        step()
        stop.set()
        sampler_thread.join()
        peak = peak_box[0] - base
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"method": method, "ways": ways, "shots": shots, "inner_steps": cfg.get("inner_steps"),
            "first_order": cfg.get("first_order"), "meta_batch": mb, "queries": recipe.queries,
            "s_per_meta_step": elapsed / repeats,
            # CPU time of this process: on a shared, overloaded CPU this is the contention-free cost
            "cpu_s_per_meta_step": cpu / repeats, "threads": torch.get_num_threads(), "peak_mib": peak, "device": device.type}


def run_subprocess(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, nargs="*", default=[1, 2, 3, 5])
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--settings", action="store_true", help="also time every Omniglot reproduction's recipe")
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=6, metavar=("METHOD", "WAYS", "SHOTS", "STEPS", "ORDER", "MB"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    from mlcore.runtime import get_device, hardware

    device = get_device(args.device)
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    if args.one:
        m, w, k, s, order, mb = args.one
        print(json.dumps(measure_one(m, int(w), int(k), None if s == "-" else int(s),
                                     None if order == "-" else order == "first", None if mb == "-" else int(mb),
                                     str(device), repeats)))
        return 0
    common = ["--device", str(device), "--repeats", str(repeats)]

    def run_child(child_args: list[str]) -> dict:
        if device.type == "cuda":  # the CUDA peak counter resets per configuration: no subprocess needed
            m, w, k, s, order, mb = child_args[:6]
            return measure_one(m, int(w), int(k), None if s == "-" else int(s),
                               None if order == "-" else order == "first", None if mb == "-" else int(mb),
                               str(device), repeats)
        return run_subprocess(child_args)

    out = Path(args.out) if args.out else OUT_DIR / f"maml_memory_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    settings: list[dict] = []

    def write() -> None:  # after every row, so an interrupted run keeps what it measured
        out.write_text(json.dumps({"benchmark": "maml_memory", "setting": "Omniglot 5w1s, 5 queries/class, strided "
                                   "Conv-4 (rows); each reproduction's own recipe (settings)", "device": device.type,
                                   "repeats": repeats, "rows": rows, "settings": settings,
                                   "hardware": hardware()}, indent=1) + "\n")

    for order in ("second", "first"):
        for s in args.steps:
            r = run_child(["maml", "5", "1", str(s), order, str(args.meta_batch), *common])
            rows.append(r)
            write()
            print(f"{order:6s} order, {s:2d} inner steps: {r['s_per_meta_step']:.3f} s/meta-step, "
                  f"peak +{r['peak_mib']:.0f} MiB", flush=True)
    if args.settings:
        from mlcore.optimization import REPRODUCTIONS

        for name, spec in REPRODUCTIONS.items():
            if "fn" in spec:  # the sinusoid record is not a Conv-4 learner
                continue
            r = run_child([spec["method"], str(spec["ways"]), str(spec["shots"]), "-", "-", "-", *common])
            r["name"] = name
            settings.append(r)
            write()
            print(f"{name}: {r['s_per_meta_step']:.3f} s/meta-step, {r.get('cpu_s_per_meta_step', float('nan')):.3f} "
                  f"CPU s/meta-step (meta-batch {r['meta_batch']}), "
                  f"peak +{r['peak_mib']:.0f} MiB", flush=True)
    write()
    print(f"wrote {out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
