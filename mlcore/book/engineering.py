"""Measurements behind chapter 8: speed, memory and reproducibility of meta-learning code.

Every function here measures one engineering choice on the current device and returns a
small JSON-friendly dict; ``benchmarks/engineering.py`` runs them all and writes
``benchmarks/results/engineering_<device>.json``, which the chapter reads. The functions
are device-agnostic (CPU, CUDA) and sized to run in seconds.

Memory: PyTorch's CPU allocator keeps no peak statistics, so two CPU numbers are given:
the bytes the autograd graph holds for the backward pass (:func:`graph_saved_bytes`,
each storage once; this is what grows with inner steps and meta-batch size) and the
process's peak-RSS increase over a full forward+backward (:func:`rss_peak_bytes`, Linux).
On CUDA the functions report ``torch.cuda.max_memory_allocated`` as well.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- timing and memory
def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 10,
              warmup: int = 2) -> dict:
    """Median and min wall time (ms) of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "repeats": repeats}


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device | str = "cpu", repeats: int = 10,
                     warmup: int = 1) -> dict[str, dict]:
    """Time several variants *alternately* (A, B, A, B, ...): on a shared machine a burst of load
    then hits every variant alike, so their ratio stays meaningful. Returns :func:`time_call`-style
    dicts per name."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "repeats": repeats} for k, v in times.items()}


def graph_saved_bytes(output: torch.Tensor) -> int:
    """Bytes of the tensors the autograd graph behind ``output`` holds for its backward pass.

    Walks the graph from ``output.grad_fn`` and reads every node's ``_saved_*`` tensors,
    counting each storage once. (Saved-tensor hooks would be simpler but
    ``torch.func.grad``, which MAML's inner loop uses, refuses to run under them.)
    """
    seen: set[int] = set()
    total = 0
    stack, visited = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                val = getattr(node, attr)
            except RuntimeError:  # already freed
                continue
            for t in (val if isinstance(val, (tuple, list)) else (val,)):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    if st.data_ptr() not in seen:
                        seen.add(st.data_ptr())
                        total += st.nbytes()
        stack.extend(n for n, _ in node.next_functions)
    return total


def rss_peak_bytes(fn: Callable[[], object]) -> int | None:
    """Increase of the process's peak resident memory during ``fn()`` (Linux only, else None).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), runs ``fn`` and reads
    ``VmHWM``. Coarse (the allocator may reuse memory it already holds) but a real peak,
    backward pass included.
    """
    import gc

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise OSError(key)

    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = status("VmRSS")
    except OSError:
        return None
    fn()
    return status("VmHWM") - base


def cuda_peak_bytes(fn: Callable[[], object], device) -> int | None:
    """``torch.cuda.max_memory_allocated`` during ``fn()`` (forward and backward), or None off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


# ----------------------------------------------------------------------------- (a) channels_last
def episode_images(ways: int, shots: int, queries: int = 15, device="cpu", seed: int = 0) -> torch.Tensor:
    """A random (N*(K+Q), 1, 28, 28) batch: the images of one N-way K-shot episode."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(ways * (shots + queries), 1, 28, 28, generator=g).to(device)


def conv4_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One Conv-4 forward + backward on ``x`` (a stand-in loss; the cost is in the convolutions)."""
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
    return step


def channels_last_speed(ways: int, shots: int, device="cpu", repeats: int = 10) -> dict:
    """Conv-4 forward+backward time, default (NCHW) vs channels_last (NHWC) memory format."""
    from ..nets import Conv4

    torch.manual_seed(0)
    x = episode_images(ways, shots, device=device)
    out = {"ways": ways, "shots": shots, "images": x.shape[0]}
    nchw = Conv4().to(device)
    nhwc = Conv4().to(device).to(memory_format=torch.channels_last)
    out.update(time_interleaved({"contiguous": conv4_step(nchw, x),
                                 "channels_last": conv4_step(nhwc, x.contiguous(memory_format=torch.channels_last))},
                                device, repeats=repeats))
    out["speedup"] = out["contiguous"]["median_ms"] / out["channels_last"]["median_ms"]
    return out


# ----------------------------------------------------------------------------- (b) torch.compile
def compile_speed(ways: int, shots: int, device="cpu", repeats: int = 10) -> dict:
    """Conv-4 forward+backward eager vs ``torch.compile`` (default inductor): compile time and step time."""
    from ..nets import Conv4

    torch.manual_seed(0)
    x = episode_images(ways, shots, device=device)
    model = Conv4().to(device)
    compiled = torch.compile(model)
    t0 = time.perf_counter()
    try:
        conv4_step(compiled, x)()
        synchronize(device)
    except Exception as e:  # noqa: BLE001 - no C++ compiler, unsupported platform, ...: recorded, not raised
        return {"ways": ways, "shots": shots, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    compile_s = time.perf_counter() - t0
    t = time_interleaved({"eager": conv4_step(model, x), "compiled": conv4_step(compiled, x)}, device, repeats)
    return {"ways": ways, "shots": shots, **t, "compile_s": compile_s,
            "speedup": t["eager"]["median_ms"] / t["compiled"]["median_ms"]}


def second_order_through_compile(device="cpu") -> dict:
    """What happens when a MAML-style second-order gradient goes through compiled code.

    Two ways in: ``torch.autograd.grad(..., create_graph=True)`` through a compiled
    module, then a backward of the gradient norm; and ``torch.func.grad`` of
    ``torch.func.grad`` of a compiled function. Returns the outcome of each (and the
    first-order case, which works, for contrast).
    """
    from torch.func import functional_call, grad

    from ..nets import MLP

    torch.manual_seed(0)
    model = MLP(1, [40, 40], 1).to(device)
    x = torch.randn(10, 1, device=device)
    compiled = torch.compile(model)
    out: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            out[name] = "ok"
        except Exception as e:  # noqa: BLE001 - whatever fails is the measurement
            out[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"

    def first_order():
        compiled(x).pow(2).mean().backward()

    def create_graph():
        g = torch.autograd.grad(compiled(x).pow(2).mean(), list(model.parameters()), create_graph=True)
        sum(gi.pow(2).sum() for gi in g).backward()

    params = {k: v.detach() for k, v in model.named_parameters()}
    loss = torch.compile(lambda p: functional_call(model, p, (x,)).pow(2).mean())

    eager_loss = lambda p: functional_call(model, p, (x,)).pow(2).mean()

    def func_grad_of_grad():
        outer = lambda f: grad(lambda p: sum(v.pow(2).sum() for v in grad(f)(p).values()))(params)
        got, ref = outer(loss), outer(eager_loss)
        err = max(float((got[k] - ref[k]).abs().max()) for k in ref)
        if err > 1e-4:
            raise AssertionError(f"compiled grad-of-grad differs from eager by {err:.2e}")

    def create_graph_no_donated_buffers():
        import torch._functorch.config as fconfig

        with fconfig.patch(donated_buffer=False):
            fresh = torch.compile(MLP(1, [40, 40], 1).to(device))
            g = torch.autograd.grad(fresh(x).pow(2).mean(), list(fresh.parameters()), create_graph=True)
            sum(gi.pow(2).sum() for gi in g).backward()

    attempt("first_order_backward", first_order)
    attempt("create_graph_double_backward", create_graph)
    attempt("create_graph_double_backward_donated_buffer_off", create_graph_no_donated_buffers)
    attempt("func_grad_of_grad (checked against eager)", func_grad_of_grad)
    return out


# ----------------------------------------------------------------------------- (c) bf16 autocast
def autocast_protonet(learner, episodes: list, device="cpu", dtype: str = "bf16", repeats: int = 5) -> dict:
    """ProtoNet accuracy and speed on the same episodes in fp32 and under ``dtype`` autocast.

    Returns accuracies, the fraction of query predictions that agree, the largest logit
    difference relative to the logit scale, and the median predict time per batch.
    """
    from ..runtime import autocast

    dev = torch.device(device)
    learner = learner.to(dev).eval()
    res: dict = {"dtype": dtype, "episodes": sum(e.batch_size for e in episodes)}
    logits = {}
    for mode in ("fp32", dtype):
        ctx = (lambda: autocast(dev, None)) if mode == "fp32" else (lambda: autocast(dev, dtype))
        outs = []
        with torch.no_grad():
            for ep in episodes:
                with ctx():
                    outs.append(learner.predict_batch(ep).float())
        logits[mode] = torch.cat(outs)
        acc = torch.cat([(o.argmax(-1) == ep.query_y).float().flatten() for o, ep in zip(outs, episodes)])
        res[f"accuracy_{mode}"] = float(acc.mean())

    first = episodes[0]
    timed = type(first)(first.support_x[:1], first.support_y[:1], first.query_x[:1], first.query_y[:1], first.ways,
                        first.shots, first.queries)  # speed: one episode, as at test time

    def run(dtype_or_none):
        def f():
            with torch.no_grad(), autocast(dev, dtype_or_none):
                learner.predict_batch(timed)
        return f
    t = time_interleaved({"fp32": run(None), dtype: run(dtype)}, dev, repeats=repeats)
    res["time_fp32"], res[f"time_{dtype}"] = t["fp32"], t[dtype]
    a, b = logits["fp32"], logits[dtype]
    res["prediction_agreement"] = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    res["max_rel_logit_diff"] = float((a - b).abs().max() / a.abs().max())
    res["speedup"] = res["time_fp32"]["median_ms"] / res[f"time_{dtype}"]["median_ms"]
    return res


def autocast_training_step(ways: int = 60, shots: int = 1, queries: int = 5, device="cpu", repeats: int = 10) -> dict:
    """One ProtoNet training step (meta-loss, backward, Adam) at Snell et al.'s 60-way training shape, timed in
    float32 and under bf16 autocast (:func:`mlcore.engine.fit`'s ``precision``), each in both memory formats.

    The same episode and the same starting weights for every variant; ``speedup_*`` are against float32 in the
    default (NCHW) format. Times are medians of alternating calls (:func:`time_interleaved`).
    """
    import copy

    from ..data import EpisodeSampler, load_split
    from ..engine import _meta_loss_step
    from ..memory.protonet import ProtoNet

    dev = torch.device(device)
    torch.manual_seed(0)
    base = ProtoNet().to(dev)
    ep = EpisodeSampler(load_split("vinyals/train"), ways, shots, queries, device=dev, seed=0).sample()

    def variant(channels_last: bool, precision: str) -> Callable[[], None]:
        learner = copy.deepcopy(base)
        if channels_last:
            learner = learner.to(memory_format=torch.channels_last)
        learner.train()
        opt = torch.optim.Adam(learner.parameters(), 1e-3)
        return lambda: _meta_loss_step(learner, ep, opt, None, precision)

    names = {(cl, pr): f"{pr}{'_channels_last' if cl else ''}" for cl in (False, True) for pr in ("float32", "bfloat16")}
    t = time_interleaved({name: variant(cl, pr) for (cl, pr), name in names.items()}, dev, repeats=repeats)
    out: dict = {"ways": ways, "shots": shots, "queries": queries, "images": ways * (shots + queries), **t}
    ref = t["float32"]["median_ms"]
    for name in names.values():
        if name != "float32":
            out[f"speedup_{name}"] = ref / t[name]["median_ms"]
    return out


# ----------------------------------------------------------------------------- (d) vmap
def maml_setup(ways: int = 5, shots: int = 1, queries: int = 5, meta_batch: int = 8, hidden: int = 64,
               device="cpu", seed: int = 0, image_size: int = 28):
    """A MAML learner and a random meta-batch of the given size (random pixels: cost, not accuracy)."""
    from ..data.episodes import Episode
    from ..optimization.maml import MAML

    torch.manual_seed(seed)
    learner = MAML(ways=ways, hidden=hidden).to(device)
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(meta_batch, ways * shots, 1, image_size, image_size, generator=g).to(device)
    qx = torch.rand(meta_batch, ways * queries, 1, image_size, image_size, generator=g).to(device)
    sy = torch.arange(ways).repeat_interleave(shots).repeat(meta_batch, 1).to(device)
    qy = torch.arange(ways).repeat_interleave(queries).repeat(meta_batch, 1).to(device)
    return learner, Episode(sx, sy, qx, qy, ways, shots, queries)


def maml_meta_step(learner, ep, batching: str = "vmap", inner_steps: int | None = None,
                   first_order: bool | None = None, checkpoint: bool = False) -> Callable[[], torch.Tensor]:
    """A closure computing one MAML meta-loss (and returning it); backward is the caller's."""
    from ..optimization.maml import batched_query_loss

    steps = learner.inner_steps if inner_steps is None else inner_steps
    fo = learner.first_order if first_order is None else first_order

    def loss() -> torch.Tensor:
        params = learner.start_params()
        if not checkpoint:
            losses, _ = batched_query_loss(learner.net, params, ep.support_x, ep.support_y, ep.query_x, ep.query_y,
                                           F.cross_entropy, learner.rates(steps), fo, None, batching)
            return losses.mean()
        return checkpointed_meta_loss(learner, ep, steps, fo)
    return loss


def checkpointed_meta_loss(learner, ep, steps: int, first_order: bool) -> torch.Tensor:
    """MAML meta-loss with each task's inner loop + query loss under activation checkpointing.

    Only the inputs of each task's computation are kept; the backward pass re-runs one
    task's forward (inner gradients included) at a time. Memory becomes O(one task)
    instead of O(meta-batch), for the compute of running every task's forward phase, inner
    gradients included, a second time (chapter 8 measures the ratio).
    """
    from torch.utils.checkpoint import checkpoint

    from ..optimization.maml import adapted_query_loss

    names = [k for k, _ in learner.net.named_parameters()]
    values = [v for _, v in learner.net.named_parameters()]
    lrs = learner.rates(steps)

    def task_loss(sx, sy, qx, qy, *vals):
        params = dict(zip(names, vals))
        return adapted_query_loss(learner.net, params, sx, sy, qx, qy, F.cross_entropy, lrs, first_order)[0]

    # use_reentrant=True: the non-reentrant variant is built on saved-tensor hooks, which
    # torch.func.grad (our inner loop) refuses; see checkpoint_compatibility()
    losses = [checkpoint(task_loss, ep.support_x[i], ep.support_y[i], ep.query_x[i], ep.query_y[i], *values,
                         use_reentrant=True) for i in range(ep.batch_size)]
    return torch.stack(losses).mean()


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing, e.g. on Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def vmap_vs_loop(meta_batch: int = 8, ways: int = 5, shots: int = 1, device="cpu", repeats: int = 5,
                 hidden: int = 64) -> dict:
    """One MAML meta-step (forward + second-order backward) three ways: ``vmap`` over whole tasks, ``vmap`` over
    the inner loops only (query passes task by task), and a Python loop."""
    learner, ep = maml_setup(ways, shots, meta_batch=meta_batch, hidden=hidden, device=device)
    out: dict = {"meta_batch": meta_batch, "ways": ways, "shots": shots, "hidden": hidden}
    grads = {}

    faults: dict[str, list[int]] = {}

    def step(batching: str):
        loss_fn = maml_meta_step(learner, ep, batching=batching)

        def f():
            before = minor_page_faults()
            learner.zero_grad(set_to_none=True)
            loss_fn().backward()
            grads[batching] = torch.cat([p.grad.flatten() for p in learner.parameters() if p.grad is not None])
            faults.setdefault(batching, []).append(minor_page_faults() - before)
        return f
    modes = ("vmap", "inner", "loop")
    out.update(time_interleaved({mode: step(mode) for mode in modes}, device, repeats=repeats))
    for mode in modes:  # memory the step had to fault in afresh: large blocks glibc gave back at the last free
        out[mode]["page_faults"] = statistics.median(faults[mode][-repeats:])
    out["speedup"] = out["loop"]["median_ms"] / out["vmap"]["median_ms"]
    out["speedup_inner"] = out["loop"]["median_ms"] / out["inner"]["median_ms"]
    out["max_grad_diff"] = max(float((grads[m] - grads["loop"]).abs().max()) for m in ("vmap", "inner"))
    return out


def vmap_limits() -> dict:
    """What ``torch.func.vmap`` refuses, each with the error it raises and the workaround used in mlcore."""
    from torch.func import vmap

    xs = torch.randn(4, 3)
    out: dict[str, dict] = {}

    def attempt(name: str, fn: Callable[[], object], workaround: str) -> None:
        try:
            fn()
            out[name] = {"error": None, "workaround": workaround}
        except Exception as e:  # noqa: BLE001 - whatever fails is the measurement
            out[name] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", "workaround": workaround}

    attempt(".item() inside the function", lambda: vmap(lambda x: x * x.sum().item())(xs),
            "keep values as tensors (x * x.sum())")
    attempt("data-dependent Python control flow", lambda: vmap(lambda x: x if x.sum() > 0 else -x)(xs),
            "torch.where(x.sum() > 0, x, -x)")
    bn = nn.BatchNorm1d(3)
    bn.train()
    attempt("BatchNorm running statistics updated in place",
            lambda: vmap(lambda x: bn(x.unsqueeze(0).expand(2, 3)))(xs),
            "BN without running stats (track_running_stats=False) written with plain ops: "
            "mlcore.optimization.maml.TaskBatchNorm2d")
    attempt("in-place write into a captured tensor", lambda: vmap(lambda x: torch.zeros(3).add_(x))(xs),
            "out-of-place ops (torch.zeros(3) + x)")
    return out


# ----------------------------------------------------------------------------- (e) second-order memory
def maml_memory(inner_steps: int, meta_batch: int, first_order: bool = False, checkpoint: bool = False,
                ways: int = 5, shots: int = 1, device="cpu", hidden: int = 64) -> dict:
    """Memory of one MAML meta-step: autograd-saved bytes (any device) and CUDA peak (on CUDA)."""
    learner, ep = maml_setup(ways, shots, meta_batch=meta_batch, hidden=hidden, device=device)
    loss_fn = maml_meta_step(learner, ep, inner_steps=inner_steps, first_order=first_order, checkpoint=checkpoint)
    loss = loss_fn()
    saved = graph_saved_bytes(loss)
    del loss

    def full_step():
        learner.zero_grad(set_to_none=True)
        loss_fn().backward()
    t0 = time.perf_counter()
    full_step()  # warms the allocator, so the peak below is the step's, not first-touch costs
    step_ms = (time.perf_counter() - t0) * 1e3
    rss = rss_peak_bytes(full_step) if torch.device(device).type == "cpu" else None
    peak = cuda_peak_bytes(full_step, device)
    if peak is not None:
        step_ms = time_call(full_step, device, repeats=3, warmup=0)["median_ms"]
    mb = lambda b: None if b is None else b / 2**20
    return {"inner_steps": inner_steps, "meta_batch": meta_batch, "first_order": first_order,
            "checkpoint": checkpoint, "graph_saved_mb": mb(saved), "rss_peak_increase_mb": mb(rss),
            "cuda_peak_mb": mb(peak), "step_ms": step_ms}


def checkpoint_compatibility() -> dict:
    """Which ``torch.utils.checkpoint`` variant works around a ``torch.func.grad`` inner loop."""
    learner, ep = maml_setup(meta_batch=1, hidden=4, image_size=12)
    from torch.utils.checkpoint import checkpoint

    from ..optimization.maml import adapted_query_loss

    names = [k for k, _ in learner.net.named_parameters()]
    vals = [v for _, v in learner.net.named_parameters()]

    def task_loss(*v):
        return adapted_query_loss(learner.net, dict(zip(names, v)), ep.support_x[0], ep.support_y[0], ep.query_x[0],
                                  ep.query_y[0], F.cross_entropy, learner.rates(1), False)[0]
    out = {}
    for reentrant in (False, True):
        try:
            checkpoint(task_loss, *vals, use_reentrant=reentrant).backward()
            out[f"use_reentrant={reentrant}"] = "ok"
        except Exception as e:  # noqa: BLE001 - whatever fails is the measurement
            out[f"use_reentrant={reentrant}"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return out


# ----------------------------------------------------------------------------- (f) determinism
def train_fingerprint(steps: int = 5, seed: int = 0, threads: int | None = None, deterministic: bool = True,
                      channels_last: bool = False, device="cpu") -> dict[str, torch.Tensor]:
    """Train a small ProtoNet for ``steps`` seeded steps on real Omniglot; return its weights (CPU)."""
    from ..data.episodes import EpisodeSampler
    from ..data.omniglot import load_split
    from ..engine import fit
    from ..memory.protonet import ProtoNet
    from ..runtime import seed_everything, set_deterministic

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    set_deterministic(deterministic)
    try:
        seed_everything(seed)
        learner = ProtoNet(hidden=32).to(device)
        if channels_last:
            learner = learner.to(memory_format=torch.channels_last)
        sampler = EpisodeSampler(load_split("vinyals/test"), 5, 1, 5, device=device, seed=seed)
        fit(learner, sampler, steps, lr=1e-3, progress=False, log_every=steps)
        return {k: v.detach().cpu().clone() for k, v in learner.state_dict().items()}
    finally:
        torch.set_num_threads(old_threads)
        set_deterministic(False)


def weights_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    """Bit-identical? And the largest absolute difference between two state dicts."""
    same = all(torch.equal(a[k], b[k]) for k in a)
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    return {"bit_identical": same, "max_abs_diff": diff}


def fingerprint_digest(state: dict[str, torch.Tensor]) -> str:
    """A short hash of the weights' bytes: compare runs across machines by this string."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- profiling
@contextmanager
def quiet_stderr():
    """Silence the process's stderr (file descriptor 2) inside the block.

    The profiler's C++ backend (kineto) prints trace markers straight to fd 2, which
    Python's ``sys.stderr`` redirection cannot catch.
    """
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def profile_step(fn: Callable[[], object], device="cpu", row_limit: int = 8, width: int = 40):
    """Profile one call of ``fn`` with ``torch.profiler``; return (profile, table sorted by self time)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with quiet_stderr(), profile(activities=acts) as prof:
        fn()
        synchronize(device)
    key = "self_cuda_time_total" if torch.device(device).type == "cuda" else "self_cpu_time_total"
    return prof, prof.key_averages().table(sort_by=key, row_limit=row_limit, max_name_column_width=width)
