"""Study: find the training task that helps a new task most, and measure what transferring from it is worth.

    python -m mlcore reproduce --only task_similarity_omniglot

The source article (§4.1) proposes learning a similarity f_theta(T_i, T_j) between tasks with the loss
sum (f_theta(T_i, T_j) - y_ij)^2 and, for a new task, transferring from the most similar training task.
This study makes that a measurement with enough power to tell methods apart. The pieces are algorithm
code in :mod:`mlcore.metric.task_similarity`; what is run (:func:`run_analysis`, sized by
:func:`config_for`):

1. **Characters by role.** Each ``background`` alphabet is split by character: its *source* characters
   (what a training task learns from), five *label* characters (tasks whose measured transfer gains
   train the metric and choose the recipe) and one or two groups of five *target* characters (new tasks
   from an alphabet a source has seen). Every ``evaluation`` alphabet gives up to ``max_groups`` more
   groups of five target characters (new tasks from alphabets no source has seen).
2. **Sources.** One training task per background alphabet: a Conv-4 trained to classify that alphabet's
   source characters. Also one Conv-4 trained on *all* source characters (the "pool everything"
   alternative to retrieval) and an untrained one (no transfer).
3. **The transfer recipe**, chosen on the label tasks: nearest-centroid on the source's frozen features
   (cosine or Euclidean) or fine-tuning the whole source network on the support set.
4. **Five retrievers**, each giving a score to every (new task, source) pair from the new task's support
   set only: the article's f_theta trained with y_ij = the *measured* transfer gain (normalised per
   task); the same f_theta trained with y_ij = "same alphabet"; Task2Vec's cosine; the cosine between
   mean embeddings under a fixed encoder; and each source's leave-one-out accuracy on the support set.
5. **Transfer** to every target from every source, pooled, untrained, top-1 and top-k retrieved; the
   statistics are per target *group* (its drawing splits averaged), with paired tests between
   retrievers and a Holm correction.

What is recorded: ``task_similarity_omniglot`` (accuracy = transfer from the source retrieved by the
metric trained on measured gains, over all target groups), with the transfer tables per target kind,
retrieval quality, paired tests, the curve of retrieval against the number of sources, the transfer and
score matrices, the metric's training history and the sources' held-out accuracy. One checkpoint holds
every trained network (sources in half precision, to stay small). :func:`evaluate_record` re-scores the
stored models on fresh drawing splits.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..budget import current_budget, pick
from ..compare import holm, sign_test_p
from ..data.omniglot import DRAWERS, ClassSet, load_split
from ..metric.task_similarity import (
    LearnedTaskMetric,
    Task,
    ensemble_transfer_accuracy,
    feature_bank,
    fine_tune_accuracy,
    frozen_transfer_accuracy,
    gain_labels,
    rank_correlation,
    seeded,
    support_loo_score,
    task2vec,
    task2vec_similarity,
    train_feature_net,
    train_task_metric,
)
from ..nets import Conv4
from ..results import (
    atomic_torch_save,
    checkpoint_path,
    load_record,
    mean_ci95,
    record_dir,
    run_record,
    save_record,
)
from ..runtime import get_device

RETRIEVERS = ("learned metric, y = transfer gain", "learned metric, y = same alphabet", "Task2Vec cosine",
              "mean embedding cosine", "support-set leave-one-out", "best source on the label tasks")
HEADLINE = RETRIEVERS[0]
KINDS = {"background": "new characters of a source's alphabet", "evaluation": "alphabets no source has seen"}


def config_for(budget: str) -> dict:
    """Sizes: a few alphabets and steps for ``smoke``; every alphabet of both splits for ``full``."""
    return pick(budget,
                smoke={"alphabets": 6, "eval_alphabets": 2, "ways": 5, "shots": 5, "hidden": 8,
                       "source_steps": 30, "pooled_steps": 40, "batch": 32, "bg_target_groups": 1,
                       "max_groups": 2, "label_splits": 2, "target_splits": 1, "metric_val_alphabets": 2,
                       "metric_steps": 100, "ft_val_tasks": 2, "ft_steps": 5, "t2v_head_steps": 10,
                       "subset_draws": 5},
                full={"alphabets": 30, "eval_alphabets": 20, "ways": 5, "shots": 5, "hidden": 32,
                      "source_steps": 400, "pooled_steps": 2500, "batch": 64, "bg_target_groups": 2,
                      "max_groups": 8, "label_splits": 8, "target_splits": 2, "metric_val_alphabets": 6,
                      "metric_steps": 3000, "ft_val_tasks": 5, "ft_steps": 25, "t2v_head_steps": 50,
                      "subset_draws": 50})


# --------------------------------------------------------------------------- who plays which role
def character_roles(bg: ClassSet, ev: ClassSet, cfg: dict) -> dict:
    """Source / label / target characters per alphabet (class indices), as described in the module docstring."""
    ways = cfg["ways"]
    sources, labels, targets = [], [], []
    for a in range(cfg["alphabets"]):
        idx = torch.nonzero(bg.class_alphabet.cpu() == a).flatten().tolist()
        groups = cfg["bg_target_groups"] if len(idx) >= 24 else 1
        held = ways * (groups + 1)
        if len(idx) - held < 4:
            raise ValueError(f"alphabet {bg.alphabets[a]!r} has {len(idx)} characters; need >= {held + 4}")
        sources.append({"alphabet": a, "chars": idx[:-held]})
        labels.append({"alphabet": a, "chars": idx[-held:-held + ways]})
        for g in range(groups):
            lo = len(idx) - ways * (groups - g)
            targets.append({"kind": "background", "alphabet": a, "chars": idx[lo:lo + ways]})
    for a in range(cfg["eval_alphabets"]):
        idx = torch.nonzero(ev.class_alphabet.cpu() == a).flatten().tolist()
        for g in range(min(cfg["max_groups"], len(idx) // ways)):
            targets.append({"kind": "evaluation", "alphabet": a, "chars": idx[g * ways:(g + 1) * ways]})
    return {"sources": sources, "labels": labels, "targets": targets}


def bank_images(bg: ClassSet, ev: ClassSet, roles: dict) -> tuple[torch.Tensor, dict]:
    """Every label and target character's 20 drawings in one tensor, and each group's rows in it."""
    imgs, rows = [], {"labels": [], "targets": []}
    n = 0
    for key in ("labels", "targets"):
        for grp in roles[key]:
            cs = ev if grp.get("kind") == "evaluation" else bg
            imgs.append(cs.images[torch.tensor(grp["chars"])])
            rows[key].append(torch.arange(n, n + len(grp["chars"])))
            n += len(grp["chars"])
    return torch.cat(imgs), rows


def drawing_splits(groups: int, ways: int, splits: int, generator: torch.Generator) -> torch.Tensor:
    """(groups, splits, ways, 20) random orders of each character's drawings: the first ``shots`` are support."""
    return torch.rand(groups, splits, ways, DRAWERS, generator=generator).argsort(-1)


