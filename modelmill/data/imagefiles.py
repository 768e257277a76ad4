"""A user's own images as rows: a folder of image files (one sub-folder per class, optionally
under split folders), a CSV of image paths beside their labels, or an ``.npz`` archive of image
arrays (MedMNIST's layout, or ``images`` + ``labels`` [+ ``split``]).

Every image becomes one row with its pixels (0-255) flattened into ``pixels`` and its
``height``, ``width``, ``channels`` (1 grey, 3 colour), ``pixel_min`` and ``pixel_max``, the
columns a suite checks; file-based images also carry their ``file``. An image is kept in colour
(red, green, blue per pixel) when its channels differ anywhere, else read as grey levels; when
the spec gives ``source.images.size`` every image is resized (bilinear) to it and the resized
ones are counted. A file that is not a readable image, or a placeholder (under
:data:`MIN_SIDE` pixels on a side, or one flat colour), stops a training read with the count and
the first names; a batch to score gets a row for each such file, rejected with its reason.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.config.spec import SPLIT_NAMES
from modelmill.errors import CorruptSource, SourceUnavailable, SpecError

log = logging.getLogger("modelmill.data.imagefiles")

#: file suffixes read as images
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
SPLITS = ("train", "val", "test")
#: an image smaller than this on a side is a placeholder (a tracking pixel, an icon), not a sample
MIN_SIDE = 8
#: the column of a scoring batch's row that says why a file gave no image ("" when it did)
IMAGE_PROBLEM = "image_problem"
#: files of a folder without train/val/test sub-folders: the share of each split, chosen by a
#: hash of the file's path inside the folder (so adding files never moves an earlier one)
HASHED_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
#: the most images one source may hold
MAX_IMAGES = 1_000_000


def image_row(pixels: np.ndarray) -> dict:
    """The columns of one image: its pixels (height x width grey levels, or height x width x 3
    colours) flattened, and its size and channels."""
    a = np.asarray(pixels, dtype=np.float64)
    return {
        "height": int(a.shape[0]) if a.ndim >= 1 else 0,
        "width": int(a.shape[1]) if a.ndim >= 2 else 0,
        "channels": int(a.shape[2]) if a.ndim == 3 else 1,
        "pixel_min": float(a.min()) if a.size else float("nan"),
        "pixel_max": float(a.max()) if a.size else float("nan"),
        "pixels": a.reshape(-1).astype(np.float32),
    }


def has_colour(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image's channels differ anywhere (a grey image saved as RGB has none)."""
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def placeholder(row: dict) -> str:
    """Why an image row is a placeholder rather than a sample ("" when it is a sample)."""
    if min(row["height"], row["width"]) < MIN_SIDE:
        return f"a placeholder ({row['height']}x{row['width']} pixels, under {MIN_SIDE} on a side)"
    if row["pixel_min"] == row["pixel_max"]:
        return f"a placeholder (every pixel is {row['pixel_min']:g})"
    return ""


def load_image(path: Path, size: tuple[int, int] | None, name: str | None = None) -> dict:
    """One image file as a row: in colour when it has any, else grey levels; resized to ``size``
    = (height, width) when given (the row's ``resized`` says whether it was). Raises
    :class:`CorruptSource` for a file that is no readable image, or a placeholder."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            pic = rgb if has_colour(np.asarray(rgb)) else img.convert("L")
            seen = image_row(np.asarray(pic))
            if why := placeholder(seen):
                raise CorruptSource(f"image {name or path} is {why}")
            resized = size is not None and pic.size != (size[1], size[0])
            if resized:
                pic = pic.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return image_row(np.asarray(pic)) | {"resized": resized}
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CorruptSource(
            f"image {name or path} cannot be read: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e


def hashed_split(name: str) -> str:
    """train, val or test for a file, by a stable hash of its path inside the folder."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for split, share in HASHED_SPLIT.items():
        edge += share
        if u < edge:
            return split
    return "test"


