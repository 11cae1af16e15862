"""Data: real Omniglot (download, cache, splits), episodes, sinusoid tasks."""
from .episodes import Episode, EpisodeSampler
from .lake import LakeRun, lake_way_trials, load_lake_runs, match_to_omniglot
from .omniglot import ClassSet, ensure_omniglot, load_raw, load_split, preprocess
from .sinusoid import SinusoidSampler, SinusoidTasks

__all__ = ["ClassSet", "Episode", "EpisodeSampler", "LakeRun", "SinusoidSampler", "SinusoidTasks", "ensure_omniglot",
           "lake_way_trials", "load_lake_runs", "load_raw", "load_split", "match_to_omniglot", "preprocess"]
