"""Study: a learned metric between tasks, and nearest-task transfer, on Omniglot (the source article's §4.1).

    python -m mlcore reproduce --only task_similarity_omniglot

The pieces (tasks, the set encoder and similarity head, Task2Vec-style embeddings, transfer by
fine-tuning) are algorithm code in :mod:`mlcore.metric.task_similarity`. This study puts them together:

What is run (:func:`run_analysis`, sized by :func:`config_for`):

1. one *source* task per ``background`` alphabet (its first ``ways`` characters), and a CNN trained
   on each (what was learned on that task, :func:`~mlcore.metric.task_similarity.train_source`);
2. the learned task metric (set encoder + similarity head) trained with the §4.1 squared loss, with
   y = 1 for two tasks of the same alphabet (disjoint characters);
3. Task2Vec-style embeddings from a fixed probe trained on all source characters, compared by
   Task2Vec's cosine and by the same learned head;
4. *new* tasks (each alphabet's last ``ways`` characters, 5 shots): every one fine-tuned from random
   weights and from every source's CNN, which gives the transfer matrix ``acc[target, source]``; each
   metric then retrieves one source per new task (:func:`measure_transfer`, :func:`analyse`).

What is recorded: ``task_similarity_omniglot`` (accuracy = fine-tuning from the source retrieved by the
learned set metric), with the transfer table, retrieval quality against chance, the transfer and
similarity matrices and the loss history; one checkpoint holds every trained model.
:func:`evaluate_record` re-scores the record's models on fresh target tasks.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..budget import current_budget, pick
from ..data.omniglot import ClassSet, load_split
from ..metric.task_similarity import (
    SetTaskEncoder,
    Task,
    TaskSimilarity,
    alphabet_split,
    fine_tune_accuracy,
    make_task,
    random_subset,
    retrieval_scores,
    standardise,
    t2v_embed_tasks,
    task2vec_similarity,
    train_embedding_head,
    train_probe,
    train_set_similarity,
    train_source,
)
from ..nets import Conv4
from ..results import (
    Record,
    atomic_torch_save,
    checkpoint_path,
    load_record,
    mean_ci95,
    record_dir,
    save_record,
)
from ..runtime import get_device, git_commit, hardware


def config_for(budget: str) -> dict:
    """The analysis' sizes: a few alphabets and steps for ``smoke``; all 30 alphabets for ``full``."""
    return pick(budget,
                smoke={"alphabets": 5, "ways": 5, "shots": 5, "queries": 15, "targets_per_alphabet": 1,
                       "hidden": 16, "source_steps": 25, "ft_steps": 12, "sim_steps": 30, "sim_pairs": 8,
                       "sim_shots": 3, "probe_steps": 30, "t2v_tasks_per_alphabet": 2, "t2v_head_steps": 30,
                       "head_steps": 150},
                # sized for <= 6 min on a shared GPU; the transfer matrix (30 x 30 fine-tunes) dominates
                full={"alphabets": 30, "ways": 5, "shots": 5, "queries": 15, "targets_per_alphabet": 1,
                      "hidden": 32, "source_steps": 300, "ft_steps": 25, "sim_steps": 1500, "sim_pairs": 16,
                      "sim_shots": 5, "probe_steps": 1500, "t2v_tasks_per_alphabet": 8, "t2v_head_steps": 50,
                      "head_steps": 2000})


def build_tasks(cs: ClassSet, cfg: dict, seed: int):
    """Source tasks (one per alphabet: its first ``ways`` source characters, 15 drawings each) and targets."""
    split = alphabet_split(cs, cfg["ways"], cfg["alphabets"])
    g = torch.Generator().manual_seed(seed)
    sources = [make_task(cs, src[: cfg["ways"]], a, 15, 0, g) for a, (src, _) in enumerate(split)]
    return split, sources


def make_targets(cs: ClassSet, split, cfg: dict, seed: int) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    return [make_task(cs, tgt, a, cfg["shots"], cfg["queries"], g)
            for _ in range(cfg["targets_per_alphabet"]) for a, (_, tgt) in enumerate(split)]


