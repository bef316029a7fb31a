"""Slow, obviously correct kNN references for tests/test_knn.py (scipy cdist)."""

import numpy as np
from scipy.spatial.distance import cdist

SCIPY_METRIC = {"l1": "cityblock", "l2": "euclidean", "linf": "chebyshev"}


def brute_knn(base, k, metric, queries=None, include_self=True):
    """(indices, distances) sorted by (distance, index), computed in float64."""
    base = np.asarray(base, dtype=np.float64)
    all_pairs = queries is None
    q = base if all_pairs else np.asarray(queries, dtype=np.float64)
    dist = cdist(q, base, SCIPY_METRIC[metric])
    if all_pairs and not include_self:
        np.fill_diagonal(dist, np.inf)  # exclude index i only, duplicates stay
    index = np.broadcast_to(np.arange(base.shape[0]), dist.shape)
    order = np.lexsort((index, dist), axis=1)[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


def assert_knn_equal_tie_aware(indices, distances, base, metric, ref_idx, ref_dist,
                               queries=None, rtol=1e-9):
    """For float data: same distances (tolerance); our indices really are at the
    distances we report; every neighbour strictly closer than the k-th is found."""
    base = np.asarray(base, dtype=np.float64)
    q = base if queries is None else np.asarray(queries, dtype=np.float64)
    np.testing.assert_allclose(distances, ref_dist, rtol=rtol, atol=1e-12)
    for i in range(len(indices)):
        own = cdist(q[i:i + 1], base[indices[i]], SCIPY_METRIC[metric])[0]
        np.testing.assert_allclose(own, distances[i], rtol=rtol, atol=1e-12)
        assert len(set(indices[i].tolist())) == len(indices[i])
        kth = ref_dist[i, -1]
        sure = set(ref_idx[i][ref_dist[i] < kth * (1 - 1e-7) - 1e-12].tolist())
        assert sure <= set(indices[i].tolist())
