"""How a few-shot accuracy was measured, as data, and scoring a learner under a given protocol.

Two numbers for "the same method" can differ by several points because of how they were
measured, not what was learned. The one that matters most on Omniglot is **batch norm at
test**: a net that normalises the queries with the statistics of the query batch itself
(*transductive*: each prediction depends on the other queries) scores higher than one that
uses statistics fixed in training or computed from the support set. MAML's, Reptile's and
Relation Networks' published numbers are transductive; Prototypical Networks' are not.
Then: how many queries per class (under batch statistics the batch size matters), how many
test episodes, how many adaptation steps, and how the checkpoint was chosen (the last one,
the best on validation, or — as in the Relation Network code — the best on the test set).

Every published number in :mod:`mlcore.reference` carries a :class:`Protocol`; every record is
scored under :data:`the book's protocol <book_protocol>` (non-transductive wherever the method
allows, so methods compare fairly) and, where the paper's differs, under the paper's.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from torch import nn

#: How batch norm normalises at test, one of six modes. "running" means statistics fixed in training (eval mode);
#: "support": every query normalised with the support set's statistics (the MAML family's non-transductive mode);
#: "per_query": each query in one batch with the support set only (Nichol et al.'s non-transductive);
#: "batch": the statistics of the test batch itself (transductive); "none": the net has no batch norm;
#: "not stated": the paper does not say, so no score is computed under its protocol.
BATCH_NORM_MODES = ("running", "support", "per_query", "batch", "none", "not stated")
SELECTIONS = ("last", "validation", "test", "not stated")
_WORDS = {"running": "batch norm with training statistics",
          "support": "queries normalised with the support set's statistics",
          "per_query": "each query normalised together with the support set",
          "batch": "batch norm with the test batch's statistics (transductive)", "none": "no batch norm",
          "not stated": "batch norm at test not stated"}


@dataclass(frozen=True)
class Protocol:
    """How a test accuracy is measured.

    ``queries`` per class: an int, ``"shots"`` (as many as the support shots), or None (not stated).
    ``test_steps``: adaptation steps at test (None: the method's own). ``selection``: which
    checkpoint is scored. ``training``, ``augmentation``: what the model saw, in words.
    """

    batch_norm: str
    queries: int | str | None = 15
    episodes: int | None = 1000
    test_steps: int | None = None
    selection: str = "last"
    training: str = "Vinyals split, rotations as classes"
    augmentation: str = ""
    image_size: int = 28
    note: str = ""

    def __post_init__(self):
        if self.batch_norm not in BATCH_NORM_MODES:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_MODES}, got {self.batch_norm!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if not (self.queries is None or self.queries == "shots" or (isinstance(self.queries, int)
                                                                    and self.queries >= 1)):
            raise ValueError(f"queries must be an int >= 1, 'shots' or None, got {self.queries!r}")

    @property
    def transductive(self) -> bool:
        return self.batch_norm == "batch"

    @property
    def scorable(self) -> bool:
        """Whether a record can be re-scored under this protocol (its test-time conditions are all stated)."""
        return self.batch_norm != "not stated" and self.queries is not None

    def queries_for(self, shots: int) -> int:
        if self.queries is None:
            raise ValueError("this protocol does not state its queries per class")
        return shots if self.queries == "shots" else int(self.queries)

    def words(self, shots: int | None = None) -> str:
        """One line a table can print: ``"transductive BN, 1 query/class, 600 episodes, last checkpoint"``."""
        q = ("queries not stated" if self.queries is None else
             f"{self.queries_for(shots) if shots is not None else 'K'} quer{'y' if self.queries_for(shots or 1) == 1 else 'ies'}/class")
        parts = [_WORDS[self.batch_norm], q]
        if self.episodes:
            parts.append(f"{self.episodes:,} episodes")
        if self.test_steps:
            parts.append(f"{self.test_steps} test steps")
        parts.append({"last": "last checkpoint", "validation": "checkpoint chosen on validation",
                      "test": "checkpoint chosen on the test set", "not stated": "selection not stated"}[self.selection])
        if self.augmentation:
            parts.append(self.augmentation)
        if self.image_size != 28:
            parts.append(f"{self.image_size}×{self.image_size} images")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


_SPLIT_WORDS = {"vinyals/trainval": "Vinyals train+val", "vinyals/train": "Vinyals train",
                "background": "the 30 background alphabets", "evaluation": "the 20 evaluation alphabets"}


def training_words(recipe: dict) -> str:
    """What a record trained on, in words, from its recipe: the split and how the 90° rotations entered.

    ``{"train_split": "vinyals/train", "episode_rotation": True}`` reads
    ``"Vinyals train, one random 90° rotation per episode"``; Lake's alphabet splits have no rotations.
    """
    split = recipe.get("train_split", "vinyals/trainval")
    where = _SPLIT_WORDS.get(split, split)
    if not split.startswith("vinyals/"):
        return f"{where}, no rotations"
    if recipe.get("within_alphabet"):
        return f"{where}, rotations as classes, episodes within one alphabet"
    if recipe.get("episode_rotation"):
        return f"{where}, one random 90° rotation per episode"
    return f"{where}, rotations as classes"


def batch_norm_kind(learner: nn.Module) -> str:
    """Which test-time batch norm a learner offers without the test batch: "running", "support" or "none"."""
    if hasattr(learner, "test_batch_norm"):
        return "support"
    has_running = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                      for m in learner.modules())
    return "running" if has_running else "none"


def book_protocol(learner: nn.Module) -> Protocol:
    """The book's protocol: no query sees another (non-transductive), 15 queries/class, 1,000 episodes, last checkpoint.

    For the MAML family, whose batch norm keeps no training statistics, the queries are normalised with the
    support set's statistics: as cheap as a transductive pass. (Nichol et al.'s "per_query", each query in
    a batch with the support set, costs n + 1 forward passes per query: 50 CPU-minutes for one 20-way record.)
    """
    return Protocol(batch_norm=batch_norm_kind(learner))


@contextmanager
def batch_norm_at_test(learner: nn.Module, mode: str):
    """Within the block, ``learner`` normalises its test queries the way ``mode`` says; restored after."""
    from .nets import batch_statistics

    kind = batch_norm_kind(learner)
    if mode in ("none", kind) and kind != "support":
        yield learner
        return
    if kind == "support":  # the MAML family: its batch norm has no training statistics; an attribute switches it
        if mode not in ("batch", "support", "per_query"):
            raise ValueError(f"{type(learner).__name__} normalises with batch statistics; it can be scored "
                             f"'batch' (transductive), 'support' or 'per_query', not {mode!r}")
        saved = learner.test_batch_norm
        learner.test_batch_norm = "transductive" if mode == "batch" else mode
        try:
            yield learner
        finally:
            learner.test_batch_norm = saved
        return
    if kind == "running" and mode == "batch":
        with batch_statistics(learner):
            yield learner
        return
    raise ValueError(f"{type(learner).__name__} has {kind!r} batch norm; it cannot be scored with {mode!r}")


def score(learner: nn.Module, protocol: Protocol, ways: int, shots: int, split: str = "vinyals/test",
          within_alphabet: bool = False, seed: int | None = None, episodes: int | None = None) -> dict:
    """Accuracy of ``learner`` on N-way K-shot test episodes measured under ``protocol``.

    The episodes are the book's seeded ones (``seed`` defaults to ``mlcore.engine.EVAL_SEED``) with
    the protocol's queries per class. Returns :func:`mlcore.engine.evaluate`'s dict plus the protocol.
    """
    from .engine import EVAL_SEED, evaluate, test_sampler

    if not protocol.scorable:
        raise ValueError("this protocol leaves its test conditions unstated; there is nothing to score under it")
    steps_saved = getattr(learner, "test_inner_steps", None)
    if protocol.test_steps is not None:
        if steps_saved is None:
            raise ValueError(f"{type(learner).__name__} does not adapt at test; the protocol's test_steps "
                             "cannot apply")
        learner.test_inner_steps = protocol.test_steps
    try:
        sampler = test_sampler(ways, shots, protocol.queries_for(shots), split, learner.device,
                               within_alphabet=within_alphabet)
        # batch statistics of a running-statistics net are those of the batch it is given: one episode at a time,
        # or the episodes scored together would normalise each other (the MAML family normalises per task itself)
        per_episode = protocol.batch_norm == "batch" and batch_norm_kind(learner) == "running"
        with batch_norm_at_test(learner, protocol.batch_norm):
            res = evaluate(learner, sampler, episodes or protocol.episodes or 1000,
                           seed=EVAL_SEED if seed is None else seed, **({"chunk": 1} if per_episode else {}))
    finally:
        if steps_saved is not None:
            learner.test_inner_steps = steps_saved
    return {**res, "protocol": protocol.to_dict()}


def with_queries(protocol: Protocol, queries: int) -> Protocol:
    """The same protocol with another number of queries per class."""
    return replace(protocol, queries=queries)


def recompute_batch_norm(learner: nn.Module, episodes: Iterable, count: int, momentum: float | None = None) -> int:
    """Re-estimate every batch norm's running statistics from ``count`` training episodes; weights untouched.

    Training leaves an exponential average (PyTorch's momentum 0.1) of the last few dozen batches' statistics,
    and a score under those statistics moves with them: two 5w1s Relation Networks scored 0.25 and 1.07 points
    higher after this re-estimate (``benchmarks/batch_norm_stats.py``). ``momentum=None`` replaces the
    statistics with the plain average over the ``count`` episodes (Wu & Johnson's "precise" batch norm); a
    float instead continues the exponential average from the current statistics, as ``count`` more training
    steps would have. ``episodes`` is an iterable of training batches or a sampler with ``sample()`` (what
    ``learner.make_train_sampler`` gives: episodes, or the Siamese net's verification pairs and the pretrained
    baseline's class batches). Each batch runs through ``learner.meta_loss``, the forward pass training ran, in
    training mode without gradients; the learner's mode and every momentum are restored, and if the episodes
    run out or a forward pass fails, so are the statistics. Returns ``count``.
    """
    import torch

    if count < 1:
        raise ValueError(f"count must be at least 1 episode, got {count}")
    bns = [m for m in learner.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        raise ValueError(f"{type(learner).__name__} has no batch norm with running statistics: nothing to "
                         "re-estimate")
    saved = [(m, m.momentum, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in bns]
    was_training = learner.training
    used, done = 0, False
    try:
        for m in bns:
            if momentum is None:
                m.reset_running_stats()
            m.momentum = momentum
        learner.train()
        batches = iter(episodes) if hasattr(episodes, "__iter__") else iter(episodes.sample, None)
        with torch.no_grad():
            for batch in batches:
                learner.meta_loss(batch)
                used += 1
                if used == count:
                    break
        if used < count:
            raise ValueError(f"the episodes ran out after {used} of the {count} asked for; statistics left as "
                             "they were")
        done = True
    finally:
        for m, mom, buffers in saved:
            m.momentum = mom
            if not done:
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)
        learner.train(was_training)
    return used
