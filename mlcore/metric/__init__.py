"""Metric-based meta-learning: learn a similarity, classify by comparison.

* ``siamese``: Koch et al. (2015) twin network trained for same/different verification.
* ``relation``: Sung et al. (2018) Relation Network, a learned comparison module.
* ``task_similarity``: a metric between *tasks* (the source article's §4.1 loss) and
  nearest-task transfer.

Only plain dicts here: nothing heavy is imported until a method is asked for. The ``fn`` of a
reproduction names the study in :mod:`mlcore.experiments` that trains and records it.
"""
LEARNERS = {
    "siamese": "mlcore.metric.siamese:Siamese",
    "relationnet": "mlcore.metric.relation:RelationNet",
}
REPRODUCTIONS = {
    # one verification network trained on the Vinyals split, scored in all four settings (4 records)
    # ("method" + "eval_fn": `python -m mlcore eval` re-scores every siamese record at the net's own resolution)
    "siamese_omniglot_vinyals": {"fn": "mlcore.experiments.siamese_omniglot:reproduce", "protocol": "vinyals",
                                 "method": "siamese",
                                 "records": ("siamese_omniglot_5w1s", "siamese_omniglot_5w5s",
                                             "siamese_omniglot_20w1s", "siamese_omniglot_20w5s"),
                                 "eval_fn": "mlcore.experiments.siamese_omniglot:evaluate_record"},
    # Lake's protocol: background alphabets only, 20-way within-alphabet one-shot trials on evaluation
    "siamese_omniglot_lake_20w1s": {"fn": "mlcore.experiments.siamese_omniglot:reproduce", "protocol": "lake",
                                    "method": "siamese",
                                    "eval_fn": "mlcore.experiments.siamese_omniglot:evaluate_record"},
    "relationnet_omniglot_5w1s": {"method": "relationnet", "ways": 5, "shots": 1},
    "relationnet_omniglot_5w5s": {"method": "relationnet", "ways": 5, "shots": 5},
    "relationnet_omniglot_20w1s": {"method": "relationnet", "ways": 20, "shots": 1},
    "relationnet_omniglot_20w5s": {"method": "relationnet", "ways": 20, "shots": 5},
    # "method" lets `python -m mlcore eval` find eval_fn for the _smoke record too
    "task_similarity_omniglot": {"fn": "mlcore.experiments.task_similarity:reproduce",
                                 "method": "task_similarity",
                                 "eval_fn": "mlcore.experiments.task_similarity:evaluate_record"},
}
