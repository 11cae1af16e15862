"""Memory-based meta-learning: the support set (or an external store) as memory."""
LEARNERS = {
    "protonet": "mlcore.memory.protonet:ProtoNet",
    "matching": "mlcore.memory.matching:MatchingNet",
    "matching_fce": "mlcore.memory.matching:MatchingNetFCE",
    "mann": "mlcore.memory.mann:MANN",
}
REPRODUCTIONS = {
    "protonet_omniglot_5w1s": {"method": "protonet", "ways": 5, "shots": 1},
    "protonet_omniglot_5w5s": {"method": "protonet", "ways": 5, "shots": 5},
    # Snell et al. train one 60-way model per shot: the 20-way records score the 5-way record's weights
    # when it is there (same recipe but the test fields; the record's config.weights_from says so)
    "protonet_omniglot_20w1s": {"method": "protonet", "ways": 20, "shots": 1,
                                "shared_training": "protonet_omniglot_5w1s"},
    "protonet_omniglot_20w5s": {"method": "protonet", "ways": 20, "shots": 5,
                                "shared_training": "protonet_omniglot_5w5s"},
    "matching_omniglot_5w1s": {"method": "matching", "ways": 5, "shots": 1},
    "matching_omniglot_5w5s": {"method": "matching", "ways": 5, "shots": 5},
    "matching_omniglot_20w1s": {"method": "matching", "ways": 20, "shots": 1},
    "matching_omniglot_20w5s": {"method": "matching", "ways": 20, "shots": 5},
    "matching_fce_omniglot_5w1s": {"method": "matching_fce", "ways": 5, "shots": 1},
    "matching_fce_omniglot_5w5s": {"method": "matching_fce", "ways": 5, "shots": 5},
    "matching_fce_omniglot_20w1s": {"method": "matching_fce", "ways": 20, "shots": 1},
    "matching_fce_omniglot_20w5s": {"method": "matching_fce", "ways": 20, "shots": 5},
    # one MANN training writes both mann_omniglot_5w1s and mann_omniglot_5w5s
    "mann_omniglot": {"fn": "mlcore.experiments.mann_omniglot:reproduce"},
    "protonet_ways_sweep": {"fn": "mlcore.experiments.ways_sweep:protonet_ways_sweep",
                            "eval_fn": "mlcore.experiments.ways_sweep:reevaluate_sweep"},
    # where the meta-learned memory stops helping: the ProtoNet 5w1s record on sklearn's 8x8 digits
    "domain_shift_digits": {"fn": "mlcore.experiments.domain_shift:reproduce",
                            "eval_fn": "mlcore.experiments.domain_shift:evaluate_record"},
}
