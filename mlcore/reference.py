"""The papers' published numbers, as data, so tables put them beside ours by code.

Every number here is copied from ``shared/reference/targets.md`` (which cites each paper's
arXiv id); none is ever used as one of *our* results. The book's tables
(:mod:`mlcore.report`) look a record's (method, setting) up here to print the paper's
number next to the measured one.

Settings are short strings: ``"5w1s"`` means 5-way 1-shot on the Vinyals split (random
characters, rotations as new classes); ``"20w1s-within"`` is Lake's harder protocol
(20-way one-shot, all candidates from one ``images_evaluation`` alphabet, training on the
``images_background`` alphabets only).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .protocols import Protocol

#: Settings in the order tables show them.
SETTINGS: tuple[str, ...] = ("5w1s", "5w5s", "20w1s", "20w5s", "20w1s-within")


@dataclass(frozen=True)
class Published:
    """One published number: accuracy in percent, its ± (95 % CI unless ``note`` says otherwise)."""

    method: str
    setting: str
    accuracy: float
    pm: float | None
    paper: str  # BibTeX key in book/references.bib
    cite: str  # short human citation, for README tables
    note: str = ""
    protocol: Protocol = field(default_factory=lambda: Protocol("not stated", queries=None, episodes=None,
                                                                selection="not stated"))

    def text(self) -> str:
        """``"98.7 ± 0.4"`` or ``"98.8"`` (percent, as the paper printed it)."""
        s = f"{self.accuracy:g}"
        return f"{s} ± {self.pm:g}" if self.pm is not None else s


#: Canonical method name mapped to (display name, BibTeX key, short citation).
METHODS: dict[str, tuple[str, str, str]] = {
    "protonet": ("Prototypical Networks", "snell2017prototypical", "Snell et al. 2017"),
    "maml": ("MAML", "finn2017maml", "Finn et al. 2017"),
    "fomaml": ("first-order MAML", "nichol2018reptile", "Nichol et al. 2018"),
    "reptile": ("Reptile", "nichol2018reptile", "Nichol et al. 2018"),
    "matching": ("Matching Networks", "vinyals2016matching", "Vinyals et al. 2016"),
    "relation": ("Relation Network", "sung2018relation", "Sung et al. 2018"),
    "siamese": ("Siamese network", "koch2015siamese", "Koch et al. 2015"),
    "metasgd": ("Meta-SGD", "li2017metasgd", "Li et al. 2017"),
    "anil": ("ANIL", "raghu2019anil", "Raghu et al. 2019"),
    "mann": ("MANN", "santoro2016mann", "Santoro et al. 2016"),
}

#: Other spellings a family may register its learner under, mapped to the canonical name.
ALIASES: dict[str, str] = {
    "prototypical": "protonet", "prototypicalnetworks": "protonet", "proto": "protonet",
    "maml2": "maml", "mamlsecondorder": "maml",
    "firstordermaml": "fomaml", "mamlfo": "fomaml", "mamlfirstorder": "fomaml",
    "matchingnet": "matching", "matchingnets": "matching", "matchingnetworks": "matching",
    "matchingnetfce": "matching", "matchingfce": "matching",
    "relationnet": "relation", "relationnetwork": "relation", "relationnetworks": "relation",
    "siamesenet": "siamese", "siamesenetwork": "siamese", "kochsiamese": "siamese",
    "meta_sgd": "metasgd",
}

_T = [  # (method, setting, accuracy %, ± or None, note)
    ("protonet", "5w1s", 98.8, None, ""), ("protonet", "5w5s", 99.7, None, ""),
    ("protonet", "20w1s", 96.0, None, ""), ("protonet", "20w5s", 98.9, None, ""),
    ("maml", "5w1s", 98.7, 0.4, ""), ("maml", "5w5s", 99.9, 0.1, ""),
    ("maml", "20w1s", 95.8, 0.3, ""), ("maml", "20w5s", 98.9, 0.2, ""),
    ("fomaml", "5w1s", 98.3, 0.5, "as reported in the Reptile paper"),
    ("fomaml", "5w5s", 99.2, 0.2, "as reported in the Reptile paper"),
    ("fomaml", "20w1s", 89.4, 0.5, "as reported in the Reptile paper"),
    ("fomaml", "20w5s", 97.9, 0.1, "as reported in the Reptile paper"),
    ("reptile", "5w1s", 97.68, None, "transductive"), ("reptile", "5w5s", 99.48, None, "transductive"),
    ("reptile", "20w1s", 89.43, None, "transductive"), ("reptile", "20w5s", 97.12, None, "transductive"),
    ("matching", "5w1s", 98.1, None, ""), ("matching", "5w5s", 98.9, None, ""),
    ("matching", "20w1s", 93.8, None, ""), ("matching", "20w5s", 98.5, None, ""),
    ("relation", "5w1s", 99.6, 0.2, ""), ("relation", "5w5s", 99.8, 0.1, ""),
    ("relation", "20w1s", 97.6, 0.2, ""), ("relation", "20w5s", 99.1, 0.1, ""),
    ("siamese", "5w1s", 96.7, None, "re-implemented by Vinyals et al."),
    ("siamese", "5w5s", 98.4, None, "re-implemented by Vinyals et al."),
    ("siamese", "20w1s", 88.0, None, "re-implemented by Vinyals et al."),
    ("siamese", "20w5s", 96.5, None, "re-implemented by Vinyals et al."),
    ("siamese", "20w1s-within", 92.0, None, "Koch et al., Lake's within-alphabet protocol"),
    ("metasgd", "5w1s", 99.53, 0.26, ""), ("metasgd", "5w5s", 99.93, 0.09, ""),
    ("metasgd", "20w1s", 95.93, None, ""), ("metasgd", "20w5s", 98.97, None, ""),
    ("anil", "20w1s", 96.2, 0.5, "± is std over 3 seeds"), ("anil", "20w5s", 98.0, 0.3, "± is std over 3 seeds"),
    ("mann", "5w1s", 82.8, None, "no convolutions"), ("mann", "5w5s", 94.9, None, "no convolutions"),
]

#: How each paper measured its Omniglot numbers (the authors' text and code; "not stated" where neither says).
_UNSTATED = Protocol("not stated", queries=None, episodes=None, selection="not stated")
PAPER_PROTOCOLS: dict[str, Protocol] = {
    # Snell et al.: eval mode (running statistics); epochs chosen on validation, then retrained on train+val
    "protonet": Protocol("running", queries=None, episodes=1000, selection="validation",
                         training="Vinyals train+val, rotations as classes"),
    # Finn et al.'s code normalises with the current batch at test too; K queries per class, 600 test tasks
    "maml": Protocol("batch", queries="shots", episodes=600, selection="last"),
    # the Reptile paper's FOMAML row: its evaluation (1 query per class, transductive, 50 Adam test steps)
    "fomaml": Protocol("batch", queries=1, episodes=None, selection="last",
                       note="the paper adapts with 50 Adam steps at test; ours with the recipe's SGD steps"),
    # (its 50 Adam steps at test are the recipe's, checked by tests/test_recipes.py, not a scoring override)
    "reptile": Protocol("batch", queries=1, episodes=None, selection="last"),
    "matching": _UNSTATED,
    # Sung et al.'s code never calls .eval() (support set and queries go through the net in separate passes, each
    # normalised with its own batch statistics) and keeps the checkpoint with the best test accuracy
    "relation": Protocol("batch", queries="shots", episodes=1000, selection="test",
                         augmentation="one random 90° rotation per episode",
                         training="1,200 characters, rotations as augmentation"),
    "siamese": _UNSTATED,
    "metasgd": _UNSTATED,
    "anil": _UNSTATED,
    "mann": Protocol("none", queries=None, episodes=None, selection="not stated",
                     note="sequences of 5 classes x 10 instances; accuracy by presentation"),
}
# Koch et al. on Lake's 400 official within-alphabet trials: 105-pixel images, no batch norm.
LAKE_PROTOCOL = Protocol("none", queries=1, episodes=400, selection="validation", image_size=105,
                         training="30 background alphabets with affine distortions",
                         note="Lake's 400 official one-shot trials (20 runs x 20)")

#: The papers' Omniglot training recipes as data, keyed by method, then by ``(ways, shots)`` or ``"any"``, giving
#: ``{field -> value}``. A field is a :class:`mlcore.learner.Recipe` field, or ``model.<key>`` for the learner's own. Every ``full`` recipe
#: must equal these or name the field in its ``deviations`` (tests/test_recipes.py). Only what the paper
#: or its authors' code states is listed.
PAPER_RECIPES: dict[str, dict] = {
    # Snell et al.: 60-way training episodes, 5 queries per class, Adam 1e-3 halved every 2,000 episodes
    "protonet": {"any": {"ways": 60, "queries": 5, "optimizer": "adam", "lr": 1e-3, "lr_step": 2000,
                         "lr_gamma": 0.5}},
    # Finn et al.: 60,000 iterations of Adam (1e-3); 5-way 1 step α 0.4, batch 32, 3 at test; 20-way 5 steps
    # α 0.1, batch 16, 5 at test. Their code draws 2 x shots images per class, so a task has as many queries per
    # class as shots
    "maml": {(5, 1): (_m5 := {"steps": 60_000, "optimizer": "adam", "lr": 1e-3, "meta_batch": 32, "queries": 1,
                              "model.inner_steps": 1, "model.inner_lr": 0.4, "model.test_inner_steps": 3}),
             (5, 5): {**_m5, "queries": 5},
             (20, 1): (_m20 := {"steps": 60_000, "optimizer": "adam", "lr": 1e-3, "meta_batch": 16, "queries": 1,
                                "model.inner_steps": 5, "model.inner_lr": 0.1, "model.test_inner_steps": 5}),
             (20, 5): {**_m20, "queries": 5}},
    # Nichol et al.'s run_omniglot.py commands: 10 training images per class, inner Adam (beta1 0), 5 steps of
    # 10 / 10 steps of 20, meta-batch 5, outer step 1.0 annealed to 0, 100k / 200k iterations, 50 test steps
    "reptile": {(5, 1): (_r5 := {"steps": 100_000, "meta_batch": 5, "optimizer": "sgd", "lr": 1.0,
                                 "lr_final": 0.0, "model.inner_optimizer": "adam", "model.inner_lr": 1e-3,
                                 "model.inner_steps": 5, "model.inner_batch": 10, "model.test_inner_steps": 50,
                                 "model.test_inner_batch": 5}),
                (20, 1): {**_r5, "steps": 200_000, "model.inner_lr": 5e-4, "model.inner_steps": 10,
                          "model.inner_batch": 20, "model.test_inner_batch": 10}},
    # Sung et al.'s code: 1,000,000 episodes, Adam 1e-3 halved every 100,000, gradient norm clipped at 0.5,
    # 19/15/10/5 queries, one random 90-degree rotation per episode
    "relation": {(5, 1): (_rn := {"steps": 1_000_000, "optimizer": "adam", "lr": 1e-3, "lr_step": 100_000,
                                  "lr_gamma": 0.5, "grad_clip": 0.5, "episode_rotation": True, "queries": 19}),
                 (5, 5): {**_rn, "queries": 15}, (20, 1): {**_rn, "queries": 10}, (20, 5): {**_rn, "queries": 5}},
    # Santoro et al.: sequences of 5 classes x 10 instances, batch 16, RMSprop 1e-4, 100,000 episodes
    "mann": {"any": {"ways": 5, "meta_batch": 16, "optimizer": "rmsprop", "lr": 1e-4, "steps": 100_000}},
    # Koch et al.: 105x105 images, SGD with momentum and per-layer learning rates, no batch norm
    "siamese": {"any": {"optimizer": "sgd", "model.image_size": 105, "model.batch_norm": False}},
}

# Numbers that come from a paper other than the method's own.
_SOURCE = {(m, s): ("vinyals2016matching", "Vinyals et al. 2016") for m, s, *_ in _T
           if m == "siamese" and s != "20w1s-within"}

#: All published Omniglot accuracies, keyed by (canonical method, setting).
OMNIGLOT: dict[tuple[str, str], Published] = {
    (m, s): Published(m, s, a, pm, *_SOURCE.get((m, s), METHODS[m][1:]), note,
                      LAKE_PROTOCOL if s.endswith("-within") else PAPER_PROTOCOLS[m])
    for m, s, a, pm, note in _T
}

#: Reptile's non-transductive numbers, published beside its headline ones (each query normalised with the
#: support set only), which compare like for like with the book's protocol.
NON_TRANSDUCTIVE: dict[tuple[str, str], Published] = {
    ("reptile", s): Published("reptile", s, a, None, "nichol2018reptile", "Nichol et al. 2018", "non-transductive",
                              Protocol("per_query", queries=1, episodes=None, selection="last"))
    for s, a in (("5w1s", 95.39), ("5w5s", 98.90), ("20w1s", 88.14), ("20w5s", 96.65))
}

#: Lake's 20-way within-alphabet one-shot protocol; reference points that are not our methods.
LAKE_WITHIN_ALPHABET: dict[str, tuple[float, str]] = {
    "human": (95.5, "lake2015human"),
    "Bayesian Program Learning": (96.7, "lake2015human"),  # 3.3 % error
    "Hierarchical Bayesian Program Learning": (95.2, "lake2013oneshot"),  # as Koch et al.'s table quotes it
    "convolutional Siamese net (Koch et al.)": (92.0, "koch2015siamese"),
    "1-nearest-neighbour on pixels": (21.7, "lake2013oneshot"),
}

#: BibTeX key -> short citation, for every paper whose numbers this module quotes.
CITATIONS: dict[str, str] = {key: cite for _, key, cite in METHODS.values()} | {
    "lake2015human": "Lake et al. 2015", "lake2013oneshot": "Lake et al. 2013"}

#: MAML sinusoid regression (Finn et al. 2017); 5-shot test MSE after 1, 5 and 10 gradient steps.
SINUSOID_5SHOT_MSE: dict[str, dict[int, float]] = {
    "maml": {1: 0.67, 5: 0.38, 10: 0.35},
    "pretrained": {1: 2.41, 5: 2.23, 10: 2.19},
}

_BANDIT_COLS = ("Random", "Gittins", "TS", "OTS", "UCB1", "eps-greedy", "Greedy", "RL2")
_BANDIT_ROWS = {
    (10, 5): (5.0, 6.6, 5.7, 6.5, 6.7, 6.6, 6.6, 6.7),
    (10, 10): (5.0, 6.6, 5.5, 6.2, 6.7, 6.6, 6.6, 6.7),
    (10, 50): (5.1, 6.5, 5.2, 5.5, 6.6, 6.5, 6.5, 6.8),
    (100, 5): (49.9, 78.3, 74.7, 77.9, 78.0, 75.4, 74.8, 78.7),
    (100, 10): (49.9, 82.8, 76.7, 81.4, 82.4, 77.4, 77.1, 83.5),
    (100, 50): (49.8, 85.2, 64.5, 67.7, 84.3, 78.3, 78.0, 84.9),
    (500, 5): (249.8, 405.8, 402.0, 406.7, 405.8, 388.2, 380.6, 401.6),
    (500, 10): (249.0, 437.8, 429.5, 438.9, 437.1, 408.0, 395.0, 432.5),
    (500, 50): (249.6, 463.7, 427.2, 437.6, 457.6, 413.6, 402.8, 438.9),
}
#: RL² Bernoulli bandits (Duan et al. 2016); maps (pulls n, arms k) to {policy name -> total reward}.
RL2_BANDITS: dict[tuple[int, int], dict[str, float]] = {
    key: dict(zip(_BANDIT_COLS, row)) for key, row in _BANDIT_ROWS.items()
}

_MDP_COLS = ("Random", "PSRL", "OPSRL", "UCRL2", "BEB", "eps-greedy", "Greedy", "RL2")
_MDP_ROWS = {
    10: (100.1, 138.1, 144.1, 146.6, 150.2, 132.8, 134.8, 156.2),
    25: (250.2, 408.8, 425.2, 424.1, 427.8, 377.3, 368.8, 445.7),
    50: (499.7, 904.4, 930.7, 918.9, 917.8, 823.3, 769.3, 936.1),
    75: (749.9, 1417.1, 1449.2, 1427.6, 1422.6, 1293.9, 1172.9, 1428.8),
    100: (999.4, 1939.5, 1973.9, 1942.1, 1935.1, 1778.2, 1578.5, 1913.7),
}
#: RL² random tabular MDPs (Duan et al. 2016); maps episodes per trial n to {policy name -> total reward}.
RL2_MDPS: dict[int, dict[str, float]] = {n: dict(zip(_MDP_COLS, row)) for n, row in _MDP_ROWS.items()}

# the paper's column names -> the names of the policies in mlcore.rl.baselines (and "RL2")
_RL2_POLICY_NAMES = {"Random": "random", "TS": "Thompson", "eps-greedy": "epsilon-greedy", "Greedy": "greedy"}
#: Duan et al. (2016), Tables 1 and 2, keyed as the RL records are (``mlcore.rl.envs.spec_name``:
#: ``bandit_n10_k5``, ``mdp_n10``) with the library's policy names: mean total reward per trial over
#: 1,000 trials, per setting and policy. The same numbers as :data:`RL2_BANDITS` / :data:`RL2_MDPS`, for
#: the settings the book's records and tables use.
RL2_PAPER: dict[str, dict[str, float]] = {
    **{f"bandit_n{n}_k{k}": {_RL2_POLICY_NAMES.get(c, c): v for c, v in RL2_BANDITS[(n, k)].items()}
       for n in (10, 100) for k in (5, 10, 50)},
    **{f"mdp_n{n}": {_RL2_POLICY_NAMES.get(c, c): v for c, v in RL2_MDPS[n].items()} for n in (10, 25)},
}


def canonical_method(name: str) -> str:
    """Map a registered learner name to the canonical name used here (unknown names pass through)."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key in METHODS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    return ALIASES.get(name.lower(), name)