# --------------------------------------------------------------------------- training
def train_networks(bg: ClassSet, roles: dict, cfg: dict, seed: int, device) -> tuple[list, dict]:
    """The source networks, the pooled one and an untrained one; their held-out-drawing accuracy."""
    nets, heldout = [], []
    for i, src in enumerate(roles["sources"]):
        net, acc = train_feature_net(bg, src["chars"], cfg["source_steps"], cfg["hidden"], cfg["batch"],
                                     seed=seed + 1 + i, device=device)
        nets.append(net.cpu())
        heldout.append(acc)
    all_src = [c for s in roles["sources"] for c in s["chars"]]
    pooled, pooled_acc = train_feature_net(bg, all_src, cfg["pooled_steps"], cfg["hidden"], cfg["batch"],
                                           seed=seed, device=device)
    untrained = seeded(seed + 999, lambda: Conv4(1, cfg["hidden"], pool="max").eval())
    return nets + [pooled.cpu(), untrained], {"source_heldout_accuracy": heldout,
                                              "pooled_heldout_accuracy": pooled_acc,
                                              "source_characters": [len(s["chars"]) for s in roles["sources"]]}


def task_of(images: torch.Tensor, rows: torch.Tensor, order: torch.Tensor, shots: int) -> Task:
    """A :class:`~mlcore.metric.task_similarity.Task` (support and queries) from bank rows and one drawing order."""
    x = images[rows[:, None], order]  # (N, 20, 1, H, W)
    y = torch.arange(len(rows))
    return Task(x[:, :shots].flatten(0, 1), y.repeat_interleave(shots), -1, rows.tolist(),
                x[:, shots:].flatten(0, 1), y.repeat_interleave(x.shape[1] - shots))


