"""Real Omniglot: locate or download it, cache it, and turn it into tensors.

Search order for the data root: an explicit ``root`` argument, then the
``MLCORE_DATA`` environment variable, then ``~/.cache/mlcore``. Inside the root the
layout is ``omniglot/omniglot.npz`` (the bit-packed cache format described in the
shared data README) and ``omniglot/splits/vinyals/{train,val,trainval,test}.txt``.

If the cache is absent, :func:`ensure_omniglot` downloads the two official zips of
``brendenlake/omniglot``, checks their sha256, converts them to the npz format with an
atomic write (a temporary file renamed into place, so a crash never leaves a
half-written cache) and writes the Vinyals split files from the copy shipped inside
:mod:`mlcore`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RAW_SIZE = 105
IMAGE_SIZE = 28
DRAWERS = 20

# sha256 of the official zips (as recorded by tensorflow_datasets' url_checksums/omniglot.txt).
OFFICIAL_ZIPS = {
    "images_background.zip": (
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
        "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    ),
    "images_evaluation.zip": (
        "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
        "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
    ),
}
VINYALS_SPLITS = ("train", "val", "trainval", "test")
SPLITS = tuple(f"vinyals/{s}" for s in VINYALS_SPLITS) + ("background", "evaluation")
_NPZ_KEYS = ("images_packed", "alphabet", "character", "drawer", "background", "char_id")
_PNG_NAME = re.compile(r"(?P<char_id>\d{4})_(?P<drawer>\d{2})\.png$")


# --------------------------------------------------------------------------- locating
def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$MLCORE_DATA``, else ``~/.cache/mlcore``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MLCORE_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mlcore"


def omniglot_dir(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "omniglot"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from ..results import atomic_write  # the one atomic writer (temp file, fsync, rename)

    atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------- download + convert
def download(url: str, dest: Path, sha256: str) -> Path:
    """Download ``url`` to ``dest`` (atomically) and check its sha256; reuse a verified file."""
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                from tqdm.auto import tqdm

                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for block in iter(lambda: resp.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
        except urllib.error.URLError as e:
            # offline, or the host is down: say what to do instead of a socket traceback
            raise ConnectionError(
                f"could not download {url} ({e.reason}); connect to the internet, or place a verified copy at "
                f"{dest} (or point MLCORE_DATA at a folder that holds omniglot/)") from None
        got = sha256_of(tmp)
        if got != sha256:
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}. The download is corrupt or "
                "the file changed upstream; delete it and retry, or place a verified copy at " + str(dest)
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def convert_zips(zips: Sequence[tuple[str | os.PathLike, bool]], out_npz: str | os.PathLike) -> Path:
    """Convert official-layout zips to the bit-packed npz cache.

    ``zips`` is a sequence of ``(zip_path, is_background)``. Each zip holds
    ``images_*/<alphabet>/<character>/<char_id>_<drawer>.png`` (1-bit PNGs, white paper).
    The output has ink = 1 and rows sorted background first, then alphabet, character, drawer.
    """
    from PIL import Image

    rows = []
    for zpath, is_background in zips:
        try:
            zf = zipfile.ZipFile(zpath)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{zpath} is not a valid zip file ({e}); delete it so it is downloaded again") from e
        with zf:
            for name in zf.namelist():
                parts = name.strip("/").split("/")
                m = _PNG_NAME.search(parts[-1])
                if not m or len(parts) < 3:
                    continue
                alphabet, character = parts[-3], parts[-2]
                with zf.open(name) as fh:
                    img = Image.open(io.BytesIO(fh.read())).convert("1")
                paper = np.array(img, dtype=bool)
                if paper.shape != (RAW_SIZE, RAW_SIZE):
                    raise ValueError(f"{zpath}:{name} has shape {paper.shape}, expected {(RAW_SIZE, RAW_SIZE)}")
                rows.append((not is_background, alphabet, character, int(m["drawer"]), int(m["char_id"]),
                             np.packbits((~paper).reshape(-1))))
    if not rows:
        raise ValueError(f"no Omniglot PNGs found in {[str(z) for z, _ in zips]}")
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3]))
    arrays = {
        "images_packed": np.stack([r[5] for r in rows]).astype(np.uint8),
        "alphabet": np.array([r[1] for r in rows]),
        "character": np.array([r[2] for r in rows]),
        "drawer": np.array([r[3] for r in rows], dtype=np.int16),
        "background": np.array([not r[0] for r in rows], dtype=bool),
        "char_id": np.array([r[4] for r in rows], dtype=np.int16),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    out = Path(out_npz)
    _atomic_write_bytes(out, buf.getvalue())
    return out


def write_vinyals_splits(dest_dir: str | os.PathLike) -> None:
    """Write the Vinyals split files from the compact copy shipped in :mod:`mlcore`."""
    for name, lines in vinyals_split_lines().items():
        _atomic_write_bytes(Path(dest_dir) / f"{name}.txt", ("\n".join(lines) + "\n").encode())


@lru_cache(maxsize=1)
def vinyals_split_lines() -> dict[str, list[str]]:
    spec = json.loads((Path(__file__).with_name("vinyals_splits.json")).read_text())["splits"]
    out: dict[str, list[str]] = {}
    for name in ("train", "val", "test"):
        lines = []
        for alphabet, ranges in spec[name].items():
            for lo, hi in ranges:
                for c in range(lo, hi + 1):
                    lines += [f"{alphabet}/character{c:02d}/rot{r:03d}" for r in (0, 90, 180, 270)]
        out[name] = lines
    out["trainval"] = out["train"] + out["val"]
    return out


def ensure_omniglot(root: str | os.PathLike | None = None, download_missing: bool = True,
                    sources: dict | None = None) -> Path:
    """Return the path of ``omniglot.npz``, downloading and converting it if it is absent.

    ``sources`` maps zip name → (url, sha256) and defaults to the official zips; tests pass
    a local ``file://`` zip here.
    """
    odir = omniglot_dir(root)
    npz = odir / "omniglot.npz"
    if npz.exists():
        return npz
    if not download_missing:
        raise FileNotFoundError(
            f"Omniglot cache not found at {npz}. Set MLCORE_DATA to a folder holding omniglot/omniglot.npz, "
            "or call mlcore.data.omniglot.ensure_omniglot() to download the official zips."
        )
    sources = sources or OFFICIAL_ZIPS
    raw = odir / "raw"
    zips = []
    for name, (url, sha) in sources.items():
        zips.append((download(url, raw / name, sha), "background" in name))
    convert_zips(zips, npz)
    write_vinyals_splits(odir / "splits" / "vinyals")
    return npz


# --------------------------------------------------------------------------- loading
@dataclass
class OmniglotRaw:
    """The whole data set as NumPy arrays (images still bit-packed)."""

    images_packed: np.ndarray
    alphabet: np.ndarray
    character: np.ndarray
    drawer: np.ndarray
    background: np.ndarray
    path: Path

    def unpack(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Unpack rows into bool images (n, 105, 105), ink = True."""
        packed = self.images_packed if rows is None else self.images_packed[rows]
        return np.unpackbits(packed, axis=1, count=RAW_SIZE * RAW_SIZE).reshape(-1, RAW_SIZE, RAW_SIZE).astype(bool)

    @property
    def class_names(self) -> np.ndarray:
        return np.char.add(np.char.add(self.alphabet, "/"), self.character)


