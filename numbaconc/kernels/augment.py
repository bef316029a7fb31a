"""Image deformation kernels for the dataset generator (numbaconc.augment).

Each image is computed by the same fixed loops whatever the batch size or
thread count, so a generated file depends on its seed alone. fastmath is off:
the output is rounded to pixel levels, and reassociated sums could move a
value across a rounding boundary from one build to another.
"""

import numpy as np
from numba import prange

from ._jit import jit_parallel


@jit_parallel(fastmath=False)
def smooth_fields(noise, kernel, tmp, out):
    """Separable correlation of each (h, w) plane of noise (b, 2, h, w) with
    ``kernel`` (odd length, centred), zero outside the image (scipy.ndimage
    ``correlate1d`` with mode "constant"); rows first, then columns."""
    b, m, h, w = noise.shape
    r = kernel.shape[0] // 2
    for i in prange(b):
        for f in range(m):
            for y in range(h):
                for x in range(w):
                    acc = 0.0
                    for t in range(max(-r, -x), min(r, w - 1 - x) + 1):
                        acc += kernel[t + r] * noise[i, f, y, x + t]
                    tmp[i, f, y, x] = acc
            # columns: taps outermost, so the inner loop runs along a row
            for y in range(h):
                for x in range(w):
                    out[i, f, y, x] = 0.0
                for t in range(max(-r, -y), min(r, h - 1 - y) + 1):
                    k = kernel[t + r]
                    for x in range(w):
                        out[i, f, y, x] += k * tmp[i, f, y + t, x]


@jit_parallel(fastmath=False)
def warp_bilinear(images, angle, shift_r, shift_c, field, step, alpha, nearest, lo, hi, integer,
                  out):
    """out[i, y, x, :] = images[i] sampled bilinearly at
    R(angle[i]) (y - cy, x - cx) + (cy, cx) + shift + alpha * F_i(y, x),

    F_i the coarse field (b, 2, g, g), control points every ``step`` pixels
    ((g - 1) * step >= h - 1 and w - 1), interpolated bilinearly.

    images, out: (b, h, w, c); outside the image a sample is 0 (``nearest``
    False) or the nearest edge pixel. Values are clipped to [lo, hi] and, for
    ``integer`` (uint8 ``out``), rounded half to even.
    """
    b, h, w, c = images.shape
    g = field.shape[2]
    cy = (h - 1) / 2.0
    cx = (w - 1) / 2.0
    for i in prange(b):
        cos = np.cos(angle[i])
        sin = np.sin(angle[i])
        for y in range(h):
            for x in range(w):
                gy = y / step
                gx = x / step
                gy0 = min(np.int64(gy), g - 2)
                gx0 = min(np.int64(gx), g - 2)
                ty = gy - gy0
                tx = gx - gx0
                disp_r = ((1.0 - ty) * ((1.0 - tx) * field[i, 0, gy0, gx0] + tx * field[i, 0, gy0, gx0 + 1])
                          + ty * ((1.0 - tx) * field[i, 0, gy0 + 1, gx0] + tx * field[i, 0, gy0 + 1, gx0 + 1]))
                disp_c = ((1.0 - ty) * ((1.0 - tx) * field[i, 1, gy0, gx0] + tx * field[i, 1, gy0, gx0 + 1])
                          + ty * ((1.0 - tx) * field[i, 1, gy0 + 1, gx0] + tx * field[i, 1, gy0 + 1, gx0 + 1]))
                dy = y - cy
                dx = x - cx
                sy = cos * dy - sin * dx + cy + shift_r[i] + alpha * disp_r
                sx = sin * dy + cos * dx + cx + shift_c[i] + alpha * disp_c
                y0 = np.int64(np.floor(sy))
                x0 = np.int64(np.floor(sx))
                fy = sy - y0
                fx = sx - x0
                for ch in range(c):
                    acc = 0.0
                    for a in range(2):
                        yy = y0 + a
                        wy = fy if a == 1 else 1.0 - fy
                        if nearest:
                            yy = min(max(yy, 0), h - 1)
                        for e in range(2):
                            xx = x0 + e
                            wx = fx if e == 1 else 1.0 - fx
                            if nearest:
                                xx = min(max(xx, 0), w - 1)
                            if 0 <= yy < h and 0 <= xx < w:
                                acc += wy * wx * np.float64(images[i, yy, xx, ch])
                    acc = min(max(acc, lo), hi)
                    if integer:
                        acc = np.rint(acc)
                    out[i, y, x, ch] = acc