def choose_recipe(bank, images, nets, rows, orders, cfg, seed, device) -> dict:
    """Mean transfer accuracy of each recipe over (label task, source) pairs; the best one is used."""
    S, shots = len(nets) - 2, cfg["shots"]
    out = {}
    for metric in ("cosine", "euclidean"):
        acc = torch.stack([frozen_transfer_accuracy(bank[:S], r, o[0], shots, metric) for r, o in zip(rows, orders)])
        out[f"frozen features, nearest centroid ({metric})"] = float(acc.mean())
    picked = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[: cfg["ft_val_tasks"]]
    ft, fr = [], []
    for t in picked.tolist():
        task = task_of(images, rows[t], orders[t][0], shots)
        for j in range(S):
            state = {k: v for k, v in nets[j].state_dict().items()}
            ft.append(fine_tune_accuracy(task, state, cfg["ft_steps"], cfg["hidden"], seed + t, device=device))
        fr.append(frozen_transfer_accuracy(bank[:S], rows[t], orders[t][0], shots, "cosine").mean())
    out[f"fine-tune every weight, {cfg['ft_steps']} Adam steps"] = sum(ft) / len(ft)
    out["(frozen cosine on the same tasks as fine-tuning)"] = float(torch.stack(fr).mean())
    return out


def embeddings(bank, rows, orders, shots, pooled_index) -> torch.Tensor:
    """Each (group, split)'s task embedding: the mean pooled-encoder feature of its support set."""
    return torch.stack([torch.stack([bank[pooled_index, r[:, None], o[:, :shots]].mean((0, 1)) for o in ords])
                        for r, ords in zip(rows, orders)])  # (G, splits, d)


def source_embeddings(bg: ClassSet, roles: dict, pooled: Conv4) -> torch.Tensor:
    """Each source's mean pooled-encoder feature over its training drawings."""
    return torch.stack([feature_bank([pooled], bg.images[torch.tensor(s["chars"])][:, :15])[0].mean((0, 1))
                        for s in roles["sources"]])


def train_metrics(bank, rows, orders, e_label, e_src, label_alph, src_alph, cfg, seed) -> dict:
    """The article's f_theta trained twice, on measured gains and on "same alphabet", with validation alphabets."""
    S, shots = len(src_alph), cfg["shots"]
    acc = torch.stack([torch.stack([frozen_transfer_accuracy(bank[:S], r, o, shots) for o in ords])
                       for r, ords in zip(rows, orders)])  # (G, splits, S)
    P = acc.shape[1]
    flat_acc, flat_e = acc.flatten(0, 1), e_label.flatten(0, 1)
    alph = label_alph.repeat_interleave(P)
    held = torch.randperm(len(label_alph), generator=torch.Generator().manual_seed(seed + 7))
    held = label_alph[held[: cfg["metric_val_alphabets"]]]
    va = torch.isin(alph, held)
    same = (alph[:, None] == src_alph[None]).float()
    balance = torch.where(same.bool(), (1 - same).sum() / same.sum().clamp_min(1), torch.ones_like(same))
    # the control that ignores the new task: each source's mean transfer over every label task
    out = {"label_transfer_accuracy": acc.mean().item(), "validation_alphabets": held.tolist(),
           "label_source_mean": acc.mean((0, 1))}
    for name, y, w in [("gain", gain_labels(flat_acc), None), ("same", same, balance)]:
        metric, hist = train_task_metric(flat_e[~va], e_src, y[~va], cfg["metric_steps"], val=(flat_e[va], y[va]),
                                         weight=None if w is None else w[~va], seed=seed)
        out[name] = metric
        out[f"{name}_history"] = hist
        with torch.no_grad():
            f = metric(flat_e[va][:, None].expand(-1, S, -1), e_src[None].expand(int(va.sum()), -1, -1))
        out[f"{name}_validation_rank_correlation"] = float(rank_correlation(f, flat_acc[va]).mean())
    return out


