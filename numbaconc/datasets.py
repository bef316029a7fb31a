"""Datasets as HDF5: import from IDX / npz / npy, open as read-only memmaps.

One layout for every dataset::

    /train/x   (n, d)  uint8 (pixels) or float32 in [0, 1]
    /train/y   (n,)    int64            (optional)
    /test/x    (m, d)
    /test/y    (m,)                     (optional)
    attrs: name, image_shape, scale, checksum, source, format_version

``x`` is written contiguous and uncompressed, so ``open_dataset`` can map it
with ``np.memmap`` (zero copy, read-only). A user's chunked or compressed file
still works: ``x`` is then the ``h5py.Dataset`` itself, read in row blocks.
Distances are computed in storage units (pixel levels for uint8); ``scale``
converts them to [0, 1] units (1/255 for uint8 pixels, 1 for float data).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from .errors import NumbaconcError
from .outputs import atomic_path, check_output_folder, make_folder, os_reason  # noqa: F401 (atomic_path: re-exported)

FORMAT_VERSION = 1
CACHE_ENV = "NUMBACONC_CACHE"
DIGEST_VERSION = 1          # layout of the remembered content digests (cache_dir()/digests)
BUNDLED = ("mnist",)
KINDS = ("mnist", "fashion-mnist", "cifar10", "npz", "npy")
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


# --------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """Where imported bundled data and neighbour caches live.

    ``$NUMBACONC_CACHE`` if set, else ``$XDG_CACHE_HOME/numbaconc``, else
    ``~/.cache/numbaconc``. Checked once per process (a folder, writable)
    with a one-line error naming it, so commands call it before computing.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        path, what = Path(env), f"cache folder {env} (${CACHE_ENV})"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "numbaconc"
        what = f"cache folder {path}"
    if path not in _CHECKED_CACHES:
        check_output_folder(path, what=what)
        make_folder(path, what=what)
        _CHECKED_CACHES.add(path)
    return path


_CHECKED_CACHES: set = set()


def bundled_source(name: str) -> Path:
    """Folder of the IDX files shipped with the package (``data/`` in the repo)."""
    root = Path(str(resources.files("numbaconc_data")))
    folder = root / name
    if not folder.is_dir():
        raise NumbaconcError(f"bundled dataset {name!r} not found under {root}")
    return folder