def analyse(acc: torch.Tensor, scratch: torch.Tensor, scores: dict[str, torch.Tensor], target_alph: torch.Tensor,
            source_alph: torch.Tensor, top_k: int = 3) -> dict:
    """Transfer table and retrieval quality from the transfer matrix ``acc`` (T, S) and retrieval scores."""
    def ci(v):
        m, c = mean_ci95(v.tolist())
        return {"accuracy": m, "ci95": c}

    same = (target_alph[:, None] == source_alph[None]).float()
    table = {"no transfer": ci(scratch), "random training task": ci(acc.mean(1)),
             "same-alphabet task (label oracle)": ci((acc * same).sum(1) / same.sum(1).clamp_min(1)),
             "best in hindsight (oracle)": ci(acc.max(1).values)}
    retrieval = {}
    rank_of = acc.argsort(1, descending=True).argsort(1)  # 0 = most helpful source
    S = acc.shape[1]
    for name, sc in scores.items():
        pick_ = sc.argmax(1)
        got = acc.gather(1, pick_[:, None]).squeeze(1)
        table[f"retrieved by {name}"] = ci(got)
        ranks = rank_of.gather(1, pick_[:, None]).squeeze(1).float()
        retrieval[name] = {"same_alphabet_top1": float(same.gather(1, pick_[:, None]).mean()),
                           f"in_top{top_k}_most_helpful": float((ranks < top_k).float().mean()),
                           "mean_rank_of_retrieved": float(ranks.mean()) + 1,
                           "gain_over_no_transfer": float((got - scratch).mean())}
    retrieval["chance"] = {"same_alphabet_top1": 1 / S, f"in_top{top_k}_most_helpful": min(top_k / S, 1.0),
                           "mean_rank_of_retrieved": (S + 1) / 2}
    return {"transfer_table": table, "retrieval": retrieval}


