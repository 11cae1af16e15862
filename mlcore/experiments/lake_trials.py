"""Study: a background-only learner on Lake et al.'s 400 official one-shot trials, on more trials built
Lake's way, and which difference between the book's episodes and Lake's costs the points.

    python -m mlcore.experiments.lake_trials                      # siamese_omniglot_lake_20w1s
    python -m mlcore.experiments.lake_trials --source results/<record>.json --runs-per-alphabet 20

What is run (test only: nothing is tuned or selected on these trials):

* the 400 official trials (:func:`mlcore.data.lake.load_lake_runs`), each run scored with the learner's own
  ``predict(candidates, 0..19, queries)`` at the resolution its record names;
* Lake-way trials from all 20 evaluation alphabets (:func:`mlcore.data.lake.lake_way_trials`, rule ``lake``:
  one drawer for all candidates, another for all queries, drawers 1-8, an alphabet's runs in pairs sharing
  20 characters and using four drawers), and the same runs (same characters, same query order) under the
  other drawer rules ``random`` (each character its own pair out of 20, as the book's episodes),
  ``random_1to8`` and ``lake_any_drawer``, each on all 20 alphabets and on Lake's 10;
* the book's own test episodes of the source record (within-alphabet 20-way 1-shot, seed
  :data:`mlcore.engine.EVAL_SEED`), on all 20 alphabets and on those in Lake's 10.

Trials are scored from image embeddings computed once for the whole evaluation set when the learner is
Siamese-like (``encoder`` + ``pair_logits``; checked against ``predict`` on the official runs), else with
``predict`` run by run. Accuracy is over trials (one query each) with a 95 % CI of 1.96 std / sqrt(n);
trials of one run share their candidates, so the CI over runs is recorded as well.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..data.episodes import EpisodeSampler
from ..data.lake import (
    LAKE_ALPHABETS,
    LAKE_COMMIT,
    LAKE_SHA256,
    LAKE_URL,
    RULES,
    WAYS,
    Trials,
    describe_construction,
    lake_runs_path,
    lake_way_trials,
    load_lake_runs,
    match_to_omniglot,
    read_lake_zip,
)
from ..data.omniglot import DRAWERS, load_raw, load_split
from ..engine import EVAL_SEED
from ..results import Record, load_record, mean_ci95, run_record, save_record
from ..runs import load
from ..runtime import git_commit

SOURCE = "siamese_omniglot_lake_20w1s"
PROTOCOL = ("Lake et al.'s 400 official one-shot trials (brendenlake/omniglot all_runs.zip: 20 runs x 20 trials, "
            "each run 20-way within one evaluation alphabet, one drawing per candidate); each query is assigned "
            "the candidate the learner scores highest; accuracy over the 400 trials, 95 % CI 1.96 std / sqrt(400). "
            "The learner was trained on the 30 background alphabets only and is scored as is, test only.")


# --------------------------------------------------------------------------- helpers
def input_size(learner, record: Record | None = None) -> int:
    """The square input resolution a learner expects: its config's ``image_size`` (what its record's
    ``config.model.image_size`` rebuilt it with), else its encoder's, else the record's, else 28."""
    size = getattr(learner, "config", {}).get("image_size")
    if size is None and hasattr(learner, "encoder"):
        size = getattr(learner.encoder, "image_size", None)
    if size is None and record is not None:
        size = record.config.get("model", {}).get("image_size")
    return int(size or 28)


def check_background_only(record: Record) -> None:
    """Lake's trials use evaluation alphabets: a learner that saw any of them in training would be scored on
    its own training data."""
    split = record.config.get("recipe", {}).get("train_split")
    if split != "background":
        raise ValueError(f"record {record.name} was trained on {split!r}, not on 'background' (the 30 background "
                         "alphabets); Lake's trials come from the evaluation alphabets, so its score would not be "
                         "a test score")


def summary(correct, run_of=None) -> dict:
    """Accuracy and 95 % CI over trials (and over runs when ``run_of`` gives each trial's run)."""
    c = np.asarray(correct, dtype=np.float64).ravel()
    acc, ci = mean_ci95(c)
    out = {"accuracy": acc, "ci95": ci, "trials": int(c.size)}
    if run_of is not None:
        run_of = np.asarray(run_of).ravel()
        per_run = [c[run_of == r].mean() for r in np.unique(run_of)]
        out["runs"] = len(per_run)
        out["ci95_over_runs"] = mean_ci95(per_run)[1] if len(per_run) > 1 else None
    return out


# --------------------------------------------------------------------------- scoring
def score_official(learner, size: int, path=None) -> dict:
    """Score ``learner.predict`` on each official run; returns per-trial correctness and per-run accuracy."""
    runs = load_lake_runs(path, size=size)
    dev = next(learner.parameters()).device if isinstance(learner, torch.nn.Module) else torch.device("cpu")
    correct, run_of, per_run, logits = [], [], {}, []
    grad = torch.enable_grad if getattr(learner, "needs_grad_at_test", False) else torch.no_grad
    for i, r in enumerate(runs):
        with grad():
            lg = learner.predict(r.candidates.to(dev), torch.arange(r.candidates.shape[0], device=dev),
                                 r.queries.to(dev)).detach().cpu()
        ok = (lg.argmax(-1) == r.target).int().tolist()
        correct += ok
        run_of += [i] * len(ok)
        per_run[r.name] = sum(ok) / len(ok)
        logits.append(lg)
    return {**summary(correct, run_of), "correct": correct, "per_run": per_run, "logits": logits, "runs_data": runs}


class PoolScorer:
    """Scores runs whose images are indices into the evaluation pool ``(659 characters x 20 drawers)``.

    Siamese-like learners (``encoder`` and ``pair_logits``) embed the pool once and score a run from the
    embeddings, which is what their ``predict`` does for one shot; any other learner runs ``predict``.
    """

    def __init__(self, learner, size: int, device=None):
        self.learner = learner
        self.classes = load_split("evaluation", size=size)
        if bool((self.classes.class_rot != 0).any()):
            raise ValueError("the evaluation split should have no rotated classes")
        self.images = self.classes.images  # (C, 20, 1, S, S)
        self.device = device or (next(learner.parameters()).device if isinstance(learner, torch.nn.Module)
                                 else torch.device("cpu"))
        self.char_index = {n: i for i, n in enumerate(self.classes.class_names)}
        self.fast = hasattr(learner, "encoder") and hasattr(learner, "pair_logits")
        self.emb = None
        if self.fast:
            flat = self.images.flatten(0, 1)
            with torch.no_grad():
                self.emb = torch.cat([learner.encoder(flat[i:i + 256].to(self.device)).cpu()
                                      for i in range(0, len(flat), 256)])

    def pool_index(self, raw, rows: np.ndarray) -> np.ndarray:
        """npz rows -> pool indices (character * 20 + drawer - 1)."""
        names = np.char.add(np.char.add(raw.alphabet[rows], "/"), raw.character[rows])
        chars = np.vectorize(self.char_index.__getitem__)(names)
        return chars * DRAWERS + raw.drawer[rows].astype(np.int64) - 1

    def logits(self, cand: np.ndarray, query: np.ndarray) -> torch.Tensor:
        """Scores (R, Q, N) of runs given as pool indices ``cand`` (R, N) and ``query`` (R, Q)."""
        cand_t, query_t = torch.as_tensor(cand), torch.as_tensor(query)
        # one preallocated output: keeping thousands of tiny per-run tensors alive between the large
        # (Q, N, D) temporaries fragments the CPU heap (measured: +6 MB per run, 18 GB for 2,800 runs)
        out = torch.empty(len(cand_t), query_t.shape[1], cand_t.shape[1])
        if self.fast:
            with torch.no_grad():
                for r in range(len(cand_t)):
                    zc, zq = self.emb[cand_t[r]].to(self.device), self.emb[query_t[r]].to(self.device)
                    out[r] = self.learner.pair_logits(zq[:, None], zc[None]).cpu()
            return out
        flat = self.images.flatten(0, 1)
        grad = torch.enable_grad if getattr(self.learner, "needs_grad_at_test", False) else torch.no_grad
        for r in range(len(cand_t)):
            with grad():
                out[r] = self.learner.predict(flat[cand_t[r]].to(self.device),
                                              torch.arange(cand_t.shape[1], device=self.device),
                                              flat[query_t[r]].to(self.device)).detach().cpu()
        return out

    def correct(self, cand: np.ndarray, query: np.ndarray, target: np.ndarray) -> np.ndarray:
        return (self.logits(cand, query).argmax(-1) == torch.as_tensor(target)).numpy().astype(np.int8)


class _IndexSampler(EpisodeSampler):
    """The book's episode sampler, returning the drawn indices instead of images."""

    def episode_from_indices(self, cls, drawers):
        return cls, drawers


def book_episodes(classes, episodes: int = 1000, seed: int = EVAL_SEED) -> tuple[np.ndarray, ...]:
    """The book's within-alphabet 20-way 1-shot test episodes (the very indices ``evaluate`` scores), as pool
    indices: candidates (E, 20), queries (E, 20), targets (E, 20), and each episode's alphabet."""
    s = _IndexSampler(classes, WAYS, 1, 1, batch_size=1, seed=seed, within_alphabet=True)
    drawn = list(s.fixed_set(episodes, seed=seed, chunk=episodes))
    cls = torch.cat([c for c, _ in drawn])  # (E, N)
    drw = torch.cat([d for _, d in drawn])  # (E, N, 2): support drawer, query drawer (0-based)
    chars = classes.class_char[cls]
    cand = (chars * DRAWERS + drw[..., 0]).numpy()
    query = (chars * DRAWERS + drw[..., 1]).numpy()
    target = np.tile(np.arange(WAYS), (len(cand), 1))
    alph = [classes.alphabets[int(classes.class_alphabet[c[0]])] for c in cls]
    return cand, query, target, alph


def _scores(correct: np.ndarray, alphabets: list[str], keep=None) -> dict:
    """Summary over runs whose alphabet is in ``keep`` (all when None); ``correct`` is (R, 20)."""
    sel = [i for i, a in enumerate(alphabets) if keep is None or a in keep]
    c = correct[sel]
    return summary(c, np.repeat(np.arange(len(sel)), c.shape[1]))


def _paired(a: np.ndarray, b: np.ndarray, alphabets: list[str], keep=None) -> dict:
    """Mean per-run accuracy difference a - b over the same runs, with its 95 % CI over runs."""
    sel = [i for i, x in enumerate(alphabets) if keep is None or x in keep]
    d = a[sel].mean(1) - b[sel].mean(1)
    m, ci = mean_ci95(d)
    return {"difference": m, "ci95": ci, "runs": len(sel)}


def benchmark_spread(scorer: PoolScorer, raw, replicates: int = 1000, seed: int = 1) -> dict:
    """Accuracy of many benchmarks the size of Lake's, each built his way (his 10 alphabets, one draw of
    20 characters and four drawers out of 1-8 per alphabet, two runs each): how far one such benchmark
    of 400 trials can land from the mean by the luck of its draw."""
    tr = lake_way_trials(LAKE_ALPHABETS, 2 * replicates, seed, "lake", raw)
    c = scorer.correct(scorer.pool_index(raw, tr.candidates), scorer.pool_index(raw, tr.queries), tr.target)
    # runs are alphabet-major and come in blocks of two per character draw: replicate k = block k everywhere
    acc = c.reshape(len(LAKE_ALPHABETS), replicates, 2 * WAYS).mean(axis=(0, 2))
    return {"replicates": replicates, "seed": seed, "mean": float(acc.mean()), "std": float(acc.std(ddof=1)),
            "percentile_2_5": float(np.percentile(acc, 2.5)), "percentile_97_5": float(np.percentile(acc, 97.5)),
            "max": float(acc.max()), "accuracies": [round(float(a), 4) for a in acc]}


def official_decomposition(scorer: PoolScorer, raw, matched: list[dict], draws: int = 50, seed: int = 2) -> dict:
    """Which part of Lake's own draw makes his trials easy: his characters, or his drawer pairs?

    Per official alphabet: Lake's 20 characters under every ordered pair of distinct drawers 1-8 (56 runs),
    and ``draws`` random 20-character draws of the alphabet under Lake's two drawer pairs (2 * draws runs).
    """
    rng = np.random.default_rng(seed)
    pairs_1to8 = [(a, b) for a in range(1, 9) for b in range(1, 9) if a != b]
    by_alphabet: dict[str, list[dict]] = {}
    for r in matched:
        by_alphabet.setdefault(r["candidates"][0]["alphabet"], []).append(r)
    lake_chars, rand_chars, official = [], [], []
    for alphabet, runs in by_alphabet.items():
        chars = np.array([scorer.char_index[f"{alphabet}/{m['character']}"] for m in runs[0]["candidates"]])
        pairs = [(r["candidates"][0]["drawer"], r["queries"][0]["drawer"]) for r in runs]
        pool = np.array([i for n, i in scorer.char_index.items() if n.split("/")[0] == alphabet])
        for d_c, d_q in pairs_1to8:
            lake_chars.append((chars, d_c, d_q))
        for _ in range(draws):
            pick = rng.choice(pool, WAYS, replace=False)
            rand_chars += [(pick, d_c, d_q) for d_c, d_q in pairs]
        official += [(chars, d_c, d_q) for d_c, d_q in pairs]

    def score(runs) -> dict:
        cand = np.stack([ch * DRAWERS + d_c - 1 for ch, d_c, _ in runs])
        query = np.stack([ch * DRAWERS + d_q - 1 for ch, _, d_q in runs])
        c = scorer.correct(cand, query, np.tile(np.arange(WAYS), (len(cand), 1)))
        return _r(summary(c, np.repeat(np.arange(len(runs)), WAYS)))

    return {"lake_characters_lake_drawer_pairs": score(official),
            "lake_characters_all_drawer_pairs_1to8": score(lake_chars),
            "random_characters_lake_drawer_pairs": score(rand_chars),
            "draws_per_alphabet": draws, "seed": seed}


def pixel_nn_spread(raw, matched: list[dict], replicates: int = 500, seed: int = 1) -> dict:
    """A learner-free check: 1-nearest-neighbour on raw 105 x 105 pixels (Euclidean), on the official runs
    and on Lake-sized benchmarks built his way (same construction as :func:`benchmark_spread`)."""
    ev = np.flatnonzero(~raw.background)
    x = torch.from_numpy(raw.unpack(ev).reshape(len(ev), -1).astype(np.float32))
    pos = np.full(len(raw.background), -1)
    pos[ev] = np.arange(len(ev))

    def correct(cand, query, target) -> np.ndarray:
        out = np.empty(cand.shape, dtype=np.int8)
        for r in range(len(cand)):
            d = torch.cdist(x[pos[query[r]]], x[pos[cand[r]]])
            out[r] = d.argmin(-1).numpy() == target[r]
        return out

    oc = correct(np.array([[m["row"] for m in r["candidates"]] for r in matched]),
                 np.array([[m["row"] for m in r["queries"]] for r in matched]),
                 np.array([r["target"] for r in matched]))
    tr = lake_way_trials(LAKE_ALPHABETS, 2 * replicates, seed, "lake", raw)
    acc = correct(tr.candidates, tr.queries, tr.target).reshape(len(LAKE_ALPHABETS), replicates, 2 * WAYS)
    acc = acc.mean(axis=(0, 2))
    official = float(oc.mean())
    return {"official": official, "replicates": replicates, "seed": seed, "mean": float(acc.mean()),
            "std": float(acc.std(ddof=1)), "fraction_at_or_above_official": float(np.mean(acc >= official - 1e-9))}


def _per_alphabet(correct: np.ndarray, alphabets: list[str]) -> dict:
    out = {}
    for a in sorted(set(alphabets)):
        s = _scores(correct, alphabets, {a})
        out[a] = {"accuracy": round(s["accuracy"], 4), "ci95": round(s["ci95"], 4), "trials": s["trials"]}
    return out


def _r(d: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- the study
def run_study(source: str | Path = SOURCE, runs_per_alphabet: int = 20, seed: int = 0,
              book_episode_count: int = 1000, name: str | None = None, out_dir=None, device="cpu",
              save: bool = True, replicates: int = 1000) -> Record:
    t0 = time.perf_counter()
    commit = git_commit()
    rec = load_record(source)
    check_background_only(rec)
    learner = load(source, device)
    size = input_size(learner, rec)

    # 1. the official trials, through the learner's own predict
    off = score_official(learner, size)
    raw = load_raw()
    matched = match_to_omniglot(read_lake_zip(lake_runs_path()), raw)
    construction = describe_construction(matched)

    # 2. the evaluation pool, Lake-way trials under each drawer rule (paired: same runs), the book's episodes
    scorer = PoolScorer(learner, size, device)
    check = None
    if scorer.fast:  # the embedding path must agree with predict on the official runs
        idx = [scorer.pool_index(raw, np.array([m["row"] for m in r["candidates"]])) for r in matched]
        qdx = [scorer.pool_index(raw, np.array([m["row"] for m in r["queries"]])) for r in matched]
        lg = scorer.logits(np.stack(idx), np.stack(qdx))
        ref = torch.stack(off["logits"])
        check = {"max_abs_logit_diff": float((lg - ref).abs().max()),
                 "same_argmax": bool((lg.argmax(-1) == ref.argmax(-1)).all())}
    lake_way: dict[str, dict] = {}
    correct: dict[str, np.ndarray] = {}
    alphabets = None
    for rule in RULES:
        tr: Trials = lake_way_trials(None, runs_per_alphabet, seed, rule, raw)
        alphabets = tr.alphabet
        correct[rule] = scorer.correct(scorer.pool_index(raw, tr.candidates), scorer.pool_index(raw, tr.queries),
                                       tr.target)
        lake_way[rule] = {"rule": RULES[rule], "all_20_alphabets": _r(_scores(correct[rule], alphabets)),
                          "lake_10_alphabets": _r(_scores(correct[rule], alphabets, LAKE_ALPHABETS)),
                          "other_10_alphabets": _r(_scores(correct[rule], alphabets,
                                                           set(alphabets) - set(LAKE_ALPHABETS)))}
    spread = benchmark_spread(scorer, raw, replicates, seed + 1)
    spread["fraction_at_or_above_official"] = float(np.mean(np.array(spread["accuracies"]) >= off["accuracy"] - 1e-9))
    decomposition = official_decomposition(scorer, raw, matched, seed=seed + 2)
    pixel = pixel_nn_spread(raw, matched, max(1, replicates // 2), seed + 1)
    bc, bq, bt, balph = book_episodes(scorer.classes, book_episode_count)
    book_correct = scorer.correct(bc, bq, bt)
    book = {"all_20_alphabets": _r(_scores(book_correct, balph)),
            "lake_10_alphabets": _r(_scores(book_correct, balph, LAKE_ALPHABETS)),
            "source_record_accuracy": rec.accuracy}
    ablation = {
        "a_book_episodes_all_20_alphabets": book["all_20_alphabets"],
        "b_lake_way_lake_10_alphabets": lake_way["lake"]["lake_10_alphabets"],
        "c_lake_way_all_20_alphabets": lake_way["lake"]["all_20_alphabets"],
        "d_random_drawers_lake_10_alphabets": lake_way["random"]["lake_10_alphabets"],
        "d_book_episodes_in_lake_10_alphabets": book["lake_10_alphabets"],
        "e_random_drawers_all_20_alphabets": lake_way["random"]["all_20_alphabets"],
        "paired_lake_minus_random_drawers": {
            "all_20_alphabets": _r(_paired(correct["lake"], correct["random"], alphabets)),
            "lake_10_alphabets": _r(_paired(correct["lake"], correct["random"], alphabets, LAKE_ALPHABETS))},
        "paired_random_1to8_minus_random": _r(_paired(correct["random_1to8"], correct["random"], alphabets)),
        "paired_lake_minus_lake_any_drawer": _r(_paired(correct["lake"], correct["lake_any_drawer"], alphabets)),
        "lake_10_minus_other_10_alphabets_lake_way": round(
            lake_way["lake"]["lake_10_alphabets"]["accuracy"] - lake_way["lake"]["other_10_alphabets"]["accuracy"], 5),
        "official_vs_lake_way_same_alphabets": round(
            off["accuracy"] - lake_way["lake"]["lake_10_alphabets"]["accuracy"], 5),
    }
    cfg = {
        "source_record": rec.name,
        "weights_from": rec.name,
        "protocol": PROTOCOL,
        "image_size": size,
        "image_size_from": "the learner's config['image_size'] (its record's config.model.image_size)",
        "lake_zip": {"url": LAKE_URL, "commit": LAKE_COMMIT, "sha256": LAKE_SHA256},
        "lake_way": {"seed": seed, "runs_per_alphabet": runs_per_alphabet, "rules": RULES,
                     "characters": "per alphabet, runs in pairs sharing one draw of 20 characters; query order "
                                   "shuffled; the same draws for every rule (paired)"},
        "benchmark_spread": {"replicates": replicates, "seed": seed + 1,
                             "what": "benchmarks of Lake's size built his way on his 10 alphabets (one character "
                                     "draw and four drawers of 1-8 per alphabet, two runs each), scored alike"},
        "official_decomposition": {"seed": seed + 2, "what": "Lake's characters under all 56 ordered drawer pairs "
                                   "of 1-8, vs random characters of the same alphabets under Lake's drawer pairs"},
        "pixel_1nn": {"replicates": max(1, replicates // 2), "seed": seed + 1,
                      "what": "1-nearest neighbour on raw 105 x 105 pixels, Euclidean: a learner-free check"},
        "book_episodes": {"seed": EVAL_SEED, "episodes": book_episode_count,
                          "sampler": "EpisodeSampler(load_split('evaluation'), 20, 1, 1, within_alphabet=True)"},
        "scoring": "embeddings of the evaluation set computed once" if scorer.fast else "learner.predict per run",
        "test_only": "no tuning, selection or early stopping on these trials",
    }
    metrics = {
        "official": {"correct_trials": int(sum(off["correct"])), "ci95_over_runs": off["ci95_over_runs"],
                     "per_run": {k: round(v, 4) for k, v in off["per_run"].items()},
                     "per_trial_correct": off["correct"]},
        "lake_construction": {k: v for k, v in construction.items() if k != "runs"},
        "lake_runs": construction["runs"],
        "lake_way": lake_way,
        "book_episodes": book,
        "ablation": ablation,
        "per_alphabet": {"lake": _per_alphabet(correct["lake"], alphabets),
                         "random": _per_alphabet(correct["random"], alphabets)},
        "benchmark_spread": spread,
        "official_decomposition": decomposition,
        "pixel_1nn": pixel,
        "embedding_check": check,
        "reference": {"koch_2015_siamese": 0.920, "humans_lake_2015": 0.955, "lake_2015_pixel_1nn": 0.217},
    }
    out = run_record(
        t0, name=name or f"{rec.method}_omniglot_lake_official", method=rec.method, dataset="omniglot",
        split="lake_official", ways=WAYS, shots=1, accuracy=off["accuracy"], ci95=off["ci95"],
        episodes=off["trials"], seed=seed, config=cfg, metrics=metrics, git_commit=commit, checkpoint=None)
    if save:
        out._path = save_record(out, out_dir)  # type: ignore[attr-defined]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=SOURCE, help="a background-only record (name or path)")
    p.add_argument("--runs-per-alphabet", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--book-episodes", type=int, default=1000)
    p.add_argument("--replicates", type=int, default=1000, help="Lake-sized benchmarks for the spread")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None, help="results folder (default: mlcore.results.results_dir())")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rec = run_study(a.source, a.runs_per_alphabet, a.seed, a.book_episodes, a.name, a.out, a.device,
                    replicates=a.replicates)
    m = rec.metrics
    print(f"official: {rec.accuracy:.4f} +- {rec.ci95:.4f} ({m['official']['correct_trials']}/{rec.episodes})")
    for k, v in m["ablation"].items():
        print(k, v)
    sp = m["benchmark_spread"]
    print(f"Lake-sized benchmarks built his way: mean {sp['mean']:.4f}, std {sp['std']:.4f}, 95 % range "
          f"[{sp['percentile_2_5']:.4f}, {sp['percentile_97_5']:.4f}], at or above official "
          f"{sp['fraction_at_or_above_official']:.4f}")
    px = m["pixel_1nn"]
    print(f"pixel 1-NN: official {px['official']:.4f}; Lake-sized benchmarks his way {px['mean']:.4f} +- "
          f"{px['std']:.4f} (std), at or above official {px['fraction_at_or_above_official']:.4f}")
    for k, v in m["official_decomposition"].items():
        print(k, v)
    print("embedding check", m["embedding_check"])
    print("wrote", getattr(rec, "_path", None))


if __name__ == "__main__":
    main()
