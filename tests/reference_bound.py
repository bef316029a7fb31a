"""Slow, obvious references for the lower bound: cdist thresholding, networkx
matchings, the LP with HiGHS on a dense constraint list, brute-force triangles."""

import itertools

import networkx as nx
import numpy as np
from scipy.optimize import linprog
from scipy.spatial.distance import cdist


def conflict_pairs(X, y, metric, limit):
    """Sorted pairs i < j of different labels with distance <= limit (storage
    units; l2: squared when ``squared``) from scipy's cdist."""
    W = np.asarray(X, dtype=np.float64)
    if metric == "l2":
        D = cdist(W, W, "sqeuclidean")
    else:
        D = cdist(W, W, "chebyshev")
    mask = np.triu((D <= limit) & (y[:, None] != y[None, :]), 1)
    return np.argwhere(mask)


def double_cover_matching(n, pairs):
    """Maximum matching size of the bipartite double cover (networkx Hopcroft-Karp)."""
    G = nx.Graph()
    G.add_nodes_from((("L", i) for i in range(n)))
    G.add_nodes_from((("R", i) for i in range(n)))
    for u, v in pairs:
        G.add_edge(("L", int(u)), ("R", int(v)))
        G.add_edge(("L", int(v)), ("R", int(u)))
    top = [("L", i) for i in range(n)]
    return len(nx.bipartite.hopcroft_karp_matching(G, top_nodes=top)) // 2


def matching_size(n, pairs):
    """Maximum cardinality matching of the graph (networkx, any graph)."""
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from((int(u), int(v)) for u, v in pairs)
    return len(nx.max_weight_matching(G, maxcardinality=True))


def lp_value(n, constraints):
    """max sum q s.t. sum_{v in c} q_v <= 1 per constraint, 0 <= q <= 1 (HiGHS, dense)."""
    if len(constraints) == 0:
        return float(n)
    A = np.zeros((len(constraints), n))
    for r, c in enumerate(constraints):
        A[r, list(c)] = 1.0
    res = linprog(-np.ones(n), A_ub=A, b_ub=np.ones(len(constraints)), bounds=(0, 1), method="highs")
    assert res.status == 0
    return -res.fun


def triangles(n, pairs):
    """Sorted triangles u < v < w of the graph, by brute force."""
    adj = set(map(tuple, np.asarray(pairs).tolist()))
    nodes = sorted({int(a) for p in pairs for a in p})
    out = [t for t in itertools.combinations(nodes, 3)
           if (t[0], t[1]) in adj and (t[0], t[2]) in adj and (t[1], t[2]) in adj]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def enclosing_radius(a, b, c):
    """Radius of the minimum enclosing ball of three points (float64)."""
    pts = np.array([a, b, c], dtype=np.float64)
    best = np.inf
    for i, j in itertools.combinations(range(3), 2):  # a ball on a side as diameter
        centre = (pts[i] + pts[j]) / 2
        r = np.linalg.norm(pts[i] - centre)
        if all(np.linalg.norm(p - centre) <= r * (1 + 1e-12) for p in pts):
            best = min(best, r)
    if np.isfinite(best):
        return best
    # circumcentre in the plane of the triangle: centre = a + s (b - a) + t (c - a)
    u, v = pts[1] - pts[0], pts[2] - pts[0]
    M = np.array([[u @ u, u @ v], [u @ v, v @ v]])
    s, t = np.linalg.solve(M, 0.5 * np.array([u @ u, v @ v]))
    return float(np.linalg.norm(s * u + t * v))