def file_sha256(paths) -> str:
    """SHA-256 over the bytes of ``paths`` in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------ readers


def read_idx(path: Path | str, expect_magic: int) -> np.ndarray:
    """Read one gzip IDX file (uint8 payload), checking header and size.

    Dimensions are unsigned 32-bit (the IDX format); the payload is read in
    blocks up to the size the header claims plus one byte, so a header that
    claims more than the file holds is reported as truncated without ever
    allocating the claimed size.
    """
    path = Path(path)
    if not path.is_file():
        raise NumbaconcError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4:
                raise NumbaconcError(f"{path}: truncated IDX header")
            magic = struct.unpack(">I", head)[0]
            if magic != expect_magic:
                raise NumbaconcError(f"{path}: wrong IDX magic number {magic} (expected {expect_magic})")
            ndim = magic & 0xFF
            raw_dims = handle.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise NumbaconcError(f"{path}: truncated IDX header")
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
            size = 1
            for dim in dims:
                size *= int(dim)  # Python ints: no overflow for 0xFFFFFFFF x 65535 x 65535
            payload = _read_at_most(handle, size + 1)
            extra = len(payload) - size
            if extra > 0:
                payload = None
                while chunk := handle.read(1 << 24):  # count the rest without keeping it
                    extra += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise NumbaconcError(f"{path}: not a readable gzip file ({os_reason(exc)})") from None
    shape = " x ".join(map(str, dims))
    if size == 0:  # also keeps numpy from refusing an empty array of huge images
        raise NumbaconcError(f"{path}: the header claims {shape}: no data")
    if extra > 0:
        raise NumbaconcError(f"{path}: {extra} unexpected trailing bytes after the {shape} payload")
    if len(payload) < size:
        raise NumbaconcError(f"{path}: truncated: the header claims {shape} = {size} payload bytes, "
                             f"the file holds {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _read_at_most(handle, limit) -> bytes:
    """Read up to ``limit`` bytes in blocks: memory follows the data, not a claim."""
    parts, total = [], 0
    while total < limit:
        want = min(1 << 24, limit - total)
        chunk = handle.read(want)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _load_idx_folder(src: Path) -> dict:
    src = Path(src)
    if not src.is_dir():
        raise NumbaconcError(f"{src}: not a folder of IDX files")
    arrays = {}
    for key, fname in _IDX_FILES.items():
        arrays[key] = read_idx(src / fname, 2051 if key.endswith("_x") else 2049)
    for split in ("train", "test"):
        nx, ny = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if nx != ny:
            raise NumbaconcError(f"{src}: {split} has {nx} images but {ny} labels")
    shape = tuple(int(s) for s in arrays["train_x"].shape[1:])
    if tuple(arrays["test_x"].shape[1:]) != shape:
        raise NumbaconcError(f"{src}: train and test images differ in shape")
    checksum = file_sha256([src / _IDX_FILES[k] for k in ("train_x", "train_y", "test_x", "test_y")])
    return dict(arrays=arrays, image_shape=shape, checksum=checksum)


def _check_images(x: np.ndarray, where: str, bounded: bool = True) -> np.ndarray:
    """Flatten to (n, d); accept uint8, or float (in [0, 1] when ``bounded``) as float32."""
    if x.ndim < 2:
        raise NumbaconcError(f"{where}: expected images (n, ...) but got shape {x.shape}")
    n_features = int(np.prod(x.shape[1:], dtype=np.int64))  # not -1: n may be 0
    if n_features == 0:
        raise NumbaconcError(f"{where}: images of shape {x.shape[1:]} have no pixels")
    if x.dtype == np.uint8:
        return x.reshape(len(x), n_features)
    if not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize > 8:
        raise NumbaconcError(f"{where}: dtype {x.dtype} not supported (uint8 or float in [0, 1])")
    flat = x.reshape(len(x), n_features)
    if not np.all(np.isfinite(flat)):
        raise NumbaconcError(f"{where}: contains NaN or inf")
    lo, hi = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 0.0)
    if bounded and (lo < 0.0 or hi > 1.0):
        raise NumbaconcError(f"{where}: values out of [0, 1] (min {lo:g}, max {hi:g})")
    return flat.astype(np.float32, copy=False)


def _check_labels(y, n: int, where: str):
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise NumbaconcError(f"{where}: {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer):
        raise NumbaconcError(f"{where}: labels must be integers, got {y.dtype}")
    return y.astype(np.int64)


# ------------------------------------------------------------------- import


def write_dataset(out, *, name, train_x, test_x, train_y=None, test_y=None,
                  image_shape=None, checksum, source, bounded=True, extra_attrs=None,
                  extra_arrays=None):
    """Write the standard layout atomically (temporary name, then rename).

    ``bounded=False`` accepts float data outside [0, 1] (synthetic Gaussians);
    ``extra_attrs`` are stored as file attributes (e.g. the true covariance);
    ``extra_arrays``: {"train/source_rows": array, ...} extra datasets.
    """
    train_x = _check_images(np.asarray(train_x), f"{source}: train x", bounded)
    test_x = _check_images(np.asarray(test_x), f"{source}: test x", bounded)
    if train_x.shape[1] != test_x.shape[1]:
        raise NumbaconcError(f"{source}: train has {train_x.shape[1]} features, test {test_x.shape[1]}")
    if train_x.dtype != test_x.dtype:
        raise NumbaconcError(f"{source}: train is {train_x.dtype} but test is {test_x.dtype}")
    if len(train_x) == 0:
        raise NumbaconcError(f"{source}: the training set is empty")
    if len(test_x) == 0:
        raise NumbaconcError(f"{source}: the test set is empty")
    train_y = _check_labels(train_y, len(train_x), f"{source}: train y")
    test_y = _check_labels(test_y, len(test_x), f"{source}: test y")
    if image_shape is None:
        image_shape = (train_x.shape[1],)
    scale = 1.0 / 255.0 if train_x.dtype == np.uint8 else 1.0
    from .integrity import array_digest

    # what Dataset.content_digest will compute from the file: a copy in the
    # cache is checked against it before it is used (cached_import)
    digest = array_digest(train_x, test_x, *(y for y in (train_y, test_y) if y is not None))
    out = Path(out)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
                group = f.create_group(split)
                group.create_dataset("x", data=np.ascontiguousarray(x))  # contiguous, uncompressed
                if y is not None:
                    group.create_dataset("y", data=y)
            f.attrs.update(
                name=name, image_shape=np.asarray(image_shape, dtype=np.int64), scale=scale,
                checksum=checksum, source=str(source), format_version=FORMAT_VERSION,
                content_digest=digest,
            )
            f.attrs.update(extra_attrs or {})
            for key, value in (extra_arrays or {}).items():
                f.create_dataset(key, data=value)
    return out


def import_dataset(kind: str, src, out, *, test_fraction: float = 0.2, seed: int = 0,
                   name: str | None = None) -> Path:
    """Import ``src`` of the given ``kind`` into the HDF5 layout at ``out``."""
    src = Path(src)
    if kind not in KINDS:
        raise NumbaconcError(f"unknown dataset kind {kind!r} (choose from {', '.join(KINDS)})")
    if not src.exists():
        raise NumbaconcError(f"{src}: not found")
    if kind in ("mnist", "fashion-mnist"):
        loaded = _load_idx_folder(src)
        a = loaded["arrays"]
        return write_dataset(out, name=name or kind, train_x=a["train_x"], train_y=a["train_y"],
                             test_x=a["test_x"], test_y=a["test_y"],
                             image_shape=loaded["image_shape"], checksum=loaded["checksum"], source=src)
    if kind in ("cifar10", "npz"):
        arrays = _load_npz(src, require_labels=(kind == "cifar10"))
        shape = tuple(int(s) for s in arrays["x_train"].shape[1:])
        _check_kind_shape(kind, src, shape)
        if len(shape) == 1:
            shape = (shape[0],)
        return write_dataset(out, name=name or (kind if kind == "cifar10" else src.stem),
                             train_x=arrays["x_train"], train_y=arrays.get("y_train"),
                             test_x=arrays["x_test"], test_y=arrays.get("y_test"),
                             image_shape=shape, checksum=file_sha256([src]), source=src)
    # npy: one unlabeled array, split by a seeded fraction
    if not 0.0 < test_fraction < 1.0:
        raise NumbaconcError(f"test fraction must be in (0, 1), got {test_fraction}")
    x = _load_npy(src)
    if x.ndim < 2 or len(x) < 2:
        raise NumbaconcError(f"{src}: expected an array of at least 2 rows (n, ...), got {x.shape}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    shape = tuple(int(s) for s in x.shape[1:])
    return write_dataset(out, name=name or src.stem, train_x=x[np.sort(order[n_test:])],
                         test_x=x[np.sort(order[:n_test])], image_shape=shape,
                         checksum=file_sha256([src]) + f":split={test_fraction}:seed={seed}", source=src)


def _load_npz(src: Path, require_labels: bool) -> dict:
    try:
        archive = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise NumbaconcError(f"{src}: not a readable .npz file ({os_reason(exc)})") from None
    with archive:
        members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
        need = {"x_train", "x_test"} | ({"y_train", "y_test"} if require_labels else set())
        missing = sorted(need - set(members))
        if missing:
            raise NumbaconcError(f"{src}: missing array(s) {', '.join(missing)}")
        keys = [k for k in ("x_train", "y_train", "x_test", "y_test") if k in members]
        arrays = {}
        for key in keys:
            where = f"{src}: {key}"
            info = archive.getinfo(members[key])
            try:
                with archive.open(info) as handle:
                    _check_npy_header(handle, info.file_size, where)
                    handle.seek(0)
                    arrays[key] = np.lib.format.read_array(handle, allow_pickle=False)
            except NumbaconcError:
                raise
            except Exception as exc:  # zip, lzma, zlib and numpy each have their own errors
                raise NumbaconcError(f"{where}: not readable ({os_reason(exc)})") from None
    return arrays


def _check_npy_header(handle, stored_bytes: int, where: str):
    """Read an .npy header and check its claim against the stored size before
    anything is allocated: a header claiming 10^12 x 28 x 28 is one line."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(handle)
    except Exception as exc:  # a damaged header: ValueError, SyntaxError, EOFError, ...
        raise NumbaconcError(f"{where}: not a readable .npy array ({os_reason(exc)})") from None
    if dtype.hasobject:
        raise NumbaconcError(f"{where}: holds Python objects (dtype {dtype}); numbers only")
    claimed = dtype.itemsize
    for dim in shape:
        claimed *= int(dim)
    held = stored_bytes - handle.tell()
    if claimed != held:
        raise NumbaconcError(f"{where}: the header claims shape {tuple(shape)} of {dtype} = {claimed} "
                             f"bytes, the file holds {held}")
    if claimed > _physical_memory():
        raise NumbaconcError(f"{where}: shape {tuple(shape)} of {dtype} needs {claimed / 2**30:.1f} GiB, "
                             "more than this machine's memory")
    return tuple(shape), dtype


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 62


