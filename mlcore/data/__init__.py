"""Data: real Omniglot (download, cache, splits), episodes, sinusoid tasks."""
from .episodes import Episode, EpisodeSampler
from .omniglot import ClassSet, ensure_omniglot, load_raw, load_split, preprocess
from .sinusoid import SinusoidSampler, SinusoidTasks

__all__ = ["Episode", "EpisodeSampler", "ClassSet", "ensure_omniglot", "load_raw", "load_split", "preprocess",
           "SinusoidSampler", "SinusoidTasks"]
