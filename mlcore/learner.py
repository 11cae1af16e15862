"""The one learner protocol every few-shot method implements.

* ``meta_loss(episodes) -> (loss, stats)``: the meta-training objective on a batch of tasks.
* ``predict(support_x, support_y, query_x) -> logits``: adapt to one task, score its queries. The
  images may be raw drawings of any size: :meth:`FewShotLearner.as_input` resizes them to the
  learner's :attr:`~FewShotLearner.input_size` (which :func:`mlcore.load` sets from the record).

The engine, the evaluator, the CLI and the comparison chapter only use these two
methods (plus :meth:`FewShotLearner.recipe` for the training budget), so a new method
plugs in without touching them.

What :func:`mlcore.engine.fit` asks of its arguments is written down here too: a
:class:`Sampler` gives the training batches, and a learner is a :class:`MetaLearner`: the
meta-loss plus the :class:`TrainingHooks` fit calls every step (each a no-op unless a learner,
like the distributed wrapper, has something to do there, or, like RL^2's PPO, owns its whole
update: :meth:`TrainingHooks.train_step`).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .data.episodes import Episode
from .data.omniglot import preprocess


@dataclass
class Recipe:
    """How to train and test a method in one setting (built by ``Learner.recipe``)."""

    ways: int
    shots: int
    queries: int = 5
    meta_batch: int = 1
    steps: int = 1000
    lr: float = 1e-3
    lr_step: int | None = None
    lr_gamma: float = 0.5
    # the outer optimizer: "adam", "sgd" (Reptile's plain step on its direction) or "rmsprop" (Santoro et al.)
    optimizer: str = "adam"
    lr_final: float | None = None  # anneal lr linearly to this over ``steps`` (None: constant or lr_step)
    grad_clip: float | None = None
    train_split: str = "vinyals/trainval"
    test_split: str = "vinyals/test"
    val_split: str | None = None
    val_every: int = 0
    val_episodes: int = 200
    test_ways: int | None = None
    test_shots: int | None = None
    test_queries: int = 15
    within_alphabet: bool = False
    # draw classes among unrotated characters and turn the whole episode by one random multiple
    # of 90 degrees (Sung et al.'s augmentation), instead of treating each rotation as a class
    episode_rotation: bool = False
    model: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # where the full recipe departs from the paper's on purpose: field -> why (tests check the rest)
    deviations: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def check_task(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> int:
    """Validate one task's tensors and return its number of ways N.

    Labels must be 0..N-1 with every class present; images (n, C, H, W) with matching C, H, W.
    """
    if support_x.ndim != 4 or query_x.ndim != 4:
        raise ValueError(f"support_x and query_x must be (n, C, H, W) image batches; got {tuple(support_x.shape)} "
                         f"and {tuple(query_x.shape)} (use mlcore.data.preprocess on raw images)")
    if support_y.ndim != 1 or support_y.shape[0] != support_x.shape[0]:
        raise ValueError(f"support_y must be (n,) with n = len(support_x) = {support_x.shape[0]}; "
                         f"got shape {tuple(support_y.shape)}")
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(f"support and query images differ in shape: {tuple(support_x.shape[1:])} vs "
                         f"{tuple(query_x.shape[1:])}")
    if support_y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"support_y must hold integer class labels, got dtype {support_y.dtype}")
    n = int(support_y.max()) + 1
    present = torch.bincount(support_y.long().cpu(), minlength=n)
    if int(support_y.min()) < 0 or bool((present == 0).any()):
        raise ValueError(f"support_y must use labels 0..N-1 with every class present; got counts {present.tolist()}")
    if n < 2:
        raise ValueError("a task needs at least 2 classes in its support set")
    return n


@runtime_checkable
class Sampler(Protocol):
    """Where :func:`mlcore.engine.fit` draws its training batches from.

    ``sample()`` gives one batch for the learner's ``meta_loss`` (an :class:`~mlcore.data.episodes.Episode`,
    a Siamese ``PairBatch``, ...). ``state_dict()`` / ``load_state_dict()`` save and restore the
    sampler's random state (plain data: it goes into a ``weights_only`` checkpoint), so a resumed run
    draws exactly the batches the uninterrupted run would have drawn.
    """

    def sample(self) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TrainingHooks:
    """The points of :func:`mlcore.engine.fit`'s step where a learner may act; each default does nothing.

    Every learner (:class:`FewShotLearner`) and every wrapper fit trains (the distributed wrapper,
    ``PerTaskMeanLoss``) has them, so fit calls them on every step without asking first.
    """

    def train_step(self, batch: Any, optimizer: torch.optim.Optimizer,
                   step: int) -> tuple[torch.Tensor, dict] | None:
        """The whole update of fit's ``step`` (1-based) on ``batch``, done by the learner itself; ``None``
        (the default): fit's standard step, one ``meta_loss`` -> backward -> clip -> optimizer step.

        For a learner whose update is not one loss and one optimizer step: RL^2's PPO rolls the policy
        out on the batch's tasks, then takes several epochs of minibatch steps with a learning rate
        of its own schedule. Such a learner does the backward passes and the optimizer steps here
        (fit's ``after_backward`` and ``grad_clip`` are then its own business too) and returns
        ``(loss, stats)`` for the log, as ``meta_loss`` would. It raises
        :class:`mlcore.engine.NonFiniteLossError` *before* stepping on a non-finite loss or gradient:
        fit adds the step and the last good checkpoint to the message. fit still steps its scheduler
        (if any), calls ``after_step`` and asks ``agree_to_stop`` afterwards, as on a standard step.
        """
        return None

    def after_backward(self) -> None:
        """After ``loss.backward()``, before gradient clipping and the non-finite-gradient check
        (the distributed wrapper all-reduces the gradients here)."""

    def after_step(self) -> None:
        """After the optimizer's (and the scheduler's) step (the distributed wrapper averages buffers here)."""

    def agree_to_stop(self, local: bool) -> bool:
        """Whether training stops after this step, given this process's own answer ``local`` (its time
        limit has passed). Called on every step; the default is ``local``. The distributed wrapper makes
        it a collective vote, so all ranks stop at the same step whatever their own clocks say."""
        return local


@runtime_checkable
class MetaLearner(Protocol):
    """What :func:`mlcore.engine.fit` trains: a module with a meta-loss, a device and the training hooks."""

    device: torch.device

    def meta_loss(self, batch: Any) -> tuple[torch.Tensor, dict]: ...

    def train_step(self, batch: Any, optimizer: torch.optim.Optimizer,
                   step: int) -> tuple[torch.Tensor, dict] | None: ...

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...

    def agree_to_stop(self, local: bool) -> bool: ...

    # and the nn.Module methods fit uses
    def parameters(self, recurse: bool = True) -> Any: ...

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


class TrainableModule(TrainingHooks, nn.Module):
    """A module :func:`mlcore.engine.fit` can train: the training hooks, and the device its weights are on.

    Subclass it and give it a ``meta_loss(batch) -> (loss, stats)``: every learner and every small network
    the studies train (sinusoid regressors, task-similarity networks, the RL² policy) is one.
    """

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


class FewShotLearner(TrainableModule):
    """Base class: stores its constructor config so :func:`mlcore.load` can rebuild it."""

    method: ClassVar[str] = "base"
    needs_grad_at_test: ClassVar[bool] = False

    def __init__(self, **config: Any):
        super().__init__()
        self.config = dict(config)

    @classmethod
    def from_config(cls, config: dict) -> FewShotLearner:
        return cls(**config)

    @classmethod
    def recipe(cls, ways: int, shots: int, budget: str = "smoke") -> Recipe:
        raise NotImplementedError(f"{cls.__name__} defines no training recipe")

    def meta_loss(self, episodes: Episode) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def predict(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- the input a learner takes -------------------------------------------------------------
    #: The side of the square images the net was trained on, which :meth:`as_input` resizes raw drawings
    #: to. ``None`` (a learner built in code, whose net takes any size): images are used as given.
    #: :func:`mlcore.load` sets it from the record (the data pipeline's 28 px); nets built for one size
    #: (the Siamese net, the Relation Network) give their own ``image_size``.
    input_size: int | None = None

    def as_input(self, images: Any) -> torch.Tensor:
        """Images as this learner's input ``(n, C, s, s)``, ``s`` = :attr:`input_size`, on its device.

        Raw drawings, ``(H, W)``, ``(n, H, W)`` or ``(n, 1, H, W)`` of any size (ink = 1; bool, uint8 or
        float in [0, 1]; a tensor or an array), are resized by :func:`mlcore.data.omniglot.preprocess`, the resizing
        the data pipeline itself applies; float images already at the learner's size pass unchanged. Every
        learner's :meth:`predict` starts with it, so ``mlcore.load(record).predict`` takes raw Omniglot
        drawings (105 x 105) whatever size its net was trained at. Upsampling (images smaller than the net
        takes) blurs them and warns. With ``input_size`` None the images pass as given.
        """
        x = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
        s = self.input_size
        if s is None or (x.ndim == 4 and tuple(x.shape[-2:]) == (s, s) and x.is_floating_point()):
            return x.to(self.device)
        if x.ndim not in (2, 3, 4):
            raise ValueError(f"images must be (H, W), (n, H, W) or (n, C, H, W); got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < s:
            warnings.warn(f"{type(self).__name__} takes {s}x{s} images; these are {x.shape[-2]}x{x.shape[-1]} "
                          "and are upsampled, which blurs them. Pass the raw drawings (Omniglot's are 105x105) "
                          "for the accuracy its record reports.", stacklevel=3)
        return preprocess(x, size=s).to(self.device)

    def predict_batch(self, episodes: Episode) -> torch.Tensor:
        """Logits (B, N*Q, N) for a batch of tasks; override for a vectorised version."""
        return torch.stack([self.predict(episodes.support_x[i], episodes.support_y[i], episodes.query_x[i])
                            for i in range(episodes.batch_size)])

    def make_train_sampler(self, recipe: Recipe, device, seed: int):
        """The training sampler; metric learners with pair losses override this."""
        from .data.episodes import EpisodeSampler
        from .data.omniglot import load_split

        return EpisodeSampler(load_split(recipe.train_split), recipe.ways, recipe.shots, recipe.queries,
                              batch_size=recipe.meta_batch, device=device, seed=seed,
                              within_alphabet=recipe.within_alphabet, episode_rotation=recipe.episode_rotation)
