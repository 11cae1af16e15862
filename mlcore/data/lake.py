"""Lake et al.'s 400 official one-shot trials (20 runs x 20 trials), and more trials built their way.

The file is ``python/one-shot-classification/all_runs.zip`` of ``brendenlake/omniglot``
(commit ``057f034b...``, MIT). Run ``runNN`` holds 20 candidates
(``training/classMM.png``, one drawing each of 20 characters of one alphabet), 20 queries
(``test/itemKK.png``) and ``class_labels.txt``, one line per trial:
``runNN/test/itemKK.png runNN/training/classMM.png``. This is the benchmark on which
Koch et al. (2015) report 92.0 % for a convolutional Siamese net and humans score 95.5 %.

Search order for the zip: an explicit ``path``, then ``$MLCORE_DATA/omniglot/lake_runs/all_runs.zip``,
then ``~/.cache/mlcore/omniglot/lake_runs/all_runs.zip``, then a download from GitHub at the pinned
commit into that cache (sha256 checked before the file is moved into place).

How Lake built the runs (checked by :func:`match_to_omniglot` + :func:`describe_construction`, every
image matched bit for bit to ``omniglot.npz``): only 10 of the 20 evaluation alphabets appear
(:data:`LAKE_ALPHABETS`), two runs each; both runs of an alphabet use the same 20 characters; in a run
all candidates come from one drawer and all queries from another; the two runs of an alphabet use four
different drawers; only drawers 1-8 occur. :func:`lake_way_trials` builds more trials by these rules.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .omniglot import RAW_SIZE, data_root, download, load_raw, preprocess, sha256_of

LAKE_COMMIT = "057f034baf2ecb8530bc5710e5a23584d2a519cc"
LAKE_URL = (f"https://raw.githubusercontent.com/brendenlake/omniglot/{LAKE_COMMIT}/"
            "python/one-shot-classification/all_runs.zip")
LAKE_SHA256 = "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"
LAKE_RELPATH = Path("omniglot") / "lake_runs" / "all_runs.zip"
LAKE_ALPHABETS = ("Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
                  "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan")
LAKE_DRAWERS = tuple(range(1, 9))  # the only drawers in Lake's runs
WAYS = 20

_LABEL_LINE = re.compile(r"^(?P<query>\S+\.png)\s+(?P<cand>\S+\.png)$")
_RUN_LABELS = re.compile(r"(?:^|/)(?P<run>run\d+)/class_labels\.txt$")


# --------------------------------------------------------------------------- locating
def default_cache_path() -> Path:
    return Path.home() / ".cache" / "mlcore" / LAKE_RELPATH


def lake_runs_path(path: str | os.PathLike | None = None, download_missing: bool = True,
                   url: str = LAKE_URL, sha256: str = LAKE_SHA256, cache: str | os.PathLike | None = None) -> Path:
    """The zip of Lake's runs: ``path``, else ``$MLCORE_DATA/...``, else ``~/.cache/mlcore/...``, else downloaded.

    A download goes to ``cache`` (default ``~/.cache/mlcore/omniglot/lake_runs/all_runs.zip``): the bytes
    are written to a temporary file beside it and renamed into place only once their sha256 matches.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"no file at {p}: pass the path of Lake's all_runs.zip, or None for the default")
        return p
    cache_path = Path(cache).expanduser() if cache is not None else default_cache_path()
    candidates = []
    if os.environ.get("MLCORE_DATA"):
        candidates.append(data_root() / LAKE_RELPATH)
    candidates.append(cache_path)
    for c in candidates:
        if c.exists():
            return c
    looked = " or ".join(str(c) for c in candidates)
    if not download_missing:
        raise FileNotFoundError(f"Lake's one-shot runs not found at {looked}; place all_runs.zip there "
                                f"(sha256 {sha256}) or allow downloading from {url}")
    try:
        return download(url, cache_path, sha256)
    except OSError as e:  # urllib.error.URLError is an OSError: no network, 404, disk full ...
        raise FileNotFoundError(f"Lake's one-shot runs not found at {looked} and downloading {url} failed "
                                f"({type(e).__name__}: {e}); place a copy of all_runs.zip (sha256 {sha256}) "
                                f"at {cache_path}") from e


