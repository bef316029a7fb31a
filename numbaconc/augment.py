"""Datasets larger than memory, made from a small one: seeded deformations of images.

An infiMNIST-style generator (Loosli, Canu, Bottou 2007; the elastic field of
Simard, Steinkraus, Platt 2003): output row i of a split is source image
i mod n_source of the same split, moved by one random smooth displacement
field made of

- a rotation by up to ``MAX_ROTATION_DEG`` degrees about the image centre,
- a translation by up to ``MAX_SHIFT`` pixels in each direction,
- an elastic field: uniform noise in [-1, 1] per direction on a grid of
  control points every ``FIELD_STEP`` pixels, smoothed by a Gaussian of
  ``ELASTIC_SIGMA`` pixels, scaled by ``ELASTIC_ALPHA`` pixels and
  interpolated bilinearly between the control points (lengths scale with
  the image side / 28). Simard et al. smooth noise drawn at every pixel;
  the coarse grid gives the same kind of smooth field at a twelfth of the
  random draws and smoothing work (the generator's cost, measured on this
  machine's shared cores, fell from about 150 to about 20 us per image),

resampled bilinearly (as ``scipy.ndimage.map_coordinates`` with order 1; the
kernels are numbaconc.kernels.augment, checked against scipy.ndimage; outside the image:
black for grey images, the nearest edge pixel for colour ones), rounded and
clipped back to the source's dtype. Colour channels share one field. Labels
follow their source image.

Randomness: the images of row group g (rows g*GROUP .. g*GROUP + GROUP - 1)
of a split draw their parameters from ``np.random.default_rng([seed,
split_id, g])`` (train 0, test 1), so the output depends on the seed alone,
never on the block size or the memory budget. Blocks are written as they are
made (``datasets.write_dataset_blocks``): memory holds one block, sized by
``budget.rows_for``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import shutil
from pathlib import Path

import numpy as np

from . import budget
from .datasets import Dataset, RowView, open_dataset, write_dataset_blocks
from .errors import NumbaconcError
from .kernels import augment as _k

GROUP = 256               # rows per seeded generator
MAX_ROTATION_DEG = 10.0
MAX_SHIFT = 2.0           # pixels, for a 28-pixel side
ELASTIC_ALPHA = 34.0      # pixels, for a 28-pixel side (Simard et al.)
ELASTIC_SIGMA = 4.0       # pixels, for a 28-pixel side
FIELD_STEP = 4.0          # pixels between control points of the field, for a 28-pixel side
TRUNCATE = 3.0            # Gaussian kernel radius in sigmas
NEEDS_IMPORT = {"fashion-mnist": "fashion-mnist DIR", "cifar10": "cifar10 FILE.npz"}
SPLIT_IDS = {"train": 0, "test": 1}


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise NumbaconcError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def open_source(source) -> Dataset:
    """A bundled name (``mnist``) or an imported HDF5 file; ``fashion-mnist``
    and ``cifar10`` must be imported first (the error says how)."""
    text = str(source)
    if text in NEEDS_IMPORT and not Path(text).is_file():
        raise NumbaconcError(
            f"{text}: import it first (numbaconc data import {NEEDS_IMPORT[text]} -o {text}.h5) "
            f"and pass the .h5 file")
    return open_dataset(source)


def _image_shape(ds: Dataset) -> tuple:
    shape = tuple(int(s) for s in ds.image_shape)
    d = ds.train.n_features
    grey = len(shape) == 2
    colour = len(shape) == 3 and shape[2] in (1, 3, 4)
    if not (grey or colour) or int(np.prod(shape)) != d:
        raise NumbaconcError(f"{ds.path}: augment needs images (H, W) or (H, W, C), "
                             f"this dataset's image shape is {shape} for {d} features")
    return shape


def gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (same radius)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


class Deformer:
    """The random deformation of one split's images (see the module docstring)."""

    def __init__(self, image_shape, seed: int, split_id: int, dtype):
        self.shape = tuple(image_shape)
        self.seed, self.split_id = int(seed), int(split_id)
        self.dtype = np.dtype(dtype)
        h, w = self.shape[:2]
        unit = min(h, w) / 28.0
        self.sigma = ELASTIC_SIGMA * unit
        self.alpha = ELASTIC_ALPHA * unit
        self.max_shift = MAX_SHIFT * unit
        self.max_angle = math.radians(MAX_ROTATION_DEG)
        self.colour = len(self.shape) == 3
        self.step = FIELD_STEP * unit
        self.grid = int(math.ceil((max(h, w) - 1) / self.step)) + 1
        self.n_draws = 3 + 2 * self.grid ** 2    # angle, two shifts, the noise field
        # on the grid the Gaussian has sigma / step; white noise smoothed on a grid
        # `step` times coarser is `step` times larger: alpha / step keeps the amplitude
        self.kernel = gaussian_kernel(self.sigma / self.step, TRUNCATE)
        self.field_alpha = self.alpha / self.step

    def _draws(self, start: int, stop: int) -> np.ndarray:
        """Uniform [0, 1) draws of rows [start, stop): whole groups, then sliced."""
        first, last = start // GROUP, (stop - 1) // GROUP
        groups = [np.random.default_rng([self.seed, self.split_id, g]).random((GROUP, self.n_draws))
                  for g in range(first, last + 1)]
        draws = groups[0] if len(groups) == 1 else np.concatenate(groups)
        return draws[start - first * GROUP: stop - first * GROUP]

    def __call__(self, images: np.ndarray, start: int) -> np.ndarray:
        """Deform ``images`` (b, d), output rows start .. start + b - 1 of the split."""
        b = len(images)
        h, w = self.shape[:2]
        u = self._draws(start, start + b)
        angle = (2.0 * u[:, 0] - 1.0) * self.max_angle
        shift_r = (2.0 * u[:, 1] - 1.0) * self.max_shift
        shift_c = (2.0 * u[:, 2] - 1.0) * self.max_shift
        noise = np.ascontiguousarray(2.0 * u[:, 3:] - 1.0).reshape(b, 2, self.grid, self.grid)
        field = np.empty_like(noise)
        _k.smooth_fields(noise, self.kernel, np.empty_like(noise), field)
        shaped = np.ascontiguousarray(images).reshape((b, h, w, -1))
        out = np.empty(shaped.shape, dtype=self.dtype)
        hi = 255.0 if self.dtype == np.uint8 else 1.0
        _k.warp_bilinear(shaped, angle, shift_r, shift_c, field, self.step, self.field_alpha,
                         self.colour,
                         0.0, hi, self.dtype == np.uint8, out)
        return out.reshape(b, -1)