# --------------------------------------------------------------------------- measuring
def retrieval_scores(bank, images, rows, orders, e_tgt, e_src, metrics, t2v_src, pooled, cfg, seed) -> dict:
    """Every retriever's score for every (target group, split, source): dict of (G, splits, S)."""
    S, shots = len(e_src), cfg["shots"]
    G, P = orders.shape[:2]
    scores = {}
    with torch.no_grad():
        for name, key in [(RETRIEVERS[0], "gain"), (RETRIEVERS[1], "same")]:
            e = e_tgt.flatten(0, 1)
            scores[name] = metrics[key](e[:, None].expand(-1, S, -1), e_src[None].expand(len(e), -1, -1)).view(G, P, S)
        scores[RETRIEVERS[3]] = torch.nn.functional.cosine_similarity(e_tgt[:, :, None], e_src[None, None], dim=-1)
        scores[RETRIEVERS[5]] = metrics["label_source_mean"].expand(G, P, S).clone()
    gen = torch.Generator().manual_seed(seed + 11)
    t2v = torch.zeros(G, P, S)
    loo = torch.zeros(G, P, S)
    for g in range(G):
        for p in range(P):
            task = task_of(images, rows[g], orders[g, p], shots)
            e = task2vec(pooled, task.support_x, task.support_y, cfg["t2v_head_steps"], gen)
            t2v[g, p] = task2vec_similarity(e[None], t2v_src)
            loo[g, p] = support_loo_score(bank[:S], rows[g], orders[g, p], shots)
    scores[RETRIEVERS[2]] = t2v
    scores[RETRIEVERS[4]] = loo
    return {k: scores[k] for k in RETRIEVERS}


def source_task2vec(bg: ClassSet, roles: dict, pooled, cfg: dict, seed: int) -> torch.Tensor:
    """Task2Vec of one task per source: its first ``ways`` characters, drawings 0..shots-1."""
    gen = torch.Generator().manual_seed(seed + 13)
    out = []
    for s in roles["sources"]:
        chars = torch.tensor(s["chars"][: cfg["ways"]])
        x = bg.images[chars][:, : cfg["shots"]].flatten(0, 1)
        y = torch.arange(len(chars)).repeat_interleave(cfg["shots"])
        out.append(task2vec(pooled, x, y, cfg["t2v_head_steps"], gen))
    return torch.stack(out)


def _ci(v: torch.Tensor) -> dict:
    m, c = mean_ci95(v.tolist())
    return {"accuracy": m, "ci95": c, "n": int(v.numel())}


def _paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).double()
    m, c = mean_ci95(d.tolist())
    wins, losses = int((d > 1e-9).sum()), int((d < -1e-9).sum())
    out = {"mean_difference": m, "ci95": c, "wins": wins, "ties": len(d) - wins - losses, "losses": losses,
           "sign_test_p": sign_test_p(wins, losses), "wilcoxon_p": None}
    if wins + losses:
        try:
            from scipy.stats import wilcoxon
            out["wilcoxon_p"] = float(wilcoxon(a.tolist(), b.tolist(), zero_method="wilcox").pvalue)
        except ImportError:  # the sign test needs no scipy
            pass
    return out


def _holm_correct(family: dict) -> None:
    """Add ``holm_p`` to each paired test of one family (Wilcoxon's p, or the sign test's without scipy)."""
    keys = list(family)
    pvals = [family[k]["wilcoxon_p"] if family[k]["wilcoxon_p"] is not None else family[k]["sign_test_p"]
             for k in keys]
    for k, hp in zip(keys, holm(pvals)):
        family[k]["holm_p"] = hp


