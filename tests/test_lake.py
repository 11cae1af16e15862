"""Lake et al.'s official one-shot trials: parsing, checksums, provenance, Lake-way trials, a pixel baseline."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.data import lake
from mlcore.data.omniglot import data_root

REAL_ZIP = data_root() / lake.LAKE_RELPATH
needs_real_zip = pytest.mark.skipif(not REAL_ZIP.exists(), reason=f"no official all_runs.zip at {REAL_ZIP}")


def _png(ink: np.ndarray) -> bytes:
    """A 1-bit PNG in Lake's convention: white (True) = paper."""
    buf = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _glyph(k: int) -> np.ndarray:
    ink = np.zeros((105, 105), dtype=bool)
    ink[10 + 20 * k: 20 + 20 * k, 30:70] = True  # a bar whose height says which character it is
    return ink


def _small_zip(path, labels=(2, 0, 1), newline="\n"):
    """run01 with 3 candidates and 3 queries; query k shows the glyph of candidate labels[k]."""
    with zipfile.ZipFile(path, "w") as z:
        for k in range(3):
            z.writestr(f"run01/training/class{k + 1:02d}.png", _png(_glyph(k)))
            z.writestr(f"run01/test/item{k + 1:02d}.png", _png(_glyph(labels[k])))
        z.writestr("run01/class_labels.txt", newline.join(
            f"run01/test/item{k + 1:02d}.png run01/training/class{labels[k] + 1:02d}.png" for k in range(3)) + newline)
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_loader_parses_a_small_zip_labels_and_inversion(tmp_path, newline):
    z = _small_zip(tmp_path / "runs.zip", newline=newline)
    runs = lake.load_lake_runs(z, sha256=None)
    assert len(runs) == 1
    r = runs[0]
    assert r.name == "run01" and r.candidates.shape == (3, 1, 105, 105) and r.queries.shape == (3, 1, 105, 105)
    assert r.candidates.dtype == torch.float32
    assert r.target.tolist() == [2, 0, 1]
    assert r.candidate_files[0] == "run01/training/class01.png" and r.query_files[2] == "run01/test/item03.png"
    # ink = 1 where the glyph is drawn, paper = 0 elsewhere
    assert torch.equal(r.candidates[1, 0], torch.from_numpy(_glyph(1)).float())
    for k in range(3):
        assert torch.equal(r.queries[k], r.candidates[r.target[k]])
    small = lake.load_lake_runs(z, size=28, sha256=None)[0]
    assert small.candidates.shape == (3, 1, 28, 28) and 0 < float(small.candidates.mean()) < 0.2


def test_bad_label_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("run01/training/class01.png", _png(_glyph(0)))
        z.writestr("run01/test/item01.png", _png(_glyph(0)))
        z.writestr("run01/class_labels.txt", "run01/test/item01.png run01/training/class07.png\n")
    with pytest.raises(ValueError, match="not in the zip"):
        lake.read_lake_zip(p)


def test_checksum_mismatch_raises(tmp_path):
    z = _small_zip(tmp_path / "runs.zip")
    with pytest.raises(ValueError, match="checksum mismatch"):
        lake.load_lake_runs(z)  # default: the official sha256


def test_download_checks_the_checksum_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLCORE_DATA", raising=False)
    src = _small_zip(tmp_path / "src.zip")
    cache = tmp_path / "cache" / "all_runs.zip"
    with pytest.raises(ValueError, match="checksum mismatch"):
        lake.lake_runs_path(url=src.as_uri(), sha256="0" * 64, cache=cache)
    assert not cache.exists() and not any(cache.parent.glob("*"))
    # the right checksum: downloaded once into the cache, then found there
    good = lake.sha256_of(src)
    assert lake.lake_runs_path(url=src.as_uri(), sha256=good, cache=cache) == cache and cache.exists()
    assert lake.lake_runs_path(url="file:///nonexistent", sha256=good, cache=cache) == cache


def test_absent_zip_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLCORE_DATA", raising=False)
    cache = tmp_path / "none" / "all_runs.zip"
    with pytest.raises(FileNotFoundError, match="not found") as e:
        lake.lake_runs_path(download_missing=False, cache=cache)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="downloading .* failed") as e:
        lake.lake_runs_path(url=(tmp_path / "missing.zip").as_uri(), cache=cache)
    assert "\n" not in str(e.value) and not cache.exists()


@needs_real_zip
def test_real_zip_has_400_trials_with_valid_targets():
    runs = lake.load_lake_runs(REAL_ZIP)
    assert len(runs) == 20
    for r in runs:
        assert r.candidates.shape == (20, 1, 105, 105) and r.queries.shape == (20, 1, 105, 105)
        assert r.trials == 20
        assert sorted(r.target.tolist()) == list(range(20))  # every candidate is the answer of one query
        assert 0.01 < float(r.candidates.mean()) < 0.2  # inverted: ink is the minority
    assert sum(r.trials for r in runs) == 400


