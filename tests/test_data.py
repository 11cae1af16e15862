"""Real Omniglot: cache format, splits, preprocessing, and the download-and-convert path."""
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcore.data import omniglot as og


def test_shared_cache_has_the_whole_dataset():
    raw = og.load_raw()
    assert raw.images_packed.shape == (32460, 1379)
    assert raw.background.sum() == 19280
    assert len(np.unique(raw.class_names)) == 1623
    ink = raw.unpack(np.arange(40))
    assert ink.shape == (40, 105, 105) and ink.dtype == bool
    assert 0.01 < ink.mean() < 0.2  # ~8 % ink


def test_shipped_split_spec_matches_the_reference_files():
    shared = og.omniglot_dir() / "splits" / "vinyals"
    lines = og.vinyals_split_lines()
    for name in og.VINYALS_SPLITS:
        assert lines[name] == (shared / f"{name}.txt").read_text().split(), name


@pytest.mark.parametrize("name,classes,chars", [("vinyals/trainval", 4800, 1200), ("vinyals/test", 1692, 423),
                                                ("vinyals/train", 4112, 1028), ("background", 964, 964),
                                                ("evaluation", 659, 659)])
def test_split_sizes(name, classes, chars):
    cs = og.load_split(name)
    assert cs.num_classes == classes
    assert cs.images.shape == (chars, 20, 1, 28, 28)
    assert cs.images.dtype == torch.float32 and 0 <= float(cs.images.min()) and float(cs.images.max()) <= 1


def test_train_and_test_characters_are_disjoint():
    tv = {n.rsplit("/", 1)[0] for n in og.load_split("vinyals/trainval").class_names}
    te = {n.rsplit("/", 1)[0] for n in og.load_split("vinyals/test").class_names}
    assert not tv & te
    assert len(tv | te) == 1623


def test_rotation_classes_are_rotated_images():
    cs = og.load_split("vinyals/test")
    c = next(i for i in range(cs.num_classes) if int(cs.class_rot[i]) == 1)
    base = cs.images[int(cs.class_char[c])]
    assert torch.equal(cs.class_images(c), torch.rot90(base, 1, dims=(-2, -1)))
    assert cs.class_names[c].endswith("rot090")


def test_preprocess_matches_loader_and_checks_input():
    raw = og.load_raw()
    cs = og.load_split("background")
    first = og.preprocess(raw.unpack(np.arange(20)))
    assert first.shape == (20, 1, 28, 28)
    assert torch.allclose(first, cs.images[0])
    assert og.preprocess(raw.unpack(np.arange(1))[0]).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="expects"):
        og.preprocess(np.zeros((2, 3, 105, 105)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        og.preprocess(np.full((2, 105, 105), 7.0, dtype=np.float32))


def test_unknown_split_and_missing_split_file(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        og.load_split("vinyals/nope")
    # a root with the npz but without split files -> clear FileNotFoundError naming the fix
    d = tmp_path / "omniglot"
    d.mkdir()
    (d / "omniglot.npz").symlink_to(og.load_raw().path)
    with pytest.raises(FileNotFoundError, match="write_vinyals_splits"):
        og.load_split("vinyals/test", root=tmp_path)


def _tiny_zip(path: Path, background: bool) -> None:
    top = "images_background" if background else "images_evaluation"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for a in ("Alpha", "Beta"):
            for c in (1, 2):
                for d in (1, 2, 3):
                    paper = rng.random((105, 105)) > 0.1  # white paper, ~10 % ink
                    buf = io.BytesIO()
                    Image.fromarray(paper).convert("1").save(buf, format="PNG")
                    zf.writestr(f"{top}/{a}/character{c:02d}/{(c + 10 * (a == 'Beta')):04d}_{d:02d}.png",
                                buf.getvalue())


def test_download_verify_and_convert(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bg, ev = src / "images_background.zip", src / "images_evaluation.zip"
    _tiny_zip(bg, True)
    _tiny_zip(ev, False)
    sources = {p.name: (p.as_uri(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in (bg, ev)}
    root = tmp_path / "cache"
    npz = og.ensure_omniglot(root, sources=sources)
    assert npz == root / "omniglot" / "omniglot.npz"
    with np.load(npz, allow_pickle=False) as d:
        assert d["images_packed"].shape == (24, 1379)
        assert d["background"].tolist() == [True] * 12 + [False] * 12
        assert list(d["alphabet"][:6]) == ["Alpha"] * 6 and list(d["drawer"][:3]) == [1, 2, 3]
        ink = np.unpackbits(d["images_packed"], axis=1, count=105 * 105).reshape(-1, 105, 105).astype(bool)
    with zipfile.ZipFile(bg) as zf:
        png = np.array(Image.open(io.BytesIO(zf.read("images_background/Alpha/character01/0001_01.png"))))
    assert np.array_equal(ink[0], ~png)  # ink = 1 convention
    assert (root / "omniglot" / "splits" / "vinyals" / "test.txt").exists()
    assert not list((root / "omniglot").glob("*.tmp"))


def test_bad_checksum_leaves_nothing_behind(tmp_path):
    src = tmp_path / "images_background.zip"
    _tiny_zip(src, True)
    with pytest.raises(ValueError, match="checksum mismatch"):
        og.ensure_omniglot(tmp_path / "cache", sources={src.name: (src.as_uri(), "0" * 64)})
    left = list((tmp_path / "cache").rglob("*"))
    assert not [p for p in left if p.is_file()], left


def test_unreachable_download_gives_one_clear_line_and_leaves_nothing(tmp_path):
    missing = (tmp_path / "nowhere" / "images_background.zip").as_uri()  # file:// URL that cannot be opened
    with pytest.raises(ConnectionError, match=r"could not download .*MLCORE_DATA"):
        og.ensure_omniglot(tmp_path / "cache", sources={"images_background.zip": (missing, "0" * 64)})
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_corrupt_cache_gives_clear_error(tmp_path):
    d = tmp_path / "omniglot"
    d.mkdir()
    (d / "omniglot.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupt"):
        og.load_raw(tmp_path)


def test_missing_cache_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="MLCORE_DATA"):
        og.load_raw(tmp_path / "empty", download_missing=False)