def analyse(acc, pooled, untrained, scores, ensembles, tgt_kind, tgt_alph, src_alph, top_k: int = 3) -> dict:
    """Tables per target kind, retrieval quality, paired tests (Holm), from (G, splits, S) matrices."""
    G, P, S = acc.shape
    picks = {k: v.argmax(-1) for k, v in scores.items()}  # (G, P)
    got = {k: acc.gather(-1, p[..., None]).squeeze(-1) for k, p in picks.items()}
    third = acc.sort(-1, descending=True).values[..., min(top_k, S) - 1]
    same = (tgt_alph[:, None] == src_alph[None]) & (tgt_kind == 0)[:, None]  # (G, S); background targets only
    per_unit = {"no transfer (untrained network)": untrained.mean(1),
                "one network on every source's characters (pooled)": pooled.mean(1),
                "random source (expected)": acc.mean((1, 2)),
                "best source in hindsight (oracle, sees the queries)": acc.max(-1).values.mean(1)}
    has_same = same.any(1)
    same_acc = torch.where(has_same, (acc * same[:, None]).sum(-1).mean(1) / same.sum(1).clamp_min(1),
                           torch.full((G,), float("nan")))
    per_unit["same-alphabet source (label oracle)"] = same_acc
    for k in scores:
        per_unit[f"retrieved by {k}"] = got[k].mean(1)
    for k, v in ensembles.items():
        per_unit[k] = v.mean(1)
    tables, retrieval, tests = {}, {}, {}
    for kind_name, mask in [("all", torch.ones(G, dtype=torch.bool)), ("background", tgt_kind == 0),
                            ("evaluation", tgt_kind == 1)]:
        if not mask.any():
            continue
        tables[kind_name] = {k: _ci(v[mask]) for k, v in per_unit.items() if not torch.isnan(v[mask]).any()}
        rank_of = acc.argsort(-1, descending=True).argsort(-1)
        retrieval[kind_name] = {}
        for k, p in picks.items():
            r = rank_of.gather(-1, p[..., None]).squeeze(-1)[mask].float()
            row = {f"in_top{top_k}_most_helpful": float((got[k][mask] >= third[mask] - 1e-9).float().mean()),
                   "mean_rank_of_retrieved": float(r.mean()) + 1,
                   "rank_correlation_with_transfer": float(rank_correlation(scores[k][mask], acc[mask]).mean()),
                   "regret_vs_best": float((acc.max(-1).values - got[k])[mask].mean())}
            if kind_name == "background":
                row["same_alphabet_top1"] = float(same[:, None].expand(-1, P, -1).gather(-1, p[..., None])[mask]
                                                  .float().mean())
            retrieval[kind_name][k] = row
        retrieval[kind_name]["chance"] = {f"in_top{top_k}_most_helpful": float(
            (acc[mask] >= third[mask][..., None] - 1e-9).float().mean()), "mean_rank_of_retrieved": (S + 1) / 2}
        head = per_unit[f"retrieved by {HEADLINE}"][mask]
        fam = {f"{HEADLINE} - random source": _paired(head, per_unit["random source (expected)"][mask])}
        if kind_name == "background":
            fam[f"{HEADLINE} - same-alphabet source"] = _paired(head, same_acc[mask])
        for k in RETRIEVERS[1:]:
            fam[f"{HEADLINE} - {k}"] = _paired(head, per_unit[f"retrieved by {k}"][mask])
        fam[f"{HEADLINE} - pooled network"] = _paired(
            head, per_unit["one network on every source's characters (pooled)"][mask])
        _holm_correct(fam)
        tests[kind_name] = fam
    return {"transfer_tables": tables, "retrieval": retrieval, "paired_tests": tests}


