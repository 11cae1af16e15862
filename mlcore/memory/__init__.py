"""Memory-based meta-learning: the support set (or an external store) as memory."""
LEARNERS = {
    "protonet": "mlcore.memory.protonet:ProtoNet",
    "matching": "mlcore.memory.matching:MatchingNet",
    "matching_fce": "mlcore.memory.matching:MatchingNetFCE",
}
REPRODUCTIONS = {
    "protonet_omniglot_5w1s": {"method": "protonet", "ways": 5, "shots": 1},
}
