"""One colour and one marker per method, the same in every figure of the book.

A chapter that compares methods draws each with :func:`style`::

    from mlcore.book.plotting import style

    ax.errorbar(shots, acc, yerr=ci, label=label, capsize=3, **style("protonet"))

so ProtoNet is a red diamond in chapter 2, in chapter 10 and wherever else it is plotted. Hues
follow the families (memory-based reds and oranges, optimization-based blues and purples,
metric-based greens, baselines greys and olives); no two methods share both colour and marker.
Names are matched without regard to case, spaces, hyphens or underscores, so ``"UCB1"``,
``"epsilon-greedy"`` and ``"matching_fce"`` are all found. No matplotlib import: the values are
plain colour and marker strings that any matplotlib call accepts.
"""
from __future__ import annotations

#: method -> (colour, marker). Few-shot learners and baselines first, then the meta-RL policies.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    # memory-based (chapter 5)
    "protonet": ("tab:red", "D"),
    "matching": ("tab:orange", "^"),
    "matching_fce": ("#ffbb78", "v"),
    "mann": ("tab:pink", "P"),
    # optimization-based (chapter 4)
    "maml": ("tab:blue", "o"),
    "fomaml": ("#aec7e8", "o"),
    "reptile": ("tab:purple", "*"),
    "anil": ("tab:cyan", "X"),
    "metasgd": ("#c5b0d5", "p"),
    # metric-based (chapter 3)
    "siamese": ("tab:green", "s"),
    "relationnet": ("#98df8a", "h"),
    # not meta-learned (chapters 2, 9, 10)
    "scratch": ("tab:gray", "s"),
    "pretrained": ("tab:olive", "o"),
    "pretrained_linear": ("tab:olive", "o"),
    "pretrained_centroid": ("#dbdb8d", "v"),
    "pixels": ("tab:brown", "x"),
    # meta-RL (chapters 6, 7, 10)
    "rl2": ("tab:red", "o"),
    "random": ("#7f7f7f", "."),
    "greedy": ("tab:brown", "v"),
    "epsilon_greedy": ("#c49c94", "^"),
    "ucb1": ("tab:blue", "s"),
    "thompson": ("tab:green", "^"),
    "ots": ("#98df8a", "v"),
    "gittins": ("tab:orange", "*"),
    "psrl": ("tab:purple", "s"),
    "opsrl": ("#c5b0d5", "d"),
    "ucrl2": ("#9edae5", "<"),
    "beb": ("tab:cyan", "d"),
}

#: names under which the same method appears in records and tables
ALIASES: dict[str, str] = {"rl²": "rl2", "relation": "relationnet", "relation_net": "relationnet",
                           "protonets": "protonet", "prototypical": "protonet", "meta_sgd": "metasgd",
                           "pretrained_centroids": "pretrained_centroid", "pixel_centroids": "pixels"}


def _key(method: str) -> str:
    k = str(method).strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(k, k)


def style(method: str) -> dict[str, str]:
    """``{"color": ..., "marker": ...}`` of ``method``, to pass as ``**style(method)`` to a plot call.

    Raises ValueError for a method that has no style yet: add it to :data:`METHOD_STYLES` (one
    colour and marker the book uses for it everywhere) rather than picking one in the chapter.
    """
    key = _key(method)
    if key not in METHOD_STYLES:
        raise ValueError(f"no plotting style for method {method!r}; known: {sorted(METHOD_STYLES)}. "
                         "Add it to mlcore.book.plotting.METHOD_STYLES so every chapter draws it alike.")
    colour, marker = METHOD_STYLES[key]
    return {"color": colour, "marker": marker}


def colour(method: str) -> str:
    """The colour of ``method`` (see :func:`style`)."""
    return style(method)["color"]


def marker(method: str) -> str:
    """The marker of ``method`` (see :func:`style`)."""
    return style(method)["marker"]