def folder_files(root: Path) -> tuple[list[Path], list[Path]]:
    """The image files under a folder and its other files, each in name order (hidden files and
    folders left out)."""
    if not root.is_dir():
        raise SourceUnavailable(f"image folder {root} does not exist")
    images, others = [], []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
            (images if p.suffix.lower() in IMAGE_SUFFIXES else others).append(p)
    if not images:
        raise SourceUnavailable(f"image folder {root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(images) > MAX_IMAGES:
        raise SpecError(f"image folder {root} holds {len(images)} images, more than {MAX_IMAGES}")
    return images, others


def image_files(root: Path) -> list[Path]:
    """The image files under a folder, in name order (hidden files and folders left out)."""
    return folder_files(root)[0]


def folder_layout(names: Iterable[str]) -> str:
    """How a folder's images are laid out, from their paths inside it: ``split/class/file``,
    ``class/file``, or ``file`` (unlabelled images, as a batch to score)."""
    depths = {len(Path(n).parts) for n in names}
    if len(depths) != 1:
        raise CorruptSource(
            f"image folder mixes files at {sorted(d - 1 for d in depths)} folder levels: put every image in class/ (or split/class/) folders, or all beside each other"
        )
    depth = depths.pop()
    if depth == 1:
        return "file"
    if depth == 2:
        return "class/file"
    if depth == 3:
        tops = {Path(n).parts[0] for n in names}
        if unknown := sorted(t for t in tops if t.lower() not in SPLIT_NAMES):
            raise CorruptSource(
                f"image folder: the top folders of split/class/file are splits ({', '.join(sorted(SPLIT_NAMES))}), not {', '.join(unknown)}"
            )
        if "train" not in {SPLIT_NAMES[t.lower()] for t in tops}:
            raise CorruptSource(f"image folder: split folders {', '.join(sorted(tops))} hold no training split")
        return "split/class/file"
    raise CorruptSource("image folder is nested too deep: images belong in class/ or split/class/ folders")


def split_of(name: str, given: str, missing: frozenset[str]) -> str:
    """A file's split: its split folder's, except that a training file is drawn (by the hash of
    its path, :data:`HASHED_SPLIT`'s shares) into a split no folder holds."""
    if given != "train" or not missing:
        return given
    shares = {s: HASHED_SPLIT[s] for s in ("train", *sorted(missing))}
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64 * sum(shares.values())
    for split, share in shares.items():
        if u < share:
            return split
        u -= share
    return "train"


def made_splits(names: Iterable[str]) -> list[str]:
    """The splits a split/class/file folder has no folder for, drawn from its training files."""
    return sorted(set(SPLITS) - {SPLIT_NAMES[Path(n).parts[0].lower()] for n in names})


def read_image_folder(
    paths: dict[str, Path], size: tuple[int, int] | None, others: Iterable[str] = (), *, lenient: bool = False
) -> pd.DataFrame:
    """Rows of the images of one folder, keyed by their path inside it (see :func:`folder_layout`):
    ``label`` is the class folder, ``split`` the split folder's (train, val or test, whatever
    the folder is called; a split with no folder drawn from the training files), or hashed
    (:data:`HASHED_SPLIT`). ``others`` are the folder's files that are not images.

    A file that gives no image (unreadable, a placeholder, not an image at all) stops the read
    with their count, unless ``lenient`` (a batch to score): then it is a row of its own, with no
    pixels and the reason in :data:`IMAGE_PROBLEM`."""
    layout = folder_layout(paths)
    missing = frozenset(made_splits(paths)) if layout == "split/class/file" else frozenset()
    rows, problems = [], {}
    for name, path in paths.items():
        parts = Path(name).parts
        if layout == "split/class/file":
            labels = {"split": split_of(name, SPLIT_NAMES[parts[0].lower()], missing), "label": parts[1]}
        elif layout == "class/file":
            labels = {"split": hashed_split(name), "label": parts[0]}
        else:
            labels = {}
        try:
            rows.append({"file": name, **labels, **load_image(path, size, name)})
        except CorruptSource as e:  # "image NAME is a placeholder (…)" / "… cannot be read: …"
            problems[name] = "not an image: " + str(e).removeprefix(f"image {name} ").removeprefix("is ")
    depth = len(Path(next(iter(paths))).parts)
    among = [n for n in others if len(Path(n).parts) == depth]  # where samples are: a sample that is no image
    if aside := [n for n in others if n not in among]:  # a README beside the class folders
        log.info("image folder: %d files beside the image folders left out: %s", len(aside), ", ".join(aside[:3]))
    problems |= {name: f"not an image: a {Path(name).suffix or 'suffix-less'} file" for name in among}
    if problems and not lenient:
        first = "; ".join(f"{name}: {why}" for name, why in list(problems.items())[:3])
        raise CorruptSource(
            f"{len(problems)} of {len(paths) + len(among)} files of the image folder give no image to learn from "
            f"(remove or replace them): {first}{' …' if len(problems) > 3 else ''}"
        )
    df = pd.DataFrame(rows)
    if missing:
        log.info(
            "image folder: no %s folder: %s drawn from the training files by a hash of each path",
            "/".join(missing),
            " and ".join(missing),
        )
    if size is not None and len(df) and (n := int(df["resized"].sum())):
        log.info("image folder: %d of %d images resized to %dx%d (source.images.size)", n, len(df), size[0], size[1])
    df = df.drop(columns="resized", errors="ignore")
    if lenient:
        bad = pd.DataFrame(
            {"file": list(problems), "pixels": [None] * len(problems), IMAGE_PROBLEM: list(problems.values())}
        )
        df = (
            pd.concat([df.assign(**{IMAGE_PROBLEM: ""}), bad], ignore_index=True)
            if len(bad)
            else df.assign(**{IMAGE_PROBLEM: ""})
        )
    return df


def read_image_table(
    table: pd.DataFrame, column: str, paths: dict[str, Path], size: tuple[int, int] | None
) -> pd.DataFrame:
    """A table of image paths (and labels, splits, anything else) with each path's image read in:
    ``paths`` maps the table's path values to the files. The table's own columns are kept; a
    ``split`` column is added (hashed from the path) when the table has none."""
    images = pd.DataFrame([load_image(paths[str(v)], size, str(v)) for v in table[column]], index=table.index)
    images = images.drop(columns="resized")
    out = table.drop(columns=[c for c in images.columns if c in table.columns]).join(images)
    if "split" not in out.columns:
        out["split"] = out[column].map(lambda v: hashed_split(str(v)))
    return out


def read_npz(path: Path, name: str, size: tuple[int, int] | None = None) -> pd.DataFrame:
    """Rows of an ``.npz`` archive of image arrays: MedMNIST's ``{train,val,test}_images`` /
    ``_labels``, or ``images`` + ``labels`` (+ ``split``, else hashed by position). Arrays are
    read without pickles; colour images (a last axis of 3 or 4) stay colour, resized
    (bilinear) to ``size`` when given."""
    if path.stat().st_size == 0:
        raise CorruptSource(f"{name} is empty (0 bytes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CorruptSource(f"{name} is not a readable .npz archive: {str(e).splitlines()[0]}") from e
    if "images" in arrays:
        parts = [(None, arrays["images"], arrays.get("labels"), arrays.get("split"))]
    else:
        parts = []
        for split in SPLITS:
            if f"{split}_images" not in arrays or f"{split}_labels" not in arrays:
                raise CorruptSource(
                    f"{name} lacks {split}_images/{split}_labels, or images/labels (has {sorted(arrays)})"
                )
            parts.append((split, arrays[f"{split}_images"], arrays[f"{split}_labels"], None))
    rows = []
    for split, images, labels, splits in parts:
        labels = None if labels is None else labels.reshape(len(labels), -1)[:, 0] if labels.ndim > 1 else labels
        for what, values in (("labels", labels), ("split", splits)):
            if values is not None and len(values) != len(images):
                raise CorruptSource(
                    f"{name}: {len(images)} {split or ''} images but {len(values)} {what}".replace("  ", " ")
                )
        for i, img in enumerate(images):
            a = np.asarray(img, dtype=np.float64)
            if a.ndim == 3:  # colour kept where the channels differ (an alpha channel left out)
                a = a[..., :3] if a.shape[2] >= 3 and has_colour(a[..., :3]) else a[..., 0]
            if size is not None and a.shape[:2] != tuple(size):
                from skimage.transform import resize

                a = resize(a, size, order=1, preserve_range=True, anti_aliasing=True)
            row = {"split": split or (str(splits[i]) if splits is not None else hashed_split(f"{name}:{i}"))}
            if labels is not None:
                lab = labels[i]
                row["label"] = lab.item() if isinstance(lab, np.generic) else lab
            rows.append(row | image_row(a))
    return pd.DataFrame(rows)
