"""The dataset generator: kernels against scipy.ndimage, determinism for a seed
whatever the block size, labels, colour images, the CLI."""

import h5py
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from numbaconc import budget
from numbaconc.augment import GROUP, Deformer, gaussian_kernel, make_augmented
from numbaconc.datasets import open_dataset, write_dataset
from numbaconc.errors import NumbaconcError
from numbaconc.kernels import augment as _k
from numbaconc_cli.main import app


def test_smooth_fields_matches_scipy_correlate1d():
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (5, 2, 9, 7))
    kernel = gaussian_kernel(1.3, 3.0)
    out = np.empty_like(noise)
    _k.smooth_fields(noise, kernel, np.empty_like(noise), out)
    ref = ndimage.correlate1d(noise, kernel, axis=3, mode="constant")
    ref = ndimage.correlate1d(ref, kernel, axis=2, mode="constant")
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(kernel, ndimage._filters._gaussian_kernel1d(1.3, 0, len(kernel) // 2)[::-1])


@pytest.mark.parametrize("nearest", [False, True])
def test_warp_matches_scipy_map_coordinates(nearest):
    rng = np.random.default_rng(1)
    b, h, w, c, g, step = 4, 10, 12, 3, 4, 4.0
    images = rng.integers(0, 256, (b, h, w, c)).astype(np.uint8)
    images[0, :, :, :] = 255  # saturated image, and a black one
    images[1] = 0
    angle = rng.uniform(-0.3, 0.3, b)
    shift_r, shift_c = rng.uniform(-3, 3, b), rng.uniform(-3, 3, b)
    field = rng.uniform(-1, 1, (b, 2, g, g))
    alpha = 2.5
    out = np.empty((b, h, w, c), dtype=np.float64)
    _k.warp_bilinear(images, angle, shift_r, shift_c, field, step, alpha, nearest, -np.inf, np.inf,
                     False, out)
    # the same coordinates in numpy, then scipy's order-1 interpolation
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    for i in range(b):
        disp = [ndimage.map_coordinates(field[i, f], [yy / step, xx / step], order=1, mode="nearest")
                for f in range(2)]
        sy = np.cos(angle[i]) * (yy - cy) - np.sin(angle[i]) * (xx - cx) + cy + shift_r[i] + alpha * disp[0]
        sx = np.sin(angle[i]) * (yy - cy) + np.cos(angle[i]) * (xx - cx) + cx + shift_c[i] + alpha * disp[1]
        for ch in range(c):
            ref = ndimage.map_coordinates(images[i, :, :, ch].astype(np.float64), [sy, sx], order=1,
                                          mode="nearest" if nearest else "grid-constant", cval=0.0)
            np.testing.assert_allclose(out[i, :, :, ch], ref, rtol=0, atol=1e-9)
    # rounding and clipping of the uint8 path
    out8 = np.empty((b, h, w, c), dtype=np.uint8)
    _k.warp_bilinear(images, angle, shift_r, shift_c, field, step, alpha, nearest, 0.0, 255.0, True, out8)
    np.testing.assert_array_equal(out8, np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _tiny_source(tmp_path, shape=(12, 12), n=40, m=10, dtype=np.uint8):
    rng = np.random.default_rng(3)
    d = int(np.prod(shape))
    if dtype == np.uint8:
        x, t = rng.integers(0, 256, (n, d)).astype(np.uint8), rng.integers(0, 256, (m, d)).astype(np.uint8)
    else:
        x, t = rng.random((n, d), dtype=np.float32), rng.random((m, d), dtype=np.float32)
    path = tmp_path / "src.h5"
    write_dataset(path, name="src", train_x=x, train_y=np.arange(n) % 7, test_x=t,
                  test_y=np.arange(m) % 5, image_shape=shape, checksum="src-v1", source="tests")
    return path, x, t


def test_output_depends_on_the_seed_only(tmp_path):
    src, x, t = _tiny_source(tmp_path)
    n = 3 * GROUP + 17
    a = make_augmented(src, tmp_path / "a.h5", n=n, n_test=GROUP + 5, seed=4, block_rows=GROUP)
    b = make_augmented(src, tmp_path / "b.h5", n=n, n_test=GROUP + 5, seed=4, block_rows=333)
    with budget.budget("64M"):
        c = make_augmented(src, tmp_path / "c.h5", n=n, n_test=GROUP + 5, seed=4)
    other = make_augmented(src, tmp_path / "o.h5", n=n, n_test=GROUP + 5, seed=5, block_rows=GROUP)
    with open_dataset(a) as A, open_dataset(b) as B, open_dataset(c) as C, open_dataset(other) as O:
        assert isinstance(A.train.x, np.memmap) and A.train.x.shape == (n, 144)
        assert A.test.x.shape == (GROUP + 5, 144) and A.train.dtype == np.uint8
        for split in ("train", "test"):
            np.testing.assert_array_equal(A.split(split).array(), B.split(split).array())
            np.testing.assert_array_equal(A.split(split).array(), C.split(split).array())
            assert (A.split(split).array() != O.split(split).array()).mean() > 0.3
        np.testing.assert_array_equal(A.train.y, np.arange(n) % 40 % 7)  # labels follow the source
        np.testing.assert_array_equal(A.test.y, np.arange(GROUP + 5) % 10 % 5)
        assert A.checksum == B.checksum != O.checksum
        assert A.image_shape == (12, 12) and A.scale == pytest.approx(1 / 255)
        # a deformation, not a copy, yet close to its source image
        diff = np.abs(A.train.array()[:40].astype(int) - x.astype(int)).mean()
        assert 0 < diff < 128


def test_colour_and_float_sources(tmp_path):
    src, x, _ = _tiny_source(tmp_path, shape=(10, 10, 3), dtype=np.float32)
    out = make_augmented(src, tmp_path / "c.h5", n=50, seed=0, block_rows=7)
    with open_dataset(out) as ds:
        X = ds.train.array()
        assert X.dtype == np.float32 and X.shape == (50, 300) and ds.test.n_samples == 10
        assert X.min() >= 0.0 and X.max() <= 1.0
    # one field for every channel: three equal channels stay equal
    grey = np.repeat(x.reshape(40, 100, 3)[:, :, :1], 3, axis=2).reshape(40, 300)
    d = Deformer((10, 10, 3), 0, 0, np.float32)
    moved = d(grey, 0).reshape(40, 100, 3)
    np.testing.assert_array_equal(moved[:, :, 0], moved[:, :, 2])


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(NumbaconcError, match="import it first"):
        make_augmented("fashion-mnist", tmp_path / "x.h5", n=10)
    flat = tmp_path / "flat.h5"
    write_dataset(flat, name="flat", train_x=np.zeros((5, 7), np.uint8), test_x=np.zeros((2, 7), np.uint8),
                  checksum="f", source="tests")
    with pytest.raises(NumbaconcError, match="needs images"):
        make_augmented(flat, tmp_path / "x.h5", n=10)
    with pytest.raises(NumbaconcError, match="positive integer"):
        make_augmented(flat, tmp_path / "x.h5", n=0)
    assert not (tmp_path / "x.h5").exists()


def test_cli_synth_augment(tmp_path):
    src, _, _ = _tiny_source(tmp_path)
    runner = CliRunner()
    out = tmp_path / "aug.h5"
    result = runner.invoke(app, ["data", "synth", "augment", str(src), "--n", "300", "--n-test", "20",
                                 "-o", str(out), "--seed", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "300 x 144" in result.output and "20 x 144" in result.output
    with h5py.File(out, "r") as f:
        assert f["train/x"].chunks is None and f["train/x"].compression is None
        assert f.attrs["kind"] == "augment"
    bad = runner.invoke(app, ["data", "synth", "augment", "-o", str(out)], catch_exceptions=False)
    assert bad.exit_code == 1 and bad.output.startswith("error:")


def test_real_mnist_source():
    """The bundled MNIST: digits stay digit-like (most ink near the source's)."""
    with open_dataset("mnist") as ds:
        src = ds.train.rows(0, 64)
    moved = Deformer((28, 28), 0, 0, np.uint8)(src, 0)
    assert moved.shape == src.shape and moved.dtype == np.uint8
    ink_src, ink = (src > 127).sum(1), (moved > 127).sum(1)
    assert np.all(np.abs(ink - ink_src) < 0.6 * ink_src + 10)
    assert (moved != src).any(1).all()
