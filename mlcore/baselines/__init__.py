"""Baselines that are *not* meta-learned: the yardsticks of chapter 2.

* ``scratch``: a fresh Conv-4 trained on each task's support set alone.
* ``pretrained``: a Conv-4 classifier trained on all 4,800 training classes with plain
  cross-entropy, reused on new tasks through a linear probe or nearest centroids.
"""
LEARNERS = {
    "scratch": "mlcore.baselines.scratch:Scratch",
    "pretrained": "mlcore.baselines.pretrained:Pretrained",
}
REPRODUCTIONS = {
    "traits_accuracy_vs_shots": {
        "fn": "mlcore.experiments.traits:traits_vs_shots",
        "method": "traits",  # the record's method; lets `python -m mlcore eval` find eval_fn for smoke records too
        "eval_fn": "mlcore.experiments.traits:rescore_traits",
    },
}