def fine_tune_from_picks(images, rows, orders, nets, scores, kind, alph, src_alph, cfg, seed) -> dict:
    """Fine-tuning every weight (first drawing split), from the starts that matter, paired per target group.

    Fine-tuning all (target, source) pairs costs a hundred times the frozen-feature matrix, so it is
    measured from: random weights, the pooled network, one random source, the same-alphabet source
    (background targets), and the sources two retrievers pick.
    """
    S, shots, G = len(src_alph), cfg["shots"], len(rows)
    gen = torch.Generator().manual_seed(seed + 23)
    rand = torch.randint(S, (G,), generator=gen)
    starts = {"no transfer (random weights)": lambda g: None,
              "pooled network": lambda g: S,
              "random source (one per target)": lambda g: int(rand[g]),
              "same-alphabet source": lambda g: int((src_alph == alph[g]).nonzero()[0]) if kind[g] == 0 else -1,
              f"retrieved by {HEADLINE}": lambda g: int(scores[HEADLINE][g, 0].argmax()),
              f"retrieved by {RETRIEVERS[4]}": lambda g: int(scores[RETRIEVERS[4]][g, 0].argmax()),
              f"retrieved by {RETRIEVERS[5]}": lambda g: int(scores[RETRIEVERS[5]][g, 0].argmax())}
    acc = {k: torch.full((G,), float("nan")) for k in starts}
    for g in range(G):
        task = task_of(images, rows[g], orders[g, 0], shots)
        for k, start in starts.items():
            j = start(g)
            if j == -1:
                continue
            state = None if j is None else nets[j].state_dict()
            acc[k][g] = fine_tune_accuracy(task, state, cfg["ft_steps"], cfg["hidden"], seed + g)
    out = {"tables": {}, "paired_tests": {}}
    head = acc[f"retrieved by {HEADLINE}"]
    for kind_name, mask in [("all", torch.ones(G, dtype=torch.bool)), ("background", kind == 0),
                            ("evaluation", kind == 1)]:
        if not mask.any():
            continue
        out["tables"][kind_name] = {k: _ci(v[mask]) for k, v in acc.items() if not torch.isnan(v[mask]).any()}
        fam = {f"{HEADLINE} - {k.removeprefix('retrieved by ')}": _paired(head[mask], v[mask])
               for k, v in acc.items() if v is not head and not torch.isnan(v[mask]).any()}
        _holm_correct(fam)
        out["paired_tests"][kind_name] = fam
    out["per_target"] = {k: v.double().round(decimals=4).tolist() for k, v in acc.items()}
    return out


def retrieval_vs_sources(acc, scores, draws: int, seed: int, sizes=(2, 3, 5, 10, 15, 20, 30)) -> dict:
    """Mean transfer accuracy of each retriever's pick among random subsets of the sources, by subset size."""
    S = acc.shape[-1]
    g = torch.Generator().manual_seed(seed + 17)
    out = {"sizes": [], "random": [], "best in hindsight": [], **{k: [] for k in scores}}
    for n in [s for s in sizes if s <= S]:
        sums = dict.fromkeys(out, 0.0)
        for _ in range(draws):
            sub = torch.randperm(S, generator=g)[:n]
            a = acc[..., sub]
            sums["random"] += float(a.mean())
            sums["best in hindsight"] += float(a.max(-1).values.mean())
            for k, v in scores.items():
                sums[k] += float(a.gather(-1, v[..., sub].argmax(-1, keepdim=True)).mean())
        out["sizes"].append(n)
        for k, series in out.items():
            if k != "sizes":
                series.append(sums[k] / draws)
    return out