def bytes_per_row(n_features: int) -> int:
    """Working memory per generated row (float64 draws, field, coordinates, output)."""
    return 8 * n_features * 12


def augmented_blocks(split, n_rows: int, deformer: Deformer, block_rows: int, progress=None,
                     done_offset: int = 0, total: int | None = None):
    """Yield (x_block, y_block) of ``n_rows`` deformed rows of ``split``."""
    n_src = split.n_samples
    for start in range(0, n_rows, block_rows):
        stop = min(n_rows, start + block_rows)
        src = np.arange(start, stop, dtype=np.int64) % n_src
        x = deformer(RowView(split.x).take(src), start)
        y = split.y[src] if split.y is not None else None
        yield x, y
        if progress is not None:
            progress(done_offset + stop, total or n_rows)


def make_augmented(source, out, *, n: int, n_test: int | None = None, seed: int = 0,
                   block_rows: int | None = None, progress=None) -> Path:
    """Write ``n`` deformed training rows and ``n_test`` deformed test rows
    (default: the source's test size) of ``source`` to ``out``.

    ``block_rows`` (default from the memory budget) changes nothing in the
    output, only how much is held at once.
    """
    n = _check_count(n, "n")
    seed = int(seed)
    if seed < 0:
        raise NumbaconcError(f"seed must be >= 0, got {seed}")
    out = Path(out)
    with open_source(source) as ds:
        shape = _image_shape(ds)
        n_test = ds.test.n_samples if n_test is None else _check_count(n_test, "n_test")
        d, dtype = ds.train.n_features, ds.train.dtype
        if ds.test.n_samples < 1:
            raise NumbaconcError(f"{ds.path}: the test split is empty")
        need = (n + n_test) * d * dtype.itemsize
        out.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out.parent).free
        if need > free:
            raise NumbaconcError(f"{out.parent}: {need / 2**30:.1f} GiB needed, "
                                 f"{free / 2**30:.1f} GiB free")
        if block_rows is None:
            block_rows = budget.rows_for(bytes_per_row(d), 0.25, minimum=GROUP)
            block_rows = max(GROUP, block_rows // GROUP * GROUP)
        block_rows = _check_count(block_rows, "block_rows")
        total = n + n_test
        splits = {}
        for name, rows, offset in (("train", n, 0), ("test", n_test, n)):
            part = ds.split(name)
            deformer = Deformer(shape, seed, SPLIT_IDS[name], dtype)
            splits[name] = (rows, augmented_blocks(part, rows, deformer, block_rows, progress,
                                                   offset, total), part.y is not None)
        recipe = (f"synth:augment:source={ds.checksum}:n={n}:n_test={n_test}:seed={seed}"
                  f":rot={MAX_ROTATION_DEG}:shift={MAX_SHIFT}:alpha={ELASTIC_ALPHA}"
                  f":sigma={ELASTIC_SIGMA}:step={FIELD_STEP}:truncate={TRUNCATE}"
                  f":group={GROUP}")
        return write_dataset_blocks(
            out, name=f"{ds.name}-augment-{n}", n_features=d, dtype=dtype, splits=splits,
            image_shape=shape, source=f"augment:{ds.path}",
            checksum=hashlib.sha256(recipe.encode()).hexdigest(),
            extra_attrs=dict(kind="augment", recipe=recipe, seed=seed, source_name=ds.name),
        )
