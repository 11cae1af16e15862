"""Where "generalises to new tasks" stops: a learner meta-trained on Omniglot, tested on digits.

Meta-learning promises fast adaptation to *new tasks from the same distribution*. To see what
happens when the distribution changes, we score a learner trained on Omniglot characters on
5-way K-shot episodes of handwritten **digits**: scikit-learn's bundled ``load_digits`` (1,797
images, 8x8 pixels, 16 grey levels, from the UCI "Optical Recognition of Handwritten Digits" set;
it ships inside scikit-learn, so nothing is downloaded). The digits are scaled to ink = 1 on a 0
background (Omniglot's convention), upsampled bilinearly to 20x20 and padded to 28x28 (Omniglot's
characters sit inside a margin too), so image size and framing match what the network saw in
training; strokes are thicker and blurrier than Omniglot's pen strokes -- that *is* part of the shift.

Both domains are scored on fixed, seeded episodes with the same ways, shots and queries, next to a
no-learning yardstick, nearest class-mean in pixel space (:class:`PixelCentroids`), so the table
says how much the meta-learned embedding adds over raw pixels in each domain.

:func:`reproduce` has the registry's ``fn`` signature and writes ``domain_shift_digits.json``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import budget as budget_mod
from ..data.episodes import Episode
from ..engine import EVAL_SEED, evaluate, test_sampler
from ..results import RESULTS_DIR, Record, load_record, save_record
from ..runtime import get_device, git_commit, hardware

DIGITS_SOURCE = ("scikit-learn load_digits: 1,797 8x8 handwritten digits (UCI Optical Recognition of "
                 "Handwritten Digits test set), bundled with scikit-learn, no download")


def load_digits_28(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits as ``(images (n, 1, size, size) float in [0, 1], ink = 1; labels (n,))``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits domain-shift test needs scikit-learn (pip install scikit-learn); "
                          "its load_digits data ship inside the package, nothing is downloaded") from e
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # 16 = full ink, 0 = background
    # the 8x8 digits fill their frame; Omniglot characters sit inside a margin: upsample to 5/7 of the
    # side and pad, so the frame is not a trivial difference between the domains
    inner = round(size * 5 / 7)
    x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    pad = (size - inner) // 2
    x = F.pad(x, (pad, size - inner - pad, pad, size - inner - pad))
    return x, torch.as_tensor(d.target, dtype=torch.long)


class DigitEpisodes:
    """Seeded N-way K-shot Q-query episodes of digits, with the ``fixed_set`` that
    :func:`mlcore.engine.evaluate` uses.

    Each episode picks N of the 10 digit classes, then K + Q distinct images of each (every class
    has >= 174 images). Labels are 0..N-1 class-major, as in :class:`mlcore.data.episodes.EpisodeSampler`.
    """

    def __init__(self, ways: int = 5, shots: int = 1, queries: int = 15, device=None,
                 images: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        if images is None:
            images, labels = load_digits_28()
        self.num_classes = int(labels.max()) + 1
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(self.num_classes)]
        smallest = min(len(i) for i in self.by_class)
        if not 2 <= ways <= self.num_classes:
            raise ValueError(f"ways must be in [2, {self.num_classes}] for digits, got {ways}")
        if shots < 1 or queries < 1 or shots + queries > smallest:
            raise ValueError(f"need shots >= 1, queries >= 1 and shots + queries <= {smallest} "
                             f"(images in the smallest digit class); got {shots} + {queries}")
        self.images = images
        self.ways, self.shots, self.queries = ways, shots, queries
        self.device = get_device(device)

    def _episode(self, g: torch.Generator, b: int) -> Episode:
        n, k, q = self.ways, self.shots, self.queries
        idx = torch.empty(b, n, k + q, dtype=torch.long)
        cls = torch.empty(b, n, dtype=torch.long)
        for i in range(b):
            cls[i] = torch.randperm(self.num_classes, generator=g)[:n]
            for j, c in enumerate(cls[i].tolist()):
                pool = self.by_class[c]
                idx[i, j] = pool[torch.randperm(len(pool), generator=g)[: k + q]]
        x = self.images[idx].to(self.device)  # (B, N, K+Q, 1, H, W)
        labels = torch.arange(n, device=self.device)
        sx = x[:, :, :k].reshape(b, n * k, *x.shape[3:])
        qx = x[:, :, k:].reshape(b, n * q, *x.shape[3:])
        sy = labels.repeat_interleave(k).expand(b, n * k).contiguous()
        qy = labels.repeat_interleave(q).expand(b, n * q).contiguous()
        return Episode(sx, sy, qx, qy, n, k, q, cls.to(self.device))

    def fixed_set(self, num_episodes: int, seed: int, chunk: int = 100):
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        g = torch.Generator().manual_seed(seed)
        done = 0
        while done < num_episodes:
            b = min(chunk, num_episodes - done)
            yield self._episode(g, b)
            done += b


class PixelCentroids(torch.nn.Module):
    """No learning at all: classify a query by its nearest class mean in raw pixel space."""

    needs_grad_at_test = False

    def predict_batch(self, ep: Episode) -> torch.Tensor:
        b, n = ep.support_x.shape[0], ep.ways
        s = ep.support_x.flatten(2)  # (B, N*K, D)
        onehot = F.one_hot(ep.support_y, n).float()  # (B, N*K, N)
        protos = onehot.transpose(1, 2) @ s / onehot.sum(1)[..., None]  # (B, N, D)
        return -torch.cdist(ep.query_x.flatten(2), protos) ** 2


def score_domains(learner, shots: int, ways: int = 5, queries: int = 15, episodes: int = 1000,
                  seed: int = EVAL_SEED, device=None) -> dict:
    """Accuracy (± 95 % CI) of ``learner`` and of pixel centroids on Omniglot test and digit episodes."""
    device = get_device(device)
    samplers = {"omniglot": test_sampler(ways, shots, queries, "vinyals/test", device),
                "digits": DigitEpisodes(ways, shots, queries, device)}
    out: dict = {}
    for domain, sampler in samplers.items():
        out[domain] = {}
        for who, model in (("learner", learner), ("pixels", PixelCentroids().to(device))):
            r = evaluate(model, sampler, episodes, seed=seed)
            out[domain][who] = {"accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["episodes"]}
    for domain in samplers:
        out[domain]["gain_over_pixels"] = out[domain]["learner"]["accuracy"] - out[domain]["pixels"]["accuracy"]
    return out


def _source_learner(source: str, budget: str, seed: int, out_dir: Path, device):
    """The trained learner named by ``source`` (a record in ``results/``), trained here if absent."""
    from ..runs import load, train_and_record

    path = RESULTS_DIR / f"{source}.json"
    if budget == "full" and path.exists():
        return load(path, device), load_record(path)
    method, _, rest = source.partition("_omniglot_")
    ways, shots = (int(v) for v in rest.rstrip("s").split("w"))
    rec_path = train_and_record(method, ways, shots, budget=budget, seed=seed, out_dir=out_dir, device=device,
                                name=f"{source}_{budget}_for_domain_shift", progress=False)
    return load(rec_path, device), load_record(rec_path)


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
              source: str = "protonet_omniglot_5w1s", shots: tuple[int, ...] = (1, 5), **_ignored) -> list[Path]:
    """Score ``source`` (default: the ProtoNet 5-way 1-shot record) on Omniglot vs digits; write one record."""
    budget = budget_mod.current_budget(budget)
    out = Path(out_dir) if out_dir is not None else (RESULTS_DIR if budget == "full" else Path("runs"))
    device = get_device(device)
    t0 = time.perf_counter()
    learner, src = _source_learner(source, budget, seed, out, device)
    n_ep = budget_mod.pick(budget, smoke=100, full=1000)
    metrics = {f"{k}shot": score_domains(learner, k, episodes=n_ep, device=device) for k in shots}
    metrics["digits_source"] = DIGITS_SOURCE
    metrics["source_record"] = src.name
    first = metrics[f"{shots[0]}shot"]
    rec = Record(name="domain_shift_digits" + ("" if budget == "full" else f"_{budget}"), method=src.method,
                 dataset="omniglot->digits", split="sklearn_digits", ways=5, shots=shots[0],
                 accuracy=first["digits"]["learner"]["accuracy"], ci95=first["digits"]["learner"]["ci95"],
                 episodes=n_ep, seed=seed,
                 config={"source_record": src.name, "source_steps": (src.config.get("recipe") or {}).get("steps"),
                         "ways": 5, "shots": list(shots), "queries": 15, "eval_seed": EVAL_SEED,
                         "digits_preprocessing": "x/16 (ink = 1), bilinear 8x8 -> 20x20, zero-padded to 28x28"},
                 metrics=metrics, hardware=hardware(), wall_s=time.perf_counter() - t0,
                 train_wall_s=src.train_wall_s, git_commit=git_commit(), budget=budget)
    return [save_record(rec, out)]


def evaluate_record(record_path, episodes: int | None = None, seed: int = 123, device=None) -> dict:
    """``python -m mlcore eval`` hook: re-score the source learner on fresh episodes drawn with ``seed``."""
    from ..runs import load

    rec = load_record(record_path)
    src = RESULTS_DIR / f"{rec.config['source_record']}.json"
    if not src.exists():
        src = Path(getattr(rec, "_path", src)).parent / f"{rec.config['source_record']}.json"
    learner = load(src, device)
    res = {f"{k}shot": score_domains(learner, k, episodes=episodes or 1000, seed=seed, device=device)
           for k in rec.config["shots"]}
    return {"record": rec.name, "seed": seed, **{k: {d: round(v[d]["learner"]["accuracy"], 4)
                                                     for d in ("omniglot", "digits")} for k, v in res.items()}}


def ink_statistics(x: torch.Tensor) -> dict:
    """Mean ink per image and fraction of pixels with ink > 0.5: how the two domains differ at a glance."""
    return {"mean_ink": float(x.mean()), "inked_fraction": float((x > 0.5).float().mean()),
            "n": int(x.shape[0]), "std_ink": float(x.flatten(1).mean(1).std()) if x.shape[0] > 1 else math.nan}


__all__ = ["DIGITS_SOURCE", "load_digits_28", "DigitEpisodes", "PixelCentroids", "score_domains", "reproduce",
           "evaluate_record", "ink_statistics"]