def measure(bg, ev, roles, nets, metrics, cfg, seed, bank=None) -> dict:
    """Transfer to every target (every source, pooled, untrained, retrieved, top-k) and its analysis."""
    images, rows = bank_images(bg, ev, roles)
    bank = feature_bank(nets, images) if bank is None else bank
    S, shots = len(roles["sources"]), cfg["shots"]
    pooled_i, untrained_i = S, S + 1
    tg = roles["targets"]
    orders = drawing_splits(len(tg), cfg["ways"], cfg["target_splits"], torch.Generator().manual_seed(seed + 2))
    G, P = orders.shape[:2]
    acc = torch.zeros(G, P, S)
    pooled, untrained = torch.zeros(G, P), torch.zeros(G, P)
    for gi in range(G):
        for p in range(P):
            a = frozen_transfer_accuracy(bank, rows["targets"][gi], orders[gi, p], shots)
            acc[gi, p], pooled[gi, p], untrained[gi, p] = a[:S], a[pooled_i], a[untrained_i]
    e_tgt = embeddings(bank, rows["targets"], orders, shots, pooled_i)
    e_src = source_embeddings(bg, roles, nets[pooled_i])
    t2v_src = source_task2vec(bg, roles, nets[pooled_i], cfg, seed)
    scores = retrieval_scores(bank, images, rows["targets"], orders, e_tgt, e_src, metrics, t2v_src,
                              nets[pooled_i], cfg, seed)
    ensembles = {}
    for k in (HEADLINE, RETRIEVERS[4]):
        for top in (3, 5):
            if top < S:
                ens = torch.zeros(G, P)
                for gi in range(G):
                    for p in range(P):
                        best = scores[k][gi, p].argsort(descending=True)[:top]
                        ens[gi, p] = ensemble_transfer_accuracy(bank, best, rows["targets"][gi], orders[gi, p], shots)
                ensembles[f"top-{top} ensemble by {k}"] = ens
    kind = torch.tensor([0 if t["kind"] == "background" else 1 for t in tg])
    alph = torch.tensor([t["alphabet"] for t in tg])
    src_alph = torch.tensor([s["alphabet"] for s in roles["sources"]])
    out = analyse(acc, pooled, untrained, scores, ensembles, kind, alph, src_alph)
    if cfg.get("ft_targets", True):
        out["fine_tuning"] = fine_tune_from_picks(images, rows["targets"], orders, nets, scores, kind, alph,
                                                  src_alph, cfg, seed)
    out["retrieval_vs_sources"] = retrieval_vs_sources(acc, scores, cfg["subset_draws"], seed)
    out["transfer_matrix"] = acc.double().round(decimals=4).tolist()
    out["scores_split0"] = {k: v[:, 0].double().round(decimals=4).tolist() for k, v in scores.items()}
    out["retrieved"] = {k: v.argmax(-1).tolist() for k, v in scores.items()}
    out["targets"] = [{"kind": t["kind"], "alphabet": t["alphabet"], "chars": t["chars"]} for t in tg]
    out["target_drawings_split0"] = orders[:, 0].tolist()
    return out