# --------------------------------------------------------------------------- reading
@dataclass
class LakeRun:
    """One official run: 20 trials sharing 20 candidates.

    ``candidates`` (20, 1, S, S) and ``queries`` (20, 1, S, S) are float, ink = 1;
    ``target[k]`` is the index into ``candidates`` of query ``k``'s true candidate.
    """

    name: str
    candidates: torch.Tensor
    queries: torch.Tensor
    target: torch.Tensor
    candidate_files: list[str]
    query_files: list[str]

    @property
    def trials(self) -> int:
        return len(self.target)


def _read_png_ink(data: bytes, where: str) -> np.ndarray:
    """A 1-bit PNG (white = paper) as a bool array with ink = True."""
    from PIL import Image

    paper = np.array(Image.open(io.BytesIO(data)).convert("1"), dtype=bool)
    if paper.ndim != 2:
        raise ValueError(f"{where}: expected a single-channel image, got shape {paper.shape}")
    return ~paper


def read_lake_zip(path: str | os.PathLike) -> list[dict]:
    """Parse the zip into raw runs: ``{"name", "candidates": (n,H,W) bool ink, "queries": (m,H,W) bool ink,
    "target": (m,) int, "candidate_files", "query_files"}``, runs sorted by name, files sorted by name."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a valid zip file ({e})") from e
    runs = []
    with zf:
        names = zf.namelist()
        label_files = sorted(n for n in names if _RUN_LABELS.search(n))
        if not label_files:
            raise ValueError(f"{path} holds no runNN/class_labels.txt; it is not Lake's all_runs.zip")
        for lf in label_files:
            run = _RUN_LABELS.search(lf)["run"]
            base = lf[: -len("class_labels.txt")]  # ".../runNN/"
            root = base[: -len(run) - 1]  # folder the label paths are relative to
            cands = sorted(n for n in names if n.startswith(base + "training/") and n.endswith(".png"))
            queries = sorted(n for n in names if n.startswith(base + "test/") and n.endswith(".png"))
            if not cands or not queries:
                raise ValueError(f"{path}: {run} lacks training/*.png or test/*.png")
            c_index = {n: i for i, n in enumerate(cands)}
            q_index = {n: i for i, n in enumerate(queries)}
            target = np.full(len(queries), -1, dtype=np.int64)
            for ln in zf.read(lf).decode().splitlines():
                ln = ln.strip()
                if not ln:
                    continue
                m = _LABEL_LINE.match(ln)
                if not m:
                    raise ValueError(f"{path}:{lf}: bad line {ln!r}; expected 'runNN/test/itemKK.png "
                                     "runNN/training/classMM.png'")
                q, c = root + m["query"], root + m["cand"]
                if q not in q_index or c not in c_index:
                    raise ValueError(f"{path}:{lf}: line {ln!r} names a file that is not in the zip")
                if target[q_index[q]] != -1:
                    raise ValueError(f"{path}:{lf}: query {m['query']} is labelled twice")
                target[q_index[q]] = c_index[c]
            if (target < 0).any():
                missing = [queries[i] for i in np.flatnonzero(target < 0)]
                raise ValueError(f"{path}:{lf}: no label for {missing[:3]}")
            runs.append({
                "name": run,
                "candidates": np.stack([_read_png_ink(zf.read(n), f"{path}:{n}") for n in cands]),
                "queries": np.stack([_read_png_ink(zf.read(n), f"{path}:{n}") for n in queries]),
                "target": target,
                "candidate_files": [n[len(root):] for n in cands],
                "query_files": [n[len(root):] for n in queries],
            })
    return runs


def load_lake_runs(path: str | os.PathLike | None = None, size: int | None = None, download_missing: bool = True,
                   sha256: str | None = LAKE_SHA256) -> list[LakeRun]:
    """Lake's official runs as tensors ready for ``learner.predict(run.candidates, arange(20), run.queries)``.

    ``size`` resizes with :func:`mlcore.data.preprocess` (None keeps 105 x 105). The zip's sha256 is
    checked first (pass ``sha256=None`` for a zip of your own in the same format).
    """
    p = lake_runs_path(path, download_missing=download_missing)
    if sha256 is not None:
        got = sha256_of(p)
        if got != sha256:
            raise ValueError(f"checksum mismatch for {p}: expected sha256 {sha256}, got {got}; it is not the "
                             f"official all_runs.zip of brendenlake/omniglot@{LAKE_COMMIT[:7]} (delete it and retry)")
    out = []
    for r in read_lake_zip(p):
        s = size or r["candidates"].shape[-1]
        out.append(LakeRun(r["name"], preprocess(r["candidates"], s), preprocess(r["queries"], s),
                           torch.as_tensor(r["target"]), r["candidate_files"], r["query_files"]))
    return out


# --------------------------------------------------------------------------- provenance
def match_to_omniglot(runs: list[dict] | None = None, raw=None) -> list[dict]:
    """Find every image of the runs in ``omniglot.npz`` (exact bit equality at 105 x 105).

    ``runs`` are :func:`read_lake_zip` results (default: the official zip). Returns per run
    ``{"name", "candidates": [...], "queries": [...], "target"}`` where each image is
    ``{"row", "alphabet", "character", "drawer", "background"}`` or None if no row matches.
    """
    runs = read_lake_zip(lake_runs_path()) if runs is None else runs
    raw = load_raw() if raw is None else raw
    index: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(raw.images_packed):
        index[row.tobytes()].append(i)

    def find(img: np.ndarray) -> dict | None:
        if img.shape != (RAW_SIZE, RAW_SIZE):
            return None
        rows = index.get(np.packbits(img.reshape(-1)).tobytes())
        if not rows:
            return None
        r = rows[0]
        return {"row": int(r), "alphabet": str(raw.alphabet[r]), "character": str(raw.character[r]),
                "drawer": int(raw.drawer[r]), "background": bool(raw.background[r]), "matches": len(rows)}

    return [{"name": r["name"], "candidates": [find(x) for x in r["candidates"]],
             "queries": [find(x) for x in r["queries"]], "target": [int(t) for t in r["target"]]} for r in runs]


def describe_construction(matched: list[dict]) -> dict:
    """Summarise how the runs were built, from :func:`match_to_omniglot` output."""
    images = [m for r in matched for m in r["candidates"] + r["queries"]]
    found = [m for m in images if m is not None]
    per_run = []
    for r in matched:
        c, q = r["candidates"], r["queries"]
        ok = all(m is not None for m in c + q)
        per_run.append({
            "name": r["name"],
            "alphabets": sorted({m["alphabet"] for m in c + q if m}),
            "candidate_drawers": sorted({m["drawer"] for m in c if m}),
            "query_drawers": sorted({m["drawer"] for m in q if m}),
            "characters": sorted({m["character"] for m in c if m}),
            "labels_match_characters": ok and all(
                (q[k]["alphabet"], q[k]["character"]) == (c[t]["alphabet"], c[t]["character"])
                for k, t in enumerate(r["target"])),
        })
    by_alphabet: dict[str, list[dict]] = defaultdict(list)
    for p in per_run:
        if len(p["alphabets"]) == 1:
            by_alphabet[p["alphabets"][0]].append(p)
    return {
        "images": len(images),
        "matched": len(found),
        "ambiguous": sum(m["matches"] > 1 for m in found),
        "from_background": sum(m["background"] for m in found),
        "alphabets": dict(sorted(Counter(p["alphabets"][0] for p in per_run if len(p["alphabets"]) == 1).items())),
        "one_alphabet_per_run": all(len(p["alphabets"]) == 1 for p in per_run),
        "distinct_characters_per_run": sorted({len(p["characters"]) for p in per_run}),
        "one_candidate_drawer_per_run": all(len(p["candidate_drawers"]) == 1 for p in per_run),
        "one_query_drawer_per_run": all(len(p["query_drawers"]) == 1 for p in per_run),
        "candidate_and_query_drawers_differ": all(set(p["candidate_drawers"]).isdisjoint(p["query_drawers"])
                                                  for p in per_run),
        "drawers_used": sorted({m["drawer"] for m in found}),
        "same_characters_within_alphabet": all(len({tuple(p["characters"]) for p in ps}) == 1
                                               for ps in by_alphabet.values()),
        "distinct_drawers_within_alphabet": all(
            len({d for p in ps for d in p["candidate_drawers"] + p["query_drawers"]}) == 2 * len(ps)
            for ps in by_alphabet.values()),
        "labels_match_characters": all(p["labels_match_characters"] for p in per_run),
        "runs": [{k: p[k] for k in ("name", "alphabets", "candidate_drawers", "query_drawers")} for p in per_run],
    }


# --------------------------------------------------------------------------- more trials, Lake's way
@dataclass
class Trials:
    """Runs of 20-way one-shot trials as ``omniglot.npz`` row indices.

    ``candidates[r, i]`` is the row of candidate ``i`` of run ``r``; ``queries[r, k]`` the row of query ``k``,
    whose true candidate is ``target[r, k]``. ``alphabet[r]`` names the run's alphabet.
    """

    candidates: np.ndarray
    queries: np.ndarray
    target: np.ndarray
    alphabet: list[str]
    rule: str

    @property
    def runs(self) -> int:
        return len(self.alphabet)


def _alphabet_chars(raw, alphabet: str) -> list[str]:
    sel = (raw.alphabet == alphabet) & ~raw.background
    chars = sorted(set(raw.character[sel].tolist()))
    if not chars:
        raise ValueError(f"{alphabet!r} is not an evaluation alphabet of {raw.path}")
    return chars


def _row_table(raw) -> dict[tuple[str, str, int], int]:
    ev = np.flatnonzero(~raw.background)
    return {(str(raw.alphabet[i]), str(raw.character[i]), int(raw.drawer[i])): int(i) for i in ev}


RULES = {
    "lake": "candidates all by one drawer, queries all by another; an alphabet's two runs per character draw "
            "use four different drawers; drawers 1-8 (Lake's construction)",
    "lake_any_drawer": "as 'lake' but the drawers come from all 20",
    "random": "each character its own random pair of distinct drawers out of 20 (the book's episodes)",
    "random_1to8": "each character its own random pair of distinct drawers out of 1-8",
}


def lake_way_trials(alphabets=None, runs_per_alphabet: int = 20, seed: int = 0, rule: str = "lake",
                    raw=None) -> Trials:
    """20-way one-shot runs built from the evaluation alphabets the way Lake built his.

    Per alphabet, every pair of runs shares one draw of 20 characters (without replacement); ``rule``
    (see :data:`RULES`) picks the drawers. The character draws and query orders depend only on
    ``seed``, alphabet and run, not on ``rule``, so runs with the same seed are paired across rules.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {sorted(RULES)}")
    if runs_per_alphabet < 1:
        raise ValueError(f"runs_per_alphabet must be >= 1, got {runs_per_alphabet}")
    raw = load_raw() if raw is None else raw
    alphabets = list(alphabets) if alphabets is not None else sorted(set(raw.alphabet[~raw.background].tolist()))
    table = _row_table(raw)
    cands, queries, targets, names = [], [], [], []
    for a_i, alphabet in enumerate(alphabets):
        chars = _alphabet_chars(raw, alphabet)
        if len(chars) < WAYS:
            raise ValueError(f"{alphabet} has {len(chars)} characters, fewer than {WAYS}")
        # the character draws and query orders: one stream per (seed, alphabet), shared by all rules
        g_chars = np.random.default_rng([seed, a_i, 0])
        g_draw = np.random.default_rng([seed, a_i, 1 + sorted(RULES).index(rule)])
        for block in range(0, runs_per_alphabet, 2):
            pick = g_chars.choice(len(chars), WAYS, replace=False)
            pool = LAKE_DRAWERS if rule in ("lake", "random_1to8") else tuple(range(1, 21))
            four = g_draw.choice(pool, 4, replace=False) if rule.startswith("lake") else None
            for j in range(min(2, runs_per_alphabet - block)):
                order = g_chars.permutation(WAYS)
                if four is not None:
                    cd = np.full(WAYS, four[2 * j])
                    qd = np.full(WAYS, four[2 * j + 1])
                else:
                    pairs = np.stack([g_draw.choice(pool, 2, replace=False) for _ in range(WAYS)])
                    cd, qd = pairs[:, 0], pairs[:, 1]
                c_rows = [table[(alphabet, chars[pick[i]], int(cd[i]))] for i in range(WAYS)]
                q_rows = [table[(alphabet, chars[pick[i]], int(qd[i]))] for i in order]
                cands.append(c_rows)
                queries.append(q_rows)
                targets.append(order)
                names.append(alphabet)
    return Trials(np.array(cands), np.array(queries), np.array(targets), names, rule)
