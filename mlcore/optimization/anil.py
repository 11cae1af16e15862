"""ANIL (Raghu et al. 2019): Almost No Inner Loop — adapt only the linear head.

The body (the strided Conv-4) is meta-learned by the outer loop but frozen inside the
inner loop, so each task's images go through it once; the inner loop then runs on the
64-d features alone, which makes adaptation cheap and second order nearly free. The
meta-gradient is still exact: it flows through the head's inner updates into the body
via the features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .maml import MAML, Params, adapted_query_loss, resolve_batching


def pool_features(h: torch.Tensor) -> torch.Tensor:
    """The Conv-4 ``embed`` pooling: average what is left spatially (2x2 for the strided net)."""
    return h.mean(dim=(-2, -1)) if h.shape[-1] * h.shape[-2] > 1 else h.flatten(-3)


class ANIL(MAML):
    """MAML's net and recipe (so the two compare directly); only the head adapts in the inner loop."""

    method = "anil"

    @classmethod
    def recipe_deviations(cls) -> dict[str, str]:
        return {"recipe": "Raghu et al. build on MAML's Omniglot setup; MAML's recipe (Finn et al.) is used"}

    def adapt_names(self) -> list[str]:
        return [n for n, _ in self.net.named_parameters() if n.startswith("head.")]

    def task_outputs(self, params: Params, sx, sy, qx, qy, steps: int, first_order: bool, batching: str = "auto"):
        body = {k[len("features."):]: v for k, v in params.items() if k.startswith("features.")}
        head = {k[len("head."):]: v for k, v in params.items() if k.startswith("head.")}
        lrs = self.rates(steps)

        def features(x1):
            return pool_features(functional_call(self.net.features, body, (x1,)))

        def head_loss(zs1, sy1, zq1, qy1):
            return adapted_query_loss(self.net.head, head, zs1, sy1, zq1, qy1, F.cross_entropy, lrs, first_order)

        def one(sx1, sy1, qx1, qy1):
            # separate forward passes keep batch norm's statistics per set, as in MAML
            return head_loss(features(sx1), sy1, features(qx1), qy1)

        # "auto" stays "vmap" here, on the CPU too: the body is not adapted, so its vmapped passes are dense
        # convolutions; task by task ("inner") avoids page faults under glibc's default malloc (1.07 against
        # 1.57 s per 5w1s meta-step) but is slower under keep_freed_memory, which training applies (0.94
        # against 0.73 s; both measured beside other load)
        mode = "vmap" if batching == "auto" else resolve_batching(batching, sx.device)
        if mode == "vmap":
            return vmap(one, randomness="different")(sx, sy, qx, qy)
        if mode == "inner":
            # the body's passes task by task (the whole meta-batch's activations in one block are memory
            # glibc hands back and faults in again every step), the head's inner loops in one vmap
            zs = torch.stack([features(x1) for x1 in sx])
            zq = torch.stack([features(x1) for x1 in qx])
            return vmap(head_loss, randomness="different")(zs, sy, zq, qy)
        pairs = [one(sx[i], sy[i], qx[i], qy[i]) for i in range(sx.shape[0])]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