# --------------------------------------------------------------------------- the study
def run_analysis(budget: str | None = None, seed: int = 0, device=None, cfg_overrides: dict | None = None) -> dict:
    """Train every piece and measure; returns the metrics dict plus the trained models (key ``_models``)."""
    budget = current_budget(budget)
    cfg = {**config_for(budget), **(cfg_overrides or {})}
    device = get_device(device)
    t0 = time.perf_counter()
    bg, ev = load_split("background"), load_split("evaluation")
    roles = character_roles(bg, ev, cfg)
    timings = {}
    t = time.perf_counter()
    nets, source_info = train_networks(bg, roles, cfg, seed, device)
    timings["networks_s"] = time.perf_counter() - t
    t = time.perf_counter()
    images, rows = bank_images(bg, ev, roles)
    bank = feature_bank(nets, images)
    S = len(roles["sources"])
    lab_orders = drawing_splits(len(roles["labels"]), cfg["ways"], cfg["label_splits"],
                                torch.Generator().manual_seed(seed + 1))
    recipes = choose_recipe(bank, images, nets, rows["labels"], lab_orders, cfg, seed, device)
    timings["recipe_s"] = time.perf_counter() - t
    t = time.perf_counter()
    e_label = embeddings(bank, rows["labels"], lab_orders, cfg["shots"], S)
    e_src = source_embeddings(bg, roles, nets[S])
    metrics = train_metrics(bank, rows["labels"], lab_orders, e_label, e_src,
                            torch.tensor([lab["alphabet"] for lab in roles["labels"]]),
                            torch.tensor([s["alphabet"] for s in roles["sources"]]), cfg, seed)
    timings["metrics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out = measure(bg, ev, roles, nets, metrics, cfg, seed, bank)
    timings["transfer_s"] = time.perf_counter() - t
    real = {k: v for k, v in recipes.items() if not k.startswith("(")}
    out.update({"config": cfg, "timings": timings, "recipe_selection": recipes,
                "chosen_recipe": "fine-tune" if max(real, key=real.get).startswith("fine-tune") else "frozen",
                **source_info,
                "metric_training": {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in metrics.items()
                                    if k not in ("gain", "same")},
                "alphabets": bg.alphabets[: cfg["alphabets"]], "eval_alphabets": ev.alphabets[: cfg["eval_alphabets"]],
                "kinds": KINDS, "wall_s": time.perf_counter() - t0})
    out["_models"] = {"nets": nets, "gain": metrics["gain"], "same": metrics["same"], "roles": roles,
                      "label_source_mean": metrics["label_source_mean"],
                      "bg": bg, "ev": ev}
    return out


def headline(m: dict) -> dict:
    """Transfer from the source f_theta (trained on gains) retrieves, under the recipe validation chose."""
    if m.get("chosen_recipe") == "fine-tune" and "fine_tuning" in m:
        return m["fine_tuning"]["tables"]["all"][f"retrieved by {HEADLINE}"]
    return m["transfer_tables"]["all"][f"retrieved by {HEADLINE}"]


def reproduce(budget: str | None = None, seed: int = 0, out_dir=None, device=None,
              method: str = "task_similarity") -> list[Path]:
    """Run the study and write ``task_similarity_omniglot[_smoke].json`` and its networks.

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
    S = len(models["roles"]["sources"])
    atomic_torch_save({"sources": stack_states([n.state_dict() for n in models["nets"][:S]]),
                       "pooled": models["nets"][S].state_dict(), "gain": models["gain"].state_dict(),
                       "same": models["same"].state_dict(), "label_source_mean": models["label_source_mean"]}, ckpt)
    head = headline(m)
    rec = run_record(
        t0, name=name, method=method, dataset="omniglot", split="background+evaluation",
        ways=m["config"]["ways"], shots=m["config"]["shots"], accuracy=head["accuracy"], ci95=head["ci95"],
        episodes=head["n"], seed=seed, config={"analysis": m["config"]}, metrics=m,
        checkpoint=ckpt.name, budget=budget)
    return [save_record(rec, out_dir)]


def stack_states(states: list[dict]) -> dict:
    """Many networks' state dicts as one tensor per parameter name, floats in half precision.

    Thirty small source networks stored one by one spend a quarter of the file on per-tensor
    overhead; stacked, the checkpoint stays under 2 MB.
    """
    return {k: torch.stack([s[k] for s in states]).half() if states[0][k].is_floating_point()
            else torch.stack([s[k] for s in states]) for k in states[0]}


def unstack_states(stacked: dict) -> list[dict]:
    """The inverse of :func:`stack_states` (a list of per-network state dicts, as stored)."""
    n = len(next(iter(stacked.values())))
    return [{k: v[i] for k, v in stacked.items()} for i in range(n)]


def load_models(record) -> tuple[list, dict, dict]:
    """The record's networks (sources, pooled, the untrained one re-created from its seed) and metrics."""
    rec = load_record(record) if not hasattr(record, "config") else record
    cfg = dict(rec.config["analysis"])
    state = torch.load(checkpoint_path(rec), map_location="cpu", weights_only=True)
    nets = []
    for sd in unstack_states(state["sources"]) + [state["pooled"]]:
        net = Conv4(1, cfg["hidden"], pool="max")
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        nets.append(net.eval())
    nets.append(seeded(rec.seed + 999, lambda: Conv4(1, cfg["hidden"], pool="max").eval()))
    metrics = {}
    for key in ("gain", "same"):
        metric = LearnedTaskMetric(cfg["hidden"])
        metric.load_state_dict(state[key])
        metrics[key] = metric.eval()
    metrics["label_source_mean"] = state["label_source_mean"]
    return nets, metrics, cfg


def evaluate_record(record_path, episodes=None, seed: int = 123, device=None) -> dict:
    """Re-score a record's networks and metrics on fresh drawing splits of its target characters.

    ``episodes`` sets the number of drawing splits per target group (default: the record's).
    """
    rec = load_record(record_path)
    nets, metrics, cfg = load_models(rec)
    if episodes:
        cfg["target_splits"] = max(1, math.ceil(episodes / len(rec.metrics["targets"])))
    bg, ev = load_split("background"), load_split("evaluation")
    roles = character_roles(bg, ev, cfg)
    m = measure(bg, ev, roles, nets, metrics, cfg, seed)
    m["chosen_recipe"] = rec.metrics.get("chosen_recipe")
    r = headline(m)
    return {"record": rec.name, "accuracy": r["accuracy"], "ci95": r["ci95"], "episodes": r["n"],
            "seed": seed, "reference_accuracy": rec.accuracy, "reference_ci95": rec.ci95,
            "transfer_tables": m["transfer_tables"], "retrieval": m["retrieval"]}