@lru_cache(maxsize=4)
def _load_raw_cached(path: str) -> OmniglotRaw:
    try:
        with np.load(path, allow_pickle=False) as d:
            files = set(d.files)
            arrs = {k: d[k] for k in _NPZ_KEYS if k in files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path} is corrupt or unreadable ({type(e).__name__}: {e}). Delete it and run "
            "mlcore.data.omniglot.ensure_omniglot() to rebuild it from the official zips."
        ) from e
    missing = [k for k in _NPZ_KEYS if k not in arrs]
    if missing:
        raise ValueError(f"{path} lacks arrays {missing}; it is not an mlcore Omniglot cache")
    n = len(arrs["alphabet"])
    if arrs["images_packed"].shape != (n, (RAW_SIZE * RAW_SIZE + 7) // 8):
        raise ValueError(f"{path}: images_packed has shape {arrs['images_packed'].shape}, expected ({n}, 1379)")
    return OmniglotRaw(arrs["images_packed"], arrs["alphabet"], arrs["character"], arrs["drawer"],
                       arrs["background"], Path(path))


def load_raw(root: str | os.PathLike | None = None, download_missing: bool = True) -> OmniglotRaw:
    """Load the npz cache (downloading it first if needed)."""
    return _load_raw_cached(str(ensure_omniglot(root, download_missing=download_missing)))


def preprocess(images, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Turn raw images (ink = 1, any of (105,105), (n,105,105) or (n,1,105,105)) into model input.

    Returns float32 ``(n, 1, size, size)`` in [0, 1], ink = 1, resized with antialiased
    bilinear interpolation. This is exactly what the data pipeline feeds every model, so
    readers can score a trained learner on their own drawings.
    """
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.dtype == torch.bool or x.dtype == torch.uint8:
        x = x.float() if x.dtype == torch.bool else x.float() / (255.0 if x.max() > 1 else 1.0)
    x = x.float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"preprocess expects (H,W), (n,H,W) or (n,1,H,W) images; got shape {tuple(x.shape)}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("preprocess expects pixel values in [0, 1] with ink = 1 (or bool / uint8 images)")
    if x.shape[-2:] == (size, size):
        return x.contiguous()
    out = [F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
           for chunk in x.split(2048)]
    return torch.cat(out).clamp_(0, 1)


def _read_split_file(odir: Path, name: str) -> list[str]:
    path = odir / "splits" / "vinyals" / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(
            f"split file {path} is missing. Restore it with "
            f"mlcore.data.omniglot.write_vinyals_splits('{path.parent}') or point MLCORE_DATA at a complete copy."
        )
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"split file {path} is empty")
    return lines


@dataclass
class ClassSet:
    """The classes of one split, as tensors ready for episode sampling.

    ``images[char_index]`` holds the 20 drawings of a character (20, 1, S, S); a class is
    a (character, rotation) pair, so ``class_char[c]`` and ``class_rot[c]`` (quarter turns
    counter-clockwise) say which images and which rotation class ``c`` uses.
    """

    name: str
    images: torch.Tensor
    class_char: torch.Tensor
    class_rot: torch.Tensor
    class_alphabet: torch.Tensor
    class_names: list[str]
    alphabets: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.images, self.class_char, self.class_rot, self.class_alphabet

    def shallow_copy(self) -> ClassSet:
        """A new ClassSet over the same tensor storage (no pixel is copied), with its own lists.

        Reassigning a field or editing ``class_names`` / ``alphabets`` of the copy leaves the original as
        it was; writing into a tensor in place (``cs.images[0] = 0``, ``cs.images.mul_(2)``) still writes
        the original's pixels -- ``clone()`` a tensor before changing it.
        """
        return ClassSet(self.name, *(t.detach() for t in self._tensors()), list(self.class_names),
                        list(self.alphabets))

    def to(self, device) -> ClassSet:
        return ClassSet(self.name, self.images.to(device), self.class_char.to(device), self.class_rot.to(device),
                        self.class_alphabet.to(device), self.class_names, self.alphabets)

    def class_images(self, c: int) -> torch.Tensor:
        """The 20 images of class ``c`` with its rotation applied, (20, 1, S, S)."""
        return torch.rot90(self.images[int(self.class_char[c])], k=int(self.class_rot[c]), dims=(-2, -1))


def rotate_quarter_turns(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each square image of ``images`` (..., C, S, S) by its own ``turns`` (...) quarter turns.

    Turns are counter-clockwise, as ``ClassSet.class_rot`` counts them (``torch.rot90`` with
    ``dims=(-2, -1)``). ``turns`` broadcasts over the leading dimensions, so one turn per class can
    rotate all of its drawings. The four rotations are computed for the whole batch and one is picked
    per image: the result is an exact copy of ``torch.rot90`` of each image. With no turn at all the
    input is returned as it is.
    """
    turns = torch.as_tensor(turns, device=images.device).expand(images.shape[:-3])
    if not bool((turns != 0).any()):
        return images
    rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)])  # (4, ..., C, S, S)
    index = (turns % 4)[None, ..., None, None, None].expand(1, *images.shape)
    return rotated.gather(0, index).squeeze(0)


