"""mlcore: the library behind *Meta-Learning, Engineered*.

Families live in subpackages (``metric``, ``optimization``, ``memory``, ``rl``); every
few-shot learner follows one protocol (:mod:`mlcore.learner`), is trained by
:func:`mlcore.engine.fit`, scored by :func:`mlcore.engine.evaluate`, and leaves a JSON
record under ``results/`` that :func:`load` turns back into a working learner.
"""
from . import data
from .budget import current_budget, pick
from .data import Episode, EpisodeSampler, load_split, preprocess
from .engine import EVAL_SEED, evaluate, fit, test_sampler
from .results import Record, load_record, mean_ci95
from .runs import load, reevaluate, train_and_record
from .runtime import get_device, seed_everything

__version__ = "0.1.0"
__all__ = ["EVAL_SEED", "Episode", "EpisodeSampler", "Record", "current_budget", "data", "evaluate", "fit",
           "get_device", "load", "load_record", "load_split", "mean_ci95", "pick", "preprocess", "reevaluate",
           "seed_everything", "test_sampler", "train_and_record"]
