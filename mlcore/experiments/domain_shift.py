"""Study: where "generalises to new tasks" stops, a learner meta-trained on Omniglot tested on digits.

    python -m mlcore reproduce --only domain_shift_digits

Meta-learning promises fast adaptation to *new tasks from the same distribution*. To see what
happens when the distribution changes, a learner trained on Omniglot characters is scored on
5-way K-shot episodes of handwritten **digits** (:mod:`mlcore.data.digits`: scikit-learn's bundled
``load_digits``, nothing downloaded, framed like Omniglot's characters).

What is run: the ``source`` learner (default: the ProtoNet 5-way 1-shot record; trained here at
the budget when the record is absent) and the no-learning yardstick
:class:`mlcore.baselines.pixels.PixelCentroids`, both on fixed, seeded Omniglot test episodes and on
digit episodes with the same ways, shots and queries (:func:`score_domains`).

What is recorded: ``domain_shift_digits`` (accuracy on digits as the headline; per shot and domain,
the learner's and the pixels' accuracy with 95 % CI and the learner's gain over pixels; the source
record's name and training time). :func:`evaluate_record` re-scores the source on fresh episodes.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import budget as budget_mod
from ..baselines.pixels import PixelCentroids
from ..data.digits import DIGITS_SOURCE, DigitEpisodes
from ..engine import EVAL_SEED, evaluate, test_sampler
from ..results import RESULTS_DIR, load_record, record_dir, run_record, save_record
from ..runs import load, train_and_record
from ..runtime import get_device

__all__ = ["evaluate_record", "reproduce", "score_domains"]


def score_domains(learner, shots: int, ways: int = 5, queries: int = 15, episodes: int = 1000,
                  seed: int = EVAL_SEED, device=None) -> dict:
    """Accuracy (± 95 % CI) of ``learner`` and of pixel centroids on Omniglot test and digit episodes."""
    device = get_device(device)
    samplers = {"omniglot": test_sampler(ways, shots, queries, "vinyals/test", device),
                "digits": DigitEpisodes(ways, shots, queries, device)}
    out: dict = {}
    for domain, sampler in samplers.items():
        out[domain] = {}
        for who, model in (("learner", learner), ("pixels", PixelCentroids().to(device))):
            r = evaluate(model, sampler, episodes, seed=seed)
            out[domain][who] = {"accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["episodes"]}
    for domain in samplers:
        out[domain]["gain_over_pixels"] = out[domain]["learner"]["accuracy"] - out[domain]["pixels"]["accuracy"]
    return out


def _source_learner(source: str, budget: str, seed: int, out_dir: Path, device, deadline: float | None = None):
    """The trained learner named by ``source`` (a record in ``results/``), trained here if absent."""
    path = RESULTS_DIR / f"{source}.json"
    if budget == "full" and path.exists():
        return load(path, device), load_record(path)
    method, _, rest = source.partition("_omniglot_")
    ways, shots = (int(v) for v in rest.rstrip("s").split("w"))
    rec_path = train_and_record(method, ways, shots, budget=budget, seed=seed, out_dir=out_dir, device=device,
                                name=f"{source}_{budget}_for_domain_shift", progress=False, deadline=deadline)
    return load(rec_path, device), load_record(rec_path)


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
              source: str = "protonet_omniglot_5w1s", shots: tuple[int, ...] = (1, 5), deadline: float | None = None,
              **_ignored) -> list[Path]:
    """Score ``source`` (default: the ProtoNet 5-way 1-shot record) on Omniglot vs digits; write one record.

    ``deadline`` (a ``time.time()`` value: ``reproduce --time-limit``) stops the source's training, when it
    is trained here."""
    budget = budget_mod.current_budget(budget)
    out = record_dir(out_dir, budget)
    device = get_device(device)
    t0 = time.perf_counter()
    learner, src = _source_learner(source, budget, seed, out, device, deadline)
    n_ep = budget_mod.pick(budget, smoke=100, full=1000)
    metrics = {f"{k}shot": score_domains(learner, k, episodes=n_ep, device=device) for k in shots}
    metrics["digits_source"] = DIGITS_SOURCE
    metrics["source_record"] = src.name
    first = metrics[f"{shots[0]}shot"]
    rec = run_record(
        t0, name="domain_shift_digits" + ("" if budget == "full" else f"_{budget}"), method=src.method,
        dataset="omniglot->digits", split="sklearn_digits", ways=5, shots=shots[0],
        accuracy=first["digits"]["learner"]["accuracy"], ci95=first["digits"]["learner"]["ci95"],
        episodes=n_ep, seed=seed,
        config={"source_record": src.name, "source_steps": (src.config.get("recipe") or {}).get("steps"),
                "ways": 5, "shots": list(shots), "queries": 15, "eval_seed": EVAL_SEED,
                "digits_preprocessing": "x/16 (ink = 1), bilinear 8x8 -> 20x20, zero-padded to 28x28"},
        metrics=metrics, train_wall_s=src.train_wall_s, budget=budget)
    return [save_record(rec, out)]


def evaluate_record(record_path, episodes: int | None = None, seed: int = 123, device=None) -> dict:
    """``python -m mlcore eval`` hook: re-score the source learner on fresh episodes drawn with ``seed``."""
    rec = load_record(record_path)
    src = RESULTS_DIR / f"{rec.config['source_record']}.json"
    if not src.exists():
        src = Path(getattr(rec, "_path", src)).parent / f"{rec.config['source_record']}.json"
    learner = load(src, device)
    res = {f"{k}shot": score_domains(learner, k, episodes=episodes or 1000, seed=seed, device=device)
           for k in rec.config["shots"]}
    return {"record": rec.name, "seed": seed, **{k: {d: round(v[d]["learner"]["accuracy"], 4)
                                                     for d in ("omniglot", "digits")} for k, v in res.items()}}