def run_analysis(budget: str | None = None, seed: int = 0, device=None, cfg_overrides: dict | None = None) -> dict:
    """Train every piece and measure; returns the metrics dict plus the trained models (key ``_models``)."""
    budget = current_budget(budget)
    cfg = {**config_for(budget), **(cfg_overrides or {})}
    device = get_device(device)
    t0 = time.perf_counter()
    cs = load_split("background")
    split, sources = build_tasks(cs, cfg, seed)
    timings = {}
    # 1. what is learned on each training task
    t = time.perf_counter()
    src_models = [train_source(s, cfg["source_steps"], cfg["hidden"], seed + i, device) for i, s in enumerate(sources)]
    src_states = [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in src_models]
    timings["sources_s"] = time.perf_counter() - t
    # 2. the learned task metric (set encoder), §4.1 loss with y = same alphabet
    t = time.perf_counter()
    enc, sim, hist = train_set_similarity(cs, split, cfg["sim_steps"], cfg["sim_pairs"], 4, cfg["sim_shots"],
                                          hidden=cfg["hidden"], seed=seed, device=device)
    timings["similarity_s"] = time.perf_counter() - t
    # 3. Task2Vec-style embeddings from a fixed probe (trained once on all source characters)
    t = time.perf_counter()
    all_src = [c for src, _ in split for c in src]
    probe = train_probe(cs, all_src, cfg["probe_steps"], cfg["hidden"], seed=seed, device=device)
    g = torch.Generator().manual_seed(seed + 1)
    pool = [make_task(cs, random_subset(split[a][0], cfg["ways"], g), a, cfg["shots"], 0, g)
            for a in range(len(split)) for _ in range(cfg["t2v_tasks_per_alphabet"])]
    pool_emb = t2v_embed_tasks(probe, [p for p in pool], cfg["shots"], cfg["t2v_head_steps"], seed)
    pool_alph = torch.tensor([p.alphabet for p in pool])
    t2v_head = train_embedding_head(standardise(pool_emb, pool_emb), pool_alph, cfg["head_steps"], seed)
    timings["task2vec_s"] = time.perf_counter() - t
    # 4. new tasks, retrieval, transfer matrix
    t = time.perf_counter()
    targets = make_targets(cs, split, cfg, seed + 2)
    metrics = measure_transfer(cfg, sources, src_states, targets, enc, sim, probe, t2v_head, pool_emb, seed, device)
    timings["transfer_s"] = time.perf_counter() - t
    metrics.update({"config": cfg, "timings": timings, "similarity_loss_history": hist[:: max(1, len(hist) // 50)],
                    "alphabets": cs.alphabets[: len(split)], "wall_s": time.perf_counter() - t0})
    metrics["_models"] = {"enc": enc, "sim": sim, "probe": probe, "t2v_head": t2v_head, "pool_emb": pool_emb,
                          "src_states": src_states, "sources": sources, "targets": targets, "split": split, "cs": cs}
    return metrics


def measure_transfer(cfg, sources, src_states, targets, enc, sim, probe, t2v_head, pool_emb, seed, device) -> dict:
    shots, steps, hidden = cfg["shots"], cfg["ft_steps"], cfg["hidden"]
    src_alph = torch.tensor([s.alphabet for s in sources])
    tgt_alph = torch.tensor([t.alphabet for t in targets])
    scores = {"learned set metric": retrieval_scores(enc.to(device), sim.to(device),
                                                     [s.to(device) for s in sources],
                                                     [t.to(device) for t in targets], shots).cpu()}
    e_src = t2v_embed_tasks(probe, [s.to(device) for s in sources], shots, cfg["t2v_head_steps"], seed).cpu()
    e_tgt = t2v_embed_tasks(probe, [t.to(device) for t in targets], shots, cfg["t2v_head_steps"], seed).cpu()
    scores["Task2Vec cosine"] = task2vec_similarity(e_tgt[:, None], e_src[None])
    zs, zt = standardise(e_src, pool_emb.cpu()), standardise(e_tgt, pool_emb.cpu())
    with torch.no_grad():
        scores["Task2Vec + learned head"] = t2v_head(zt[:, None].expand(-1, len(sources), -1),
                                                     zs[None].expand(len(targets), -1, -1))
    acc = torch.zeros(len(targets), len(sources))
    scratch = torch.zeros(len(targets))
    for i, tgt in enumerate(targets):
        scratch[i] = fine_tune_accuracy(tgt, None, steps, hidden, seed + i, device=device)
        for j, st in enumerate(src_states):
            acc[i, j] = fine_tune_accuracy(tgt, st, steps, hidden, seed + i, device=device)
    out = analyse(acc, scratch, scores, tgt_alph, src_alph)
    # alphabet x alphabet learned similarity (targets of alphabet a vs the source of alphabet b)
    A = len(sources)
    S = scores["learned set metric"].view(-1, A, A).mean(0)
    out.update({"transfer_matrix": acc.tolist(), "no_transfer": scratch.tolist(),
                "similarity_matrix": S.tolist(),
                "retrieved": {k: v.argmax(1).tolist() for k, v in scores.items()},
                "target_alphabets": tgt_alph.tolist()})
    return out


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
              method: str = "task_similarity") -> list[Path]:
    """Run the task-similarity analysis and write ``task_similarity_omniglot[_smoke].json`` + its models.

    (``method`` only names the record's method, as the registry entry does.)
    """
    budget = current_budget(budget)
    t0 = time.perf_counter()
    m = run_analysis(budget, seed, device)
    models = m.pop("_models")
    name = "task_similarity_omniglot" + ("" if budget == "full" else f"_{budget}")
    out_dir = record_dir(out_dir, budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / f"{name}.pt"
    atomic_torch_save({"enc": models["enc"].state_dict(), "sim": models["sim"].state_dict(),
                       "probe": models["probe"].state_dict(), "t2v_head": models["t2v_head"].state_dict(),
                       "pool_emb": models["pool_emb"].cpu(),
                       "sources": {str(i): s for i, s in enumerate(models["src_states"])}}, ckpt)
    best = m["transfer_table"]["retrieved by learned set metric"]
    rec = Record(name=name, method=method, dataset="omniglot", split="background",
                 ways=m["config"]["ways"], shots=m["config"]["shots"], accuracy=best["accuracy"], ci95=best["ci95"],
                 episodes=len(m["no_transfer"]), seed=seed, config={"analysis": m["config"]}, metrics=m,
                 hardware=hardware(), wall_s=time.perf_counter() - t0, git_commit=git_commit(),
                 checkpoint=ckpt.name, budget=budget)
    return [save_record(rec, out_dir)]


def evaluate_record(record_path, episodes=None, seed: int = 123, device=None) -> dict:
    """Re-score a record's trained similarity + source models on fresh target tasks (new drawings)."""
    rec = load_record(record_path)
    cfg = dict(rec.config["analysis"])
    if episodes:
        cfg["targets_per_alphabet"] = max(1, math.ceil(episodes / cfg["alphabets"]))
    device = get_device(device)
    state = torch.load(checkpoint_path(rec), map_location="cpu", weights_only=True)
    cs = load_split("background")
    split, sources = build_tasks(cs, cfg, rec.seed)
    enc, sim = SetTaskEncoder(cfg["hidden"]), TaskSimilarity()
    enc.load_state_dict(state["enc"])
    sim.load_state_dict(state["sim"])
    probe = Conv4(1, cfg["hidden"], pool="max")
    probe.load_state_dict(state["probe"])
    pool_emb = state["pool_emb"]
    t2v_head = TaskSimilarity(pool_emb.shape[1], 64)
    t2v_head.load_state_dict(state["t2v_head"])
    src_states = [state["sources"][str(i)] for i in range(len(sources))]
    targets = make_targets(cs, split, cfg, seed)
    m = measure_transfer(cfg, sources, src_states, targets, enc.eval().to(device), sim.eval().to(device),
                         probe.eval().to(device), t2v_head.eval(), pool_emb, seed, device)
    r = m["transfer_table"]["retrieved by learned set metric"]
    return {"record": rec.name, "accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": len(targets),
            "seed": seed, "reference_accuracy": rec.accuracy, "reference_ci95": rec.ci95,
            "transfer_table": m["transfer_table"], "retrieval": m["retrieval"]}