def _load_npy(src: Path) -> np.ndarray:
    try:
        with open(src, "rb") as handle:
            _check_npy_header(handle, os.fstat(handle.fileno()).st_size, str(src))
            handle.seek(0)
            return np.lib.format.read_array(handle, allow_pickle=False)
    except NumbaconcError:
        raise
    except Exception as exc:
        raise NumbaconcError(f"{src}: not a readable .npy file ({os_reason(exc)})") from None


#: what a named kind implies about each image (features), beyond its file format
KIND_SHAPES = {"cifar10": ((32, 32, 3), (3, 32, 32), (3072,))}


def _check_kind_shape(kind: str, src: Path, shape: tuple) -> None:
    allowed = KIND_SHAPES.get(kind)
    if allowed and tuple(shape) not in allowed:
        raise NumbaconcError(f"{src}: {kind} images are 32 x 32 x 3, this file holds images of shape "
                             f"{' x '.join(map(str, shape))} (import it as npz)")


# --------------------------------------------------------------------- open


@dataclass
class Split:
    """One split: ``x`` is a read-only memmap (contiguous file) or an
    ``h5py.Dataset`` (chunked/compressed file, read in row blocks)."""

    name: str
    x: object
    y: np.ndarray | None

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.x.dtype)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a C-contiguous array (a view for memmaps)."""
        return np.ascontiguousarray(self.x[start:stop])

    def array(self) -> np.ndarray:
        """The whole matrix: zero copy for a memmap, read into memory otherwise."""
        if isinstance(self.x, np.ndarray):
            return self.x
        return np.ascontiguousarray(self.x[...])

    def view(self, rows=None) -> "RowView":
        """The rows ``rows`` (any index array; None = all) as a ``RowView``:
        nothing is read until a block is asked for."""
        return RowView(self.x, rows)

    def blocks(self, rows=None, *, bytes_per_row: float | None = None, share: float = 0.125):
        """Yield (start, stop, block) over ``rows`` (see ``RowView.blocks``)."""
        return self.view(rows).blocks(bytes_per_row=bytes_per_row, share=share)


@dataclass
class Dataset:
    path: Path | None                  # None: arrays in memory (dataset_from_arrays)
    name: str
    image_shape: tuple
    scale: float
    checksum: str
    train: Split
    test: Split
    _file: h5py.File = field(repr=False, default=None)
    _digest: str | None = field(repr=False, default=None)

    @property
    def content_digest(self) -> str:
        """SHA-256 of the data itself (x and y of both splits): what caches
        are keyed on, so a file edited in place never serves old results.

        Hashing reads the whole file once; the digest is remembered in the
        cache folder together with the file's identity (resolved path,
        size, mtime_ns, ctime_ns, inode, device) and reused by later
        processes while all of these are unchanged. Any write to the file
        changes its mtime and ctime (ctime cannot be set back by ``touch``),
        so an edited file is hashed again.
        """
        if self._digest is None:
            self._digest = remembered_digest(self.path, self._hash_content)
        return self._digest

    def _hash_content(self) -> str:
        from .integrity import array_digest

        parts = [self.train.x, self.test.x]
        parts += [s.y for s in (self.train, self.test) if s.y is not None]
        return array_digest(*parts)

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise NumbaconcError(f"unknown split {name!r} (train or test)")
        return getattr(self, name)

    @property
    def unit(self) -> str:
        return "pixel levels (1/255)" if self.train.dtype == np.uint8 else "[0,1] units"

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dataset_from_arrays(X_train, X_test, *, y_train=None, y_test=None, name: str = "arrays",
                        scale: float | None = None, image_shape=None) -> Dataset:
    """A ``Dataset`` over arrays in memory (or memmaps, or h5py datasets): no file.

    Parameters
    ----------
    X_train, X_test : (n, d) uint8 or float32 matrices
        Storage units: uint8 pixel levels, or float32 in [0, 1] units.
    y_train, y_test : (n,) integer labels, optional
    name : str
        How outputs name the data.
    scale : float, optional
        [0, 1] units per storage unit (default 1/255 for uint8, 1 for float32).
    image_shape : tuple, optional
        Shape of one row as an image (default ``(d,)``).

    Caches (neighbour lists) are keyed by the content digest of the arrays,
    computed here once.
    """
    from .integrity import array_digest
    from .validation import check_finite, check_matrix

    _, d, dtype = check_matrix(X_train, name="X_train")
    _, d_test, dtype_test = check_matrix(X_test, name="X_test")
    if (d_test, dtype_test) != (d, dtype):
        raise NumbaconcError(f"X_test is {d_test} features of {dtype_test} but X_train is "
                             f"{d} features of {dtype}")
    check_finite(X_train, "X_train")
    check_finite(X_test, "X_test")
    y_train = _check_labels(y_train, X_train.shape[0], "y_train")
    y_test = _check_labels(y_test, X_test.shape[0], "y_test")
    scale = (1.0 / 255.0 if dtype == np.uint8 else 1.0) if scale is None else float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise NumbaconcError(f"scale must be finite and > 0, got {scale}")
    digest = array_digest(X_train, X_test, *(y for y in (y_train, y_test) if y is not None))
    return Dataset(path=None, name=name, image_shape=tuple(image_shape or (d,)), scale=scale,
                   checksum=digest, train=Split("train", X_train, y_train),
                   test=Split("test", X_test, y_test), _digest=digest)


def _read_labels(f: h5py.File, split: str, n: int, path: Path):
    if f"{split}/y" not in f:
        return None
    node = f[f"{split}/y"]
    if not isinstance(node, h5py.Dataset) or node.ndim != 1 or node.shape[0] != n:
        raise NumbaconcError(f"{path}: /{split}/y must be {n} labels, one per row of /{split}/x")
    if not np.issubdtype(node.dtype, np.integer):
        raise NumbaconcError(f"{path}: /{split}/y has dtype {node.dtype} (integer labels)")
    return np.asarray(node[...])


def _memmap_or_dataset(path: Path, ds: h5py.Dataset):
    offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
    if offset is None or ds.dtype.byteorder not in ("=", "|", "<"):
        return ds
    if offset + ds.dtype.itemsize * int(np.prod(ds.shape, dtype=np.int64)) > path.stat().st_size:
        raise NumbaconcError(f"{path}: truncated: /{ds.name.strip('/')} ends beyond the end of the file")
    return np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)


def open_dataset(spec) -> Dataset:
    """Open an imported HDF5 file, or a bundled dataset by name (``mnist``)."""
    path = Path(spec)
    if str(spec) in BUNDLED and not path.is_file():  # a folder named "mnist" does not hide it
        path = ensure_bundled(str(spec))
    if not path.is_file():
        raise NumbaconcError(f"{spec}: no such dataset file (or bundled name: {', '.join(BUNDLED)})")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NumbaconcError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        splits = {}
        for split in ("train", "test"):
            if f"{split}/x" not in f:
                raise NumbaconcError(f"{path}: missing HDF5 dataset /{split}/x")
            ds = f[f"{split}/x"]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                raise NumbaconcError(f"{path}: /{split}/x must be a 2-D (n, d) dataset, got "
                                     f"{getattr(ds, 'shape', 'a group')}")
            if ds.dtype not in (np.uint8, np.float32):
                raise NumbaconcError(f"{path}: /{split}/x has dtype {ds.dtype} (uint8 or float32)")
            y = _read_labels(f, split, ds.shape[0], path)
            splits[split] = Split(split, _memmap_or_dataset(path, ds), y)
        if splits["train"].n_features != splits["test"].n_features:
            raise NumbaconcError(f"{path}: train and test differ in number of features")
        shape, scale = _shape_and_scale(f.attrs, splits["train"], path)
        return Dataset(
            path=path, name=str(f.attrs.get("name", path.stem)), image_shape=shape, scale=scale,
            checksum=str(f.attrs.get("checksum", "")) or _content_checksum(splits),
            train=splits["train"], test=splits["test"], _file=f,
        )
    except BaseException:
        f.close()
        raise


def _shape_and_scale(attrs, train: Split, path: Path):
    """The image_shape and scale attributes, checked (a file made elsewhere may hold anything)."""
    default_scale = 1.0 / 255.0 if train.dtype == np.uint8 else 1.0
    try:
        shape = tuple(int(s) for s in np.atleast_1d(attrs.get("image_shape", (train.n_features,))))
        scale = float(attrs.get("scale", default_scale))
    except (TypeError, ValueError):
        raise NumbaconcError(f"{path}: attributes image_shape / scale are not numbers") from None
    if int(np.prod(shape, dtype=object)) != train.n_features or min(shape, default=0) <= 0:
        raise NumbaconcError(f"{path}: image_shape {shape} does not hold {train.n_features} features")
    if not (math.isfinite(scale) and scale > 0):
        raise NumbaconcError(f"{path}: scale must be finite and > 0, got {scale}")
    return shape, scale


def _file_identity(path: Path) -> dict:
    st = os.stat(path)
    return dict(path=str(path.resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns, inode=st.st_ino, device=st.st_dev)


def _digest_record_path(identity: dict) -> Path:
    name = hashlib.sha256(identity["path"].encode()).hexdigest()[:32]
    return cache_dir() / "digests" / f"{name}.json"


def remembered_digest(path: Path, compute) -> str:
    """``compute()`` (a content digest of the file at ``path``), remembered in
    ``cache_dir()/digests`` keyed by the file's identity; a record whose
    identity differs in any field, or that cannot be read, is recomputed."""
    identity = _file_identity(path)
    record_path = _digest_record_path(identity)
    try:
        record = json.loads(record_path.read_text())
        if (isinstance(record, dict) and record.get("version") == DIGEST_VERSION
                and record.get("identity") == identity and isinstance(record.get("digest"), str)):
            return record["digest"]
    except (OSError, ValueError):
        pass  # absent or damaged: recompute
    digest = compute()
    if _file_identity(path) != identity:
        return digest  # changed while hashing: do not remember a digest of mixed bytes
    try:
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(dict(version=DIGEST_VERSION, identity=identity, digest=digest)))
    except NumbaconcError:
        pass  # a cache that cannot be written costs a rehash next time, never a wrong answer
    return digest


def _content_checksum(splits) -> str:
    """For files made outside numbaconc (no checksum attribute): hash the data."""
    digest = hashlib.sha256()
    for split in splits.values():
        for start in range(0, split.n_samples, 8192):
            digest.update(split.rows(start, start + 8192).tobytes())
    return digest.hexdigest()


def ensure_bundled(name: str) -> Path:
    """Import a bundled dataset into the cache once; return the HDF5 path."""
    src = bundled_source(name)
    checksum = file_sha256([src / _IDX_FILES[k] for k in ("train_x", "train_y", "test_x", "test_y")])
    out = cache_dir() / f"{name}-{checksum[:16]}.h5"
    return cached_import(out, lambda path: import_dataset(name, src, path))


def cached_import(out: Path, make) -> Path:
    """A dataset imported into the cache folder: ``make(out)`` writes it when
    absent, and again when its content no longer matches the digest stored
    at import time (the copy was damaged or edited in place), saying so."""
    if out.exists():
        why = "cannot be opened"
        try:
            with open_dataset(out) as ds:
                stored = ds._file.attrs.get("content_digest")
                if stored is not None and str(stored) == ds.content_digest:
                    return out
                why = ("has no stored content digest (imported by an older numbaconc)" if stored is None
                       else "does not match the digest stored when it was imported")
        except NumbaconcError:
            pass
        logging.getLogger(__name__).warning(f"{out}: cached import {why}; importing it again")
        out.unlink(missing_ok=True)  # another process may have replaced it first
    make(out)
    return out


def describe(ds: Dataset) -> dict:
    """What ``numbaconc data info`` prints."""
    info = dict(path=str(ds.path), name=ds.name, image_shape=list(ds.image_shape), scale=ds.scale,
                checksum=ds.checksum, unit=ds.unit)
    for split in (ds.train, ds.test):
        info[split.name] = dict(
            shape=[split.n_samples, split.n_features], dtype=str(split.dtype),
            labels=split.y is not None, memmapped=isinstance(split.x, np.memmap),
        )
    return info


# ------------------------------------------------------- streamed writing


def write_dataset_blocks(out, *, name, n_features: int, dtype, splits: dict, image_shape,
                         source, checksum, extra_attrs=None) -> Path:
    """Write the standard layout block by block, never holding a split whole.

    ``splits``: ``{"train": (n_rows, blocks, labelled), "test": ...}``, written
    in that order (train first); ``blocks`` yields ``(x_block, y_block)`` in
    row order (``y_block`` None when not ``labelled``). ``x`` is contiguous and
    uncompressed (memory-mapped on open), as ``write_dataset`` writes it.
    ``checksum``: a string, or a callable called once every block is written
    (for a digest of the data itself). Written to a temporary name, then renamed.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.float32):
        raise NumbaconcError(f"{source}: dtype {dtype} not supported (uint8 or float32)")
    scale = 1.0 / 255.0 if dtype == np.uint8 else 1.0
    out = Path(out)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for split in ("train", "test"):
                n_rows, blocks, labelled = splits[split]
                group = f.create_group(split)
                x = group.create_dataset("x", shape=(int(n_rows), int(n_features)), dtype=dtype)
                y = group.create_dataset("y", shape=(int(n_rows),), dtype=np.int64) if labelled else None
                start = 0
                for x_block, y_block in blocks:
                    stop = start + len(x_block)
                    if stop > n_rows or x_block.shape[1:] != (n_features,) or x_block.dtype != dtype:
                        raise NumbaconcError(f"{source}: {split} block of shape {x_block.shape} "
                                             f"{x_block.dtype} at row {start} does not fit "
                                             f"({n_rows}, {n_features}) {dtype}")
                    x[start:stop] = x_block
                    if y is not None:
                        y[start:stop] = y_block
                    start = stop
                if start != n_rows:
                    raise NumbaconcError(f"{source}: {split} got {start} rows, expected {n_rows}")
            f.attrs.update(
                name=name, image_shape=np.asarray(image_shape, dtype=np.int64), scale=scale,
                checksum=checksum() if callable(checksum) else checksum, source=str(source),
                format_version=FORMAT_VERSION,
            )
            f.attrs.update(extra_attrs or {})
    return out