@needs_real_zip
def test_real_runs_match_omniglot_and_follow_lakes_construction():
    facts = lake.describe_construction(lake.match_to_omniglot(lake.read_lake_zip(REAL_ZIP)))
    assert facts["images"] == facts["matched"] == 800 and facts["ambiguous"] == 0
    assert facts["from_background"] == 0
    assert facts["alphabets"] == {a: 2 for a in lake.LAKE_ALPHABETS}
    assert facts["one_alphabet_per_run"] and facts["distinct_characters_per_run"] == [20]
    assert facts["one_candidate_drawer_per_run"] and facts["one_query_drawer_per_run"]
    assert facts["candidate_and_query_drawers_differ"]
    assert facts["drawers_used"] == list(lake.LAKE_DRAWERS)
    assert facts["same_characters_within_alphabet"] and facts["distinct_drawers_within_alphabet"]
    assert facts["labels_match_characters"]


def test_lake_way_trials_obey_the_rules():
    from mlcore.data.omniglot import load_raw

    raw = load_raw()
    tr = lake.lake_way_trials(["Angelic", "Tibetan", "ULOG"], runs_per_alphabet=4, seed=3, raw=raw)
    assert tr.candidates.shape == (12, 20) and tr.queries.shape == (12, 20) and tr.runs == 12
    for r in range(tr.runs):
        rows = np.concatenate([tr.candidates[r], tr.queries[r]])
        assert set(raw.alphabet[rows]) == {tr.alphabet[r]} and not raw.background[rows].any()
        chars = raw.character[tr.candidates[r]]
        assert len(set(chars)) == 20
        cd, qd = set(raw.drawer[tr.candidates[r]]), set(raw.drawer[tr.queries[r]])
        assert len(cd) == 1 and len(qd) == 1 and cd != qd and (cd | qd) <= set(lake.LAKE_DRAWERS)
        assert (raw.character[tr.queries[r]] == chars[tr.target[r]]).all()
    for r in range(0, tr.runs, 2):  # runs come in pairs: same characters, four different drawers
        assert set(raw.character[tr.candidates[r]]) == set(raw.character[tr.candidates[r + 1]])
        assert len(set(raw.drawer[np.concatenate([tr.candidates[r:r + 2, 0], tr.queries[r:r + 2, 0]])])) == 4
    again = lake.lake_way_trials(["Angelic", "Tibetan", "ULOG"], runs_per_alphabet=4, seed=3, raw=raw)
    assert np.array_equal(again.candidates, tr.candidates)
    rnd = lake.lake_way_trials(["Angelic", "Tibetan", "ULOG"], runs_per_alphabet=4, seed=3, rule="random", raw=raw)
    assert np.array_equal(raw.character[rnd.candidates], raw.character[tr.candidates])  # paired across rules
    assert np.array_equal(rnd.target, tr.target)
    assert (raw.drawer[rnd.candidates] != raw.drawer[rnd.queries][np.arange(12)[:, None], np.argsort(rnd.target)]).all()
    assert len(set(raw.drawer[rnd.candidates].ravel())) > 8
    with pytest.raises(ValueError, match="unknown rule"):
        lake.lake_way_trials(["Angelic"], rule="nope", raw=raw)


class PixelNN(torch.nn.Module):
    """1-nearest neighbour on raw pixels (Euclidean): Lake et al. report 21.7 % on their trials."""

    def predict(self, support_x, support_y, query_x):
        d = torch.cdist(query_x.flatten(1), support_x.flatten(1))
        return -d[:, torch.argsort(support_y)]


@needs_real_zip
def test_pixel_nearest_neighbour_on_the_official_trials_is_sane():
    learner = PixelNN()
    correct = 0
    for r in lake.load_lake_runs(REAL_ZIP):
        logits = learner.predict(r.candidates, torch.arange(20), r.queries)
        correct += int((logits.argmax(-1) == r.target).sum())
    acc = correct / 400
    print(f"pixel 1-NN on Lake's 400 official trials: {acc:.4f} ({correct}/400; Lake et al. report 0.217)")
    assert 0.10 < acc < 0.35  # chance is 0.05, a learned metric is far above


def test_study_helpers():
    from mlcore.experiments import lake_trials as lt
    from mlcore.results import Record

    lt.check_background_only(Record("x", "siamese", "omniglot", config={"recipe": {"train_split": "background"}}))
    with pytest.raises(ValueError, match="not on 'background'"):
        lt.check_background_only(Record("x", "siamese", "omniglot",
                                        config={"recipe": {"train_split": "vinyals/trainval"}}))

    sized = PixelNN()
    sized.config = {"image_size": 56}
    assert lt.input_size(sized) == 56
    assert lt.input_size(PixelNN(), Record("x", "m", "d", config={"model": {"image_size": 40}})) == 40
    s = lt.summary([1, 0, 1, 1], run_of=[0, 0, 1, 1])
    assert s["accuracy"] == 0.75 and s["trials"] == 4 and s["runs"] == 2
