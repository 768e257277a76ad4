"""A user's own images as rows: a folder of image files (one sub-folder per class, optionally
under train/val/test folders), a CSV of image paths beside their labels, or an ``.npz`` archive
of image arrays (MedMNIST's layout, or ``images`` + ``labels`` [+ ``split``]).

Every image becomes one row with its grey levels (0-255) flattened into ``pixels`` and its
``height``, ``width``, ``channels``, ``pixel_min`` and ``pixel_max``, the columns a suite checks;
file-based images also carry their ``file``. Images are converted to grey levels and, when the
spec gives ``source.images.size``, resized (bilinear) to it. A file that is not a readable image
stops the read with one line naming it: no image is skipped silently.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from modelmill.errors import CorruptSource, SourceUnavailable, SpecError

#: file suffixes read as images
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
SPLITS = ("train", "val", "test")
#: files of a folder without train/val/test sub-folders: the share of each split, chosen by a
#: hash of the file's path inside the folder (so adding files never moves an earlier one)
HASHED_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
#: the most images one source may hold
MAX_IMAGES = 1_000_000


def image_row(pixels: np.ndarray, channels: int = 1) -> dict:
    """The columns of one image: its grey levels (height x width) and the channels it had."""
    a = np.asarray(pixels, dtype=np.float64)
    return {
        "height": int(a.shape[0]) if a.ndim >= 1 else 0,
        "width": int(a.shape[1]) if a.ndim >= 2 else 0,
        "channels": channels,
        "pixel_min": float(a.min()) if a.size else float("nan"),
        "pixel_max": float(a.max()) if a.size else float("nan"),
        "pixels": a.reshape(-1).astype(np.float32),
    }


def load_image(path: Path, size: tuple[int, int] | None, name: str | None = None) -> dict:
    """One image file as a row (grey levels; resized to ``size`` = (height, width) when given)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            channels = len(img.getbands())
            grey = img.convert("L")
            if size is not None and grey.size != (size[1], size[0]):
                grey = grey.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return image_row(np.asarray(grey), channels)
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


def image_files(root: Path) -> list[Path]:
    """The image files under a folder, in name order (hidden files and folders left out)."""
    if not root.is_dir():
        raise SourceUnavailable(f"image folder {root} does not exist")
    found = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not found:
        raise SourceUnavailable(f"image folder {root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(found) > MAX_IMAGES:
        raise SpecError(f"image folder {root} holds {len(found)} images, more than {MAX_IMAGES}")
    return found


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
        if not tops <= set(SPLITS):
            raise CorruptSource(
                f"image folder: the top folders of split/class/file must be {', '.join(SPLITS)}, not {', '.join(sorted(tops - set(SPLITS)))}"
            )
        return "split/class/file"
    raise CorruptSource("image folder is nested too deep: images belong in class/ or split/class/ folders")


def read_image_folder(paths: dict[str, Path], size: tuple[int, int] | None) -> pd.DataFrame:
    """Rows of the images of one folder, keyed by their path inside it (see :func:`folder_layout`):
    ``label`` is the class folder, ``split`` the split folder, or hashed (:data:`HASHED_SPLIT`)."""
    layout = folder_layout(paths)
    rows = []
    for name, path in paths.items():
        parts = Path(name).parts
        if layout == "split/class/file":
            labels = {"split": parts[0], "label": parts[1]}
        elif layout == "class/file":
            labels = {"split": hashed_split(name), "label": parts[0]}
        else:
            labels = {}
        rows.append({"file": name, **labels, **load_image(path, size, name)})
    return pd.DataFrame(rows)


def read_image_table(
    table: pd.DataFrame, column: str, paths: dict[str, Path], size: tuple[int, int] | None
) -> pd.DataFrame:
    """A table of image paths (and labels, splits, anything else) with each path's image read in:
    ``paths`` maps the table's path values to the files. The table's own columns are kept; a
    ``split`` column is added (hashed from the path) when the table has none."""
    images = pd.DataFrame([load_image(paths[str(v)], size, str(v)) for v in table[column]], index=table.index)
    out = table.drop(columns=[c for c in images.columns if c in table.columns]).join(images)
    if "split" not in out.columns:
        out["split"] = out[column].map(lambda v: hashed_split(str(v)))
    return out


def read_npz(path: Path, name: str, size: tuple[int, int] | None = None) -> pd.DataFrame:
    """Rows of an ``.npz`` archive of image arrays: MedMNIST's ``{train,val,test}_images`` /
    ``_labels``, or ``images`` + ``labels`` (+ ``split``, else hashed by position). Arrays are
    read without pickles; colour images (a last axis of 3 or 4) become grey levels, resized
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
            channels = int(a.shape[2]) if a.ndim == 3 else 1
            if channels in (3, 4):  # ITU-R 601 luma, as PIL converts colour to grey
                a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
            if size is not None and a.shape[:2] != tuple(size):
                from skimage.transform import resize

                a = resize(a, size, order=1, preserve_range=True, anti_aliasing=True)
            row = {"split": split or (str(splits[i]) if splits is not None else hashed_split(f"{name}:{i}"))}
            if labels is not None:
                lab = labels[i]
                row["label"] = lab.item() if isinstance(lab, np.generic) else lab
            rows.append(row | image_row(a, channels))
    return pd.DataFrame(rows)
