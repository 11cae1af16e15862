"""Optimization-based meta-learning: learn an initialisation (and learning rates) that adapts in a few steps."""
LEARNERS = {
    "maml": "mlcore.optimization.maml:MAML",
    "fomaml": "mlcore.optimization.maml:FOMAML",
    "metasgd": "mlcore.optimization.metasgd:MetaSGD",
    "anil": "mlcore.optimization.anil:ANIL",
    "reptile": "mlcore.optimization.reptile:Reptile",
}
REPRODUCTIONS = {
    **{f"{m}_omniglot_{n}w{k}s": {"method": m, "ways": n, "shots": k}
       for m in ("maml", "fomaml") for n in (5, 20) for k in (1, 5)},
    **{f"{m}_omniglot_{n}w1s": {"method": m, "ways": n, "shots": 1}
       for m in ("reptile", "anil", "metasgd") for n in (5, 20)},
    "maml_sinusoid": {"fn": "mlcore.experiments.sinusoid:reproduce", "method": "maml_sinusoid",
                      "eval_fn": "mlcore.experiments.sinusoid:reevaluate"},
}
