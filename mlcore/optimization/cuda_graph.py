"""A MAML-family meta-step captured as one CUDA graph.

At Conv-4 size a second-order meta-step on a GPU is launch-bound: thousands of small kernels (the inner
steps, their double backward, the optimizer) each take longer to launch than to run. A CUDA graph records
the whole step once (meta-loss, backward, optimizer step) and replays it with a single launch. What a graph
needs, and this class provides:

* **static inputs**: the graph reads fixed addresses, so each new episode batch is copied into buffers
  allocated once (:meth:`GraphedMetaStep.step`); batches must keep the shape of the first one;
* **a capturable optimizer**: Adam / AdamW built with ``capturable=True`` keep their step counters on the
  device, so the update can be replayed;
* **no host synchronisation inside the step**: MAML's meta-loss has none (no ``.item()``, no data-dependent
  branches; the same discipline ``vmap`` already asks for).

Capture runs a few warm-up steps first (CUDA libraries pick their kernels and allocate workspaces on first
use); the weights and optimizer state are put back afterwards, so the graphed learner starts from exactly
the state it was given. Replays then train exactly like eager steps on the same batches
(``tests/test_gpu.py``; ``benchmarks/maml_cuda_graph.py`` measures the speed-up). Use::

    step = GraphedMetaStep(learner, torch.optim.Adam(learner.parameters(), 1e-3, capturable=True), sampler.sample())
    for _ in range(steps):
        loss, stats = step.step(sampler.sample())
"""
from __future__ import annotations

import torch

from ..data.episodes import Episode

_FIELDS = ("support_x", "support_y", "query_x", "query_y")


def _check_capturable(optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        raise TypeError(f"a graphed meta-step needs Adam or AdamW built with capturable=True, got "
                         f"{type(optimizer).__name__}")
    if not all(group.get("capturable", False) for group in optimizer.param_groups):
        raise ValueError("build the optimizer with capturable=True (e.g. torch.optim.Adam(params, lr, "
                         "capturable=True)): otherwise its step counter lives on the CPU and cannot be replayed")


class GraphedMetaStep:
    """Meta-loss, backward and optimizer step of ``learner`` recorded once as a CUDA graph, then replayed.

    ``example`` fixes the batch shape (ways, shots, queries, meta-batch). ``warmup`` eager steps run on a side
    stream before capture and are then undone: weights and optimizer state are restored in place.
    """

    def __init__(self, learner: torch.nn.Module, optimizer: torch.optim.Optimizer, example: Episode,
                 warmup: int = 3) -> None:
        _check_capturable(optimizer)
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (cuDNN and cuBLAS pick kernels on first use), got {warmup}")
        if example.support_x.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the batch on a CUDA device, got {example.support_x.device}")
        self.learner, self.optimizer = learner, optimizer
        self.static = Episode(*(getattr(example, f).clone() for f in _FIELDS), example.ways, example.shots,
                              example.queries)
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.optimizer.zero_grad(set_to_none=True)
                loss, _ = self.learner.meta_loss(self.static)
                loss.backward()
                self.optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        self._restore(saved)
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # backward then writes fresh gradients into graph memory
        with torch.cuda.graph(self.graph):
            self.loss, self.stats = self.learner.meta_loss(self.static)
            self.loss.backward()
            self.optimizer.step()

    def step(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        """One training step on ``episodes`` (same shape as the example): copy it in, replay the graph.

        Returns the graph's own loss and stats tensors, overwritten by the next replay: read (or clone) them
        before calling ``step`` again.
        """
        for f in _FIELDS:
            src, dst = getattr(episodes, f), getattr(self.static, f)
            if src.shape != dst.shape:
                raise ValueError(f"{f} has shape {tuple(src.shape)}; this graph was captured for "
                                 f"{tuple(dst.shape)} (a new batch shape needs a new GraphedMetaStep)")
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.loss, self.stats

    # -- warm-up leaves no trace
    def _snapshot(self) -> dict:
        params = {p: p.detach().clone() for p in self.learner.parameters()}
        state = {p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in self.optimizer.state.items()}
        return {"params": params, "state": state}

    def _restore(self, saved: dict) -> None:
        with torch.no_grad():
            for p, value in saved["params"].items():
                p.copy_(value)
            for p, s in self.optimizer.state.items():
                for k, v in s.items():
                    if not torch.is_tensor(v):
                        continue
                    before = saved["state"].get(p, {}).get(k)
                    # a state the warm-up created did not exist before: Adam's fresh state is all zeros
                    v.copy_(before) if before is not None else v.zero_()
