"""Score every record under the book's protocol and, where the paper's differs, under the paper's.

    python -m mlcore.experiments.protocol_scores                 # every Omniglot record in results/
    python -m mlcore.experiments.protocol_scores maml_omniglot_5w1s relationnet_omniglot_5w1s

No retraining: each record's checkpoint is loaded and scored on the book's seeded test episodes,
with batch norm, queries per class and episode count set by the protocol
(:mod:`mlcore.protocols`). The scores go into the record itself, under ``metrics.protocols``:
``{"book": {...}, "paper": {...}}``, each with accuracy, CI, episodes, per-episode accuracies
(chapter 9's paired tests use them, one protocol at a time), the protocol and its words, and the
commit and hardware of the scoring run. Where a protocol equals the one the record was scored
under, the record's own score is reused.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from ..protocols import Protocol, book_protocol, score, training_words
from ..reference import published, setting_name
from ..results import atomic_write_text, load_record, results_dir
from ..runs import load
from ..runtime import git_commit, hardware

#: the protocol a record's own score was measured under (before this study existed): 15 queries,
#: 1,000 episodes, last checkpoint, and batch norm as the learner ran at test by default
RECORD_QUERIES = 15


def _record_protocol(learner, recipe: dict) -> Protocol:
    kind = book_protocol(learner).batch_norm
    bn = "batch" if kind == "support" else kind  # the MAML family scored transductively by default
    return Protocol(bn, queries=recipe.get("test_queries", RECORD_QUERIES))


def _entry(res: dict, protocol: Protocol, shots: int, reused: bool) -> dict:
    return {"accuracy": res["accuracy"], "ci95": res["ci95"], "episodes": res["episodes"],
            "protocol": protocol.to_dict(), "words": protocol.words(shots),
            "per_episode": [round(a, 4) for a in res["per_episode"]],
            **({"reused_record_score": True} if reused else
               {"git_commit": git_commit(), "hardware": hardware(), "scored": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())})}


def protocol_scores(path: str | Path, device=None, episodes: int | None = None) -> dict:
    """Score one record under the book's and the paper's protocols; write them into the record; return them.

    ``episodes`` (fewer than the protocol's, for a quick look) scores without writing anything.
    """
    path = Path(path)
    rec = load_record(path)
    raw = json.loads(path.read_text())
    recipe = rec.config.get("recipe", {})
    within = bool(recipe.get("within_alphabet", False))
    learner = load(path, device)
    setting = setting_name(rec.ways, rec.shots, within)
    own = _record_protocol(learner, recipe)
    book = replace(book_protocol(learner), training=training_words(recipe))  # what this record trained on
    if within:  # Lake's within-alphabet protocol is one query per class: the record's own episodes are the book's
        book = replace(book, queries=own.queries)
    paper_pub = published(rec.method, setting)
    out: dict = {}
    for key, protocol in (("book", book), ("paper", paper_pub.protocol if paper_pub else None)):
        if protocol is None or not protocol.scorable or (key == "paper" and protocol.image_size != 28):
            continue  # nothing stated to score under (or another study scores it: Lake's 105-pixel trials)
        if key == "paper" and protocol.batch_norm not in ("batch", "per_query", "support", book.batch_norm):
            continue
        # the record's own score is reused only where it kept its per-episode accuracies (paired tests need them)
        same = (protocol.batch_norm == own.batch_norm and protocol.queries_for(rec.shots) == own.queries
                and (protocol.episodes or 1000) == (rec.episodes or 1000) and not protocol.test_steps
                and episodes is None and bool(rec.metrics.get("per_episode")))
        if same:
            res = {"accuracy": rec.accuracy, "ci95": rec.ci95, "episodes": rec.episodes,
                   "per_episode": rec.metrics.get("per_episode", [])}
        else:
            res = score(learner, protocol, rec.ways, rec.shots, rec.split or "vinyals/test", within,
                        episodes=episodes)
        out[key] = _entry(res, protocol, rec.shots, same)
    nt = published(rec.method, setting, batch_norm="per_query")
    if nt is not None and nt is not paper_pub:
        # Nichol et al. also published non-transductive numbers, each query run with the support set
        res = score(learner, nt.protocol, rec.ways, rec.shots, rec.split or "vinyals/test", within,
                    episodes=episodes)
        out["paper_non_transductive"] = _entry(res, nt.protocol, rec.shots, False)
    if episodes is None:
        raw.setdefault("metrics", {})["protocols"] = out
        atomic_write_text(path, json.dumps(raw, indent=2) + "\n")
    return out


def omniglot_records(directory: str | Path | None = None) -> list[Path]:
    """The Omniglot few-shot records with a checkpoint (what this study can re-score)."""
    out = []
    for p in sorted(results_dir(directory).glob("*.json")):
        d = json.loads(p.read_text())
        if d.get("dataset") == "omniglot" and d.get("checkpoint") and d.get("ways") and d.get("shots"):
            out.append(p)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="score records under the book's and the papers' protocols")
    ap.add_argument("names", nargs="*", help="record names (default: every Omniglot record in results/)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--episodes", type=int, default=None, help="fewer episodes, for a quick look (nothing is "
                                                                  "written)")
    args = ap.parse_args(argv)
    paths = [results_dir() / f"{n}.json" for n in args.names] if args.names else omniglot_records()
    for p in paths:
        t0 = time.time()
        out = protocol_scores(p, args.device, args.episodes)
        print(json.dumps({"record": p.stem, **{k: round(100 * v["accuracy"], 2) for k, v in out.items()},
                          "s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
