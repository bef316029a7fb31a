"""Digests that tie a cache entry to the exact bytes it describes.

``array_digest`` hashes dtype, shape and content of arrays (ndarrays,
memmaps or h5py datasets, read in blocks so memory stays bounded). A cache
stores the digest of what it wrote and is served only when the digest of
what it reads back matches.
"""

from __future__ import annotations

import hashlib

import numpy as np

_BLOCK_BYTES = 16 << 20


def array_digest(*arrays, after_block=None) -> str:
    """SHA-256 over (dtype, shape, C-order bytes) of each array, in order.
    ``after_block(array, start, stop)``: called once each block of rows is
    hashed (e.g. to release a memmap's pages as the pass goes)."""
    digest = hashlib.sha256()
    for array in arrays:
        shape = tuple(int(s) for s in array.shape)
        dtype = np.dtype(array.dtype)
        digest.update(f"{dtype.str}{shape}".encode())
        if not shape or 0 in shape:
            continue
        row_bytes = max(1, dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64)))
        step = max(1, _BLOCK_BYTES // row_bytes)
        for start in range(0, shape[0], step):
            block = np.ascontiguousarray(array[start:start + step])
            digest.update(memoryview(block).cast("B"))
            if after_block is not None:
                del block
                after_block(array, start, start + step)
    return digest.hexdigest()