_SPLIT_CACHE: OrderedDict[tuple, tuple[ClassSet, tuple[int, ...]]] = OrderedDict()
_SPLIT_CACHE_SIZE = 8


def _load_split_cached(name: str, root: str | None, size: int) -> ClassSet:
    """The split, built once per (name, root, size) and kept for the next call (the 8 latest are kept).

    The cached ClassSet never leaves this module; :func:`load_split` hands out shallow copies. A cached
    split whose tensors were written in place since it was built (torch's version counters moved) is
    dropped and built again from disk, with a warning.
    """
    key = (name, root, size)
    if key in _SPLIT_CACHE:
        cs, built = _SPLIT_CACHE[key]
        if _versions(cs) == built:
            _SPLIT_CACHE.move_to_end(key)
            return cs
        del _SPLIT_CACHE[key]
        warnings.warn(f"the cached Omniglot split {name!r} was written in place by a caller; rebuilding it "
                      "from disk (clone() a ClassSet's tensors before changing them)", RuntimeWarning,
                      stacklevel=3)
    cs = _build_split(name, root, size)
    _SPLIT_CACHE[key] = (cs, _versions(cs))
    while len(_SPLIT_CACHE) > _SPLIT_CACHE_SIZE:
        _SPLIT_CACHE.popitem(last=False)
    return cs