# --------------------------------------------------------------- row views


class RowView:
    """Rows of a matrix (memmap, ndarray or h5py dataset) without a copy.

    ``RowView(x, rows)`` stands for ``x[rows]`` (rows: an index array, in
    its order, or a boolean mask; None: every row) and behaves as a light
    read-only array: ``shape``, ``dtype``, ``ndim``, ``len``, and indexing,
    where a slice of view rows returns one C-contiguous block read from the
    file then (a memmap gather, or chunk-aligned h5py reads of the span), an
    integer array returns those rows, and ``np.asarray(view)`` materialises
    the whole subset (for the stages that need a dense array). Block-reading
    code written for arrays (``X[a:b]`` in a loop) works on it unchanged and
    reads each row once per pass.
    """

    def __init__(self, matrix, rows=None):
        if isinstance(matrix, RowView):
            rows = matrix._resolve(rows)
            matrix = matrix.matrix
        self.matrix = matrix
        n = int(matrix.shape[0])
        if rows is None:
            self.rows = None
        else:
            rows = np.asarray(rows)
            if rows.dtype == np.bool_:
                if rows.shape != (n,):
                    raise NumbaconcError(f"row mask has shape {rows.shape}, expected ({n},)")
                rows = np.flatnonzero(rows)
            if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
                raise NumbaconcError(f"rows must be a 1-D integer index array, got {rows.dtype} {rows.shape}")
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise NumbaconcError(f"row index out of range [0, {n})")
            self.rows = rows
        self.shape = (n if self.rows is None else len(self.rows),) + tuple(matrix.shape[1:])
        self.dtype = np.dtype(matrix.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def _resolve(self, rows):
        """Matrix rows of view rows ``rows`` (None: all of this view)."""
        if rows is None:
            return self.rows
        rows = np.asarray(rows)
        if rows.dtype == np.bool_:
            rows = np.flatnonzero(rows)
        return rows if self.rows is None else self.rows[rows]

    def __getitem__(self, key):
        if key is Ellipsis:
            return self[0:self.shape[0]]
        if isinstance(key, tuple):
            head, rest = key[0], key[1:]
            if isinstance(head, (int, np.integer)):
                return self[head][rest]
            return self[head][(slice(None),) + rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self._gather(np.arange(start, stop, step))
            if self.rows is None:
                return np.ascontiguousarray(self.matrix[start:stop])
            return self._gather_matrix(self.rows[start:stop])
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += self.shape[0]
            return self._gather(np.array([i]))[0]
        return self._gather(np.asarray(key))

    def _gather(self, view_rows) -> np.ndarray:
        view_rows = np.asarray(view_rows)
        if view_rows.dtype == np.bool_:
            view_rows = np.flatnonzero(view_rows)
        matrix_rows = view_rows if self.rows is None else self.rows[view_rows]
        return self._gather_matrix(matrix_rows)

    def _gather_matrix(self, matrix_rows) -> np.ndarray:
        matrix_rows = np.asarray(matrix_rows, dtype=np.int64)
        if isinstance(self.matrix, np.ndarray):
            return np.ascontiguousarray(self.matrix[matrix_rows])
        return _read_rows_h5(self.matrix, matrix_rows)

    def __array__(self, dtype=None, copy=None):
        whole = self[0:self.shape[0]]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def take(self, index) -> np.ndarray:
        return self._gather(np.asarray(index, dtype=np.int64))

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        """The whole subset, materialised, as ``dtype``."""
        return np.asarray(self).astype(dtype, copy=copy)

    def block_rows(self, bytes_per_row: float | None = None, share: float = 0.125) -> int:
        """Rows per block: ``share`` of the memory budget at ``bytes_per_row``
        (default: one stored row plus a float64 copy of it)."""
        from .budget import rows_for

        if bytes_per_row is None:
            d = int(np.prod(self.shape[1:]))
            bytes_per_row = d * (self.dtype.itemsize + 8)
        return rows_for(bytes_per_row, share, minimum=64)

    def blocks(self, block_rows: int | None = None, *, bytes_per_row: float | None = None,
               share: float = 0.125):
        """Yield (start, stop, C-contiguous block) over the view's rows, in order."""
        size = int(block_rows) if block_rows else self.block_rows(bytes_per_row, share)
        n = self.shape[0]
        for start in range(0, n, size):
            stop = min(n, start + size)
            yield start, stop, self[start:stop]


_H5_PIECE_BYTES = 16 << 20  # at most this much of a row span is read at once


def _read_rows_h5(ds, rows: np.ndarray) -> np.ndarray:
    """``ds[rows]`` for an h5py dataset: the span of the (any-order) rows is
    read in chunk-aligned slabs of at most ``_H5_PIECE_BYTES``, and only the
    wanted rows are kept (h5py's own fancy indexing is a slow point selection)."""
    out = np.empty((len(rows),) + tuple(ds.shape[1:]), dtype=ds.dtype)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    row_bytes = max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize)
    chunk = ds.chunks[0] if ds.chunks else 1
    piece = max(chunk, (_H5_PIECE_BYTES // row_bytes) // chunk * chunk)
    i = 0
    while i < len(sorted_rows):
        lo = int(sorted_rows[i]) // chunk * chunk
        hi = min(int(ds.shape[0]), lo + piece)
        j = int(np.searchsorted(sorted_rows, hi, side="left"))
        slab = ds[lo:hi]
        out[order[i:j]] = slab[sorted_rows[i:j] - lo]
        i = j
    return out