def setting_name(ways: int, shots: int, within_alphabet: bool = False) -> str:
    """``setting_name(20, 1, within_alphabet=True) == "20w1s-within"``."""
    return f"{ways}w{shots}s" + ("-within" if within_alphabet else "")


def published(method: str, setting: str, batch_norm: str | None = None) -> Published | None:
    """The paper's number for ``method`` in ``setting``, or ``None`` if the paper has none.

    ``batch_norm="per_query"`` or ``"support"`` asks for a non-transductive number where the paper gave one
    (Reptile's, measured per query); other values, or None, give the paper's headline number.
    """
    key = (canonical_method(method), setting)
    if batch_norm in ("per_query", "support") and key in NON_TRANSDUCTIVE:
        return NON_TRANSDUCTIVE[key]
    return OMNIGLOT.get(key)


#: Registered variants that share a paper's number but must stay distinguishable in tables.
VARIANT_NAMES: dict[str, str] = {
    "matching_fce": "Matching Networks (FCE)",
}


def display_name(method: str) -> str:
    """Human name of a method (``"protonet"`` -> ``"Prototypical Networks"``)."""
    if method in VARIANT_NAMES:
        return VARIANT_NAMES[method]
    m = canonical_method(method)
    return METHODS[m][0] if m in METHODS else method