def _versions(cs: ClassSet) -> tuple[int, ...]:
    # torch bumps a tensor's version on every in-place write, through any view or detach() of it
    return tuple(t._version for t in cs._tensors())


def _build_split(name: str, root: str | None, size: int) -> ClassSet:
    raw = load_raw(root)
    odir = Path(raw.path).parent
    names_all = raw.class_names
    if name.startswith("vinyals/"):
        which = name.split("/", 1)[1]
        lines = _read_split_file(odir, which)
        chars: list[str] = []
        rots: list[int] = []
        for ln in lines:
            parts = ln.split("/")
            if len(parts) != 3 or not parts[2].startswith("rot"):
                raise ValueError(f"bad line {ln!r} in split {which}; expected Alphabet/characterNN/rotDDD")
            chars.append(parts[0] + "/" + parts[1])
            rots.append(int(parts[2][3:]) // 90)
        class_names = lines
    else:
        want_bg = name == "background"
        sel = np.unique(names_all[raw.background == want_bg])
        chars, rots, class_names = list(sel), [0] * len(sel), list(sel)
    uniq = list(dict.fromkeys(chars))
    index = {c: i for i, c in enumerate(uniq)}
    # rows of each character: the npz keeps a character's 20 drawings consecutive, drawers 1..20
    first_row = {}
    for i, c in enumerate(names_all):
        first_row.setdefault(c, i)
    missing = [c for c in uniq if c not in first_row]
    if missing:
        raise ValueError(f"split {name} names {len(missing)} characters absent from {raw.path}, e.g. {missing[:3]}")
    rows = np.concatenate([np.arange(first_row[c], first_row[c] + DRAWERS) for c in uniq])
    imgs = preprocess(raw.unpack(rows), size).reshape(len(uniq), DRAWERS, 1, size, size)
    alphabets = list(dict.fromkeys(c.split("/")[0] for c in uniq))
    a_index = {a: i for i, a in enumerate(alphabets)}
    return ClassSet(
        name=name,
        images=imgs,
        class_char=torch.tensor([index[c] for c in chars]),
        class_rot=torch.tensor(rots),
        class_alphabet=torch.tensor([a_index[c.split("/")[0]] for c in chars]),
        class_names=class_names,
        alphabets=alphabets,
    )


def load_split(name: str, root: str | os.PathLike | None = None, size: int = IMAGE_SIZE,
               device: str | torch.device | None = None) -> ClassSet:
    """Load a split as a :class:`ClassSet`.

    ``name`` is one of ``vinyals/train``, ``vinyals/val``, ``vinyals/trainval``,
    ``vinyals/test`` (each rotation of a character is its own class) or ``background`` /
    ``evaluation`` (the 30 / 20 alphabets of Lake et al., no rotations).

    Splits are cached in memory (the images of all splits at 28 px are ~120 MB, so they are not copied
    per call). Every call returns its own :class:`ClassSet` (a :meth:`ClassSet.shallow_copy` of the
    cached one): reassigning its fields or editing its lists cannot change what the next caller gets.
    Its tensors share storage with the cache, so do not write them in place (``clone()`` first); if a
    caller does, the next call notices (torch's version counter) and rebuilds the split from disk (a write
    through ``.numpy()`` bypasses the counter and is not noticed).
    """
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
    if not isinstance(size, int) or size < 4:
        raise ValueError(f"image size must be an int >= 4, got {size!r}")
    cs = _load_split_cached(name, None if root is None else str(root), size).shallow_copy()
    return cs.to(device) if device is not None else cs


def iter_alphabet_classes(cs: ClassSet) -> Iterable[tuple[str, list[int]]]:
    """Yield (alphabet, class indices) pairs."""
    for a, name in enumerate(cs.alphabets):
        yield name, torch.nonzero(cs.class_alphabet.cpu() == a).flatten().tolist()
