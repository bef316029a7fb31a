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
import os
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from .errors import NumbaconcError

FORMAT_VERSION = 1
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
    ``~/.cache/numbaconc``.
    """
    env = os.environ.get("NUMBACONC_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "numbaconc"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bundled_source(name: str) -> Path:
    """Folder of the IDX files shipped with the package (``data/`` in the repo)."""
    root = Path(str(resources.files("numbaconc_data")))
    folder = root / name
    if not folder.is_dir():
        raise NumbaconcError(f"bundled dataset {name!r} not found under {root}")
    return folder


@contextmanager
def atomic_path(out: Path | str):
    """Yield a temporary path beside ``out``; rename it to ``out`` on success.

    On any error the temporary file is removed, so a failed or interrupted
    write never leaves a half-written output under the final name.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    """Read one gzip IDX file (uint8 payload), checking header and size."""
    path = Path(path)
    if not path.is_file():
        raise NumbaconcError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise NumbaconcError(f"{path}: not a readable gzip file ({exc})") from None
    if len(raw) < 8:
        raise NumbaconcError(f"{path}: truncated IDX header")
    magic = struct.unpack(">i", raw[:4])[0]
    if magic != expect_magic:
        raise NumbaconcError(f"{path}: wrong IDX magic number {magic} (expected {expect_magic})")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise NumbaconcError(f"{path}: IDX payload is not unsigned bytes")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise NumbaconcError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header < size:
        raise NumbaconcError(f"{path}: truncated: {len(raw) - header} payload bytes, expected {size}")
    if len(raw) - header > size:
        raise NumbaconcError(f"{path}: {len(raw) - header - size} unexpected trailing bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


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
    if x.dtype == np.uint8:
        return x.reshape(len(x), -1)
    if not np.issubdtype(x.dtype, np.floating):
        raise NumbaconcError(f"{where}: dtype {x.dtype} not supported (uint8 or float in [0, 1])")
    flat = x.reshape(len(x), -1)
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
                  image_shape=None, checksum, source, bounded=True, extra_attrs=None):
    """Write the standard layout atomically (temporary name, then rename).

    ``bounded=False`` accepts float data outside [0, 1] (synthetic Gaussians);
    ``extra_attrs`` are stored as file attributes (e.g. the true covariance).
    """
    train_x = _check_images(np.asarray(train_x), f"{source}: train x", bounded)
    test_x = _check_images(np.asarray(test_x), f"{source}: test x", bounded)
    if train_x.shape[1] != test_x.shape[1]:
        raise NumbaconcError(f"{source}: train has {train_x.shape[1]} features, test {test_x.shape[1]}")
    if train_x.dtype != test_x.dtype:
        raise NumbaconcError(f"{source}: train is {train_x.dtype} but test is {test_x.dtype}")
    if len(train_x) == 0:
        raise NumbaconcError(f"{source}: the training set is empty")
    train_y = _check_labels(train_y, len(train_x), f"{source}: train y")
    test_y = _check_labels(test_y, len(test_x), f"{source}: test y")
    if image_shape is None:
        image_shape = (train_x.shape[1],)
    scale = 1.0 / 255.0 if train_x.dtype == np.uint8 else 1.0
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
            )
            f.attrs.update(extra_attrs or {})
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
        if len(shape) == 1:
            shape = (shape[0],)
        return write_dataset(out, name=name or (kind if kind == "cifar10" else src.stem),
                             train_x=arrays["x_train"], train_y=arrays.get("y_train"),
                             test_x=arrays["x_test"], test_y=arrays.get("y_test"),
                             image_shape=shape, checksum=file_sha256([src]), source=src)
    # npy: one unlabeled array, split by a seeded fraction
    if not 0.0 < test_fraction < 1.0:
        raise NumbaconcError(f"test fraction must be in (0, 1), got {test_fraction}")
    try:
        x = np.load(src, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NumbaconcError(f"{src}: not a readable .npy file ({exc})") from None
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
        npz = np.load(src, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NumbaconcError(f"{src}: not a readable .npz file ({exc})") from None
    with npz:
        keys = set(npz.files)
        need = {"x_train", "x_test"} | ({"y_train", "y_test"} if require_labels else set())
        missing = sorted(need - keys)
        if missing:
            raise NumbaconcError(f"{src}: missing array(s) {', '.join(missing)}")
        return {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in keys}


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

    def take(self, index) -> np.ndarray:
        return take_rows(self.x, index)

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
    path: Path
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
        are keyed on, so a file edited in place never serves old results."""
        if self._digest is None:
            from .integrity import array_digest

            parts = [self.train.x, self.test.x]
            parts += [s.y for s in (self.train, self.test) if s.y is not None]
            self._digest = array_digest(*parts)
        return self._digest

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


def take_rows(x, index) -> np.ndarray:
    """``x[index]`` for an ndarray or an h5py dataset (which needs sorted indices)."""
    index = np.asarray(index, dtype=np.int64)
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x[index])
    order = np.argsort(index, kind="stable")
    uniq, inverse = np.unique(index[order], return_inverse=True)
    block = x[uniq]
    out = np.empty((len(index),) + block.shape[1:], dtype=block.dtype)
    out[order] = block[inverse]
    return out


def _memmap_or_dataset(path: Path, ds: h5py.Dataset):
    offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
    if offset is None or ds.dtype.byteorder not in ("=", "|", "<"):
        return ds
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
            if ds.ndim != 2:
                raise NumbaconcError(f"{path}: /{split}/x must be 2-D (n, d), got shape {ds.shape}")
            if ds.dtype not in (np.uint8, np.float32):
                raise NumbaconcError(f"{path}: /{split}/x has dtype {ds.dtype} (uint8 or float32)")
            y = np.asarray(f[f"{split}/y"][...]) if f"{split}/y" in f else None
            splits[split] = Split(split, _memmap_or_dataset(path, ds), y)
        if splits["train"].n_features != splits["test"].n_features:
            raise NumbaconcError(f"{path}: train and test differ in number of features")
        attrs = f.attrs
        dtype = splits["train"].dtype
        default_scale = 1.0 / 255.0 if dtype == np.uint8 else 1.0
        shape = tuple(int(s) for s in attrs.get("image_shape", (splits["train"].n_features,)))
        return Dataset(
            path=path, name=str(attrs.get("name", path.stem)), image_shape=shape,
            scale=float(attrs.get("scale", default_scale)),
            checksum=str(attrs.get("checksum", "")) or _content_checksum(splits),
            train=splits["train"], test=splits["test"], _file=f,
        )
    except BaseException:
        f.close()
        raise


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
    if not out.exists():
        import_dataset(name, src, out)
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
