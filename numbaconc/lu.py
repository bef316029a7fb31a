"""Label uncertainty (Zhang and Evans, ICLR 2022): a per-point weight that
restricts the error region to where human labels disagree.

LU(x) = 1 - (p_y(x) - max_{k != y} p_k(x)) in [0, 2], with p the CIFAR-10H
soft labels and y the dataset label. The constraint: the error region's
points have mean LU >= gamma (0.17 in their code). The greedy balls / cubes
enforce it per ball (the points a ball newly covers), so the union meets it
too; the half-space thresholds keep only regions that meet it.

Sums are compared in integers: each weight is floored to a multiple of
2**-30 and gamma is rounded up to one, so "sum(q) >= G * count" is exact and
order-free (both greedy paths agree), and it implies mean LU >= gamma in real
arithmetic. gamma = 0 gives G = 0: no constraint, the unconstrained greedy
exactly.

Two defects of the 2022 code (``concentration_lu_{ball,cube}.py``) that
numbaconc does not copy: its kNN asks sklearn for ``method='ball-tree'``
while the function tests for ``'ball_tree'``, so every run silently falls
through to a brute-force dense distance matrix; and when no candidate of a
ball meets gamma, the previous ball's centre, radius and index lists are
appended again (duplicated indices, so the reported risk and adversarial risk
count points twice). numbaconc stops the greedy instead and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import NumbaconcError

LU_SCALE = 2 ** 30   # weights are compared as integers floor(w * LU_SCALE)
LU_MAX = 2.0         # LU's range; any weight vector in [0, 2] works
GAMMA_2022 = 0.17    # their default threshold


def lu_weights(lu, n: int) -> np.ndarray:
    """int64 weights floor(lu * 2**30) of a validated LU vector of length n."""
    lu = check_lu(lu, n)
    return np.floor(lu * LU_SCALE).astype(np.int64)


def lu_threshold(gamma: float) -> int:
    """The integer threshold ceil(gamma * 2**30) (see the module docstring)."""
    gamma = check_gamma(gamma)
    return int(math.ceil(gamma * LU_SCALE))


def check_gamma(gamma) -> float:
    if not isinstance(gamma, (int, float, np.integer, np.floating)) or not math.isfinite(gamma) \
            or not 0.0 <= gamma <= LU_MAX:
        raise NumbaconcError(f"gamma must be a number in [0, {LU_MAX:g}], got {gamma!r}")
    return float(gamma)


def check_lu(lu, n: int, where: str = "the LU vector", split: str = "the split") -> np.ndarray:
    """A float64 copy of ``lu``: 1-D, length n, finite, in [0, 2]."""
    lu = np.asarray(lu)
    if lu.ndim != 1:
        raise NumbaconcError(f"{where} must be 1-D (one weight per point), got shape {lu.shape}")
    if len(lu) != n:
        raise NumbaconcError(f"{where} has {len(lu)} values but {split} has {n} points: "
                             "a weight vector must align with the split it weighs")
    if not (np.issubdtype(lu.dtype, np.floating) or np.issubdtype(lu.dtype, np.integer)):
        raise NumbaconcError(f"{where} must be numbers, got {lu.dtype}")
    lu = lu.astype(np.float64)
    if not np.isfinite(lu).all() or (lu < 0).any() or (lu > LU_MAX).any():
        raise NumbaconcError(f"{where} must be finite and in [0, {LU_MAX:g}]")
    return lu


def load_lu(path, n: int, split: str = "train") -> np.ndarray:
    """Read a 1-D .npy weight vector and check it against a split of n points."""
    path = Path(path)
    if not path.is_file():
        raise NumbaconcError(f"{path}: no such LU file")
    try:
        lu = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NumbaconcError(f"{path}: not a readable .npy file ({exc})") from None
    return check_lu(lu, n, where=str(path), split=f"the {split} split")


def label_uncertainty(probs, labels) -> np.ndarray:
    """LU(x) = 1 - (p_y(x) - max_{k != y} p_k(x)) for soft labels (n, K) and labels (n,)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or probs.shape[1] < 2 or len(probs) != len(labels):
        raise NumbaconcError(f"soft labels must be (n, K >= 2) aligned with {len(labels)} labels, "
                             f"got {probs.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= probs.shape[1]:
        raise NumbaconcError(f"labels must be integers in [0, {probs.shape[1]})")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise NumbaconcError("soft labels must be finite and >= 0")
    rows = np.arange(len(labels))
    p_y = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    return np.clip(1.0 - (p_y - others.max(axis=1)), 0.0, LU_MAX)


@dataclass
class LabelWeights:
    """The LU vectors of a dataset's splits and the threshold gamma.

    ``train`` weighs the training split (the fitting and validation rows are
    taken from it by row number); ``test`` (optional) only reports each
    region's mean LU on the test split."""

    train: np.ndarray
    gamma: float
    test: np.ndarray | None = None

    def __post_init__(self):
        self.gamma = check_gamma(self.gamma)

    @classmethod
    def from_file(cls, dataset, path, gamma) -> "LabelWeights":
        """``path``: a 1-D .npy aligned with the dataset's train split, or,
        for a view written by ``cifar10h_view`` (train and test are rows of
        one source split), aligned with that source split: it is then split
        the way the view was."""
        path = Path(path)
        n_train = dataset.train.n_samples
        rows = view_rows(dataset)
        if rows is not None:
            source_n = rows["source_n"]
            lu = load_lu(path, source_n, split=f"the source split of {dataset.path.name}")
            return cls(train=lu[rows["train"]], gamma=gamma, test=lu[rows["test"]])
        return cls(train=load_lu(path, n_train, "train"), gamma=gamma)


def label_weights(dataset, lu, gamma) -> LabelWeights:
    """The ``LabelWeights`` of ``lu``: a .npy path (``LabelWeights.from_file``)
    or a vector aligned with the dataset's train split."""
    if isinstance(lu, (str, Path)):
        return LabelWeights.from_file(dataset, lu, gamma)
    return LabelWeights(train=check_lu(lu, dataset.train.n_samples, split="the train split"),
                        gamma=gamma)


def lu_digest(lu) -> str:
    """A short digest of an LU vector (its file's bytes, or the vector's values)."""
    if isinstance(lu, (str, Path)):
        from .datasets import file_sha256

        return file_sha256([Path(lu)])[:16]
    from .integrity import array_digest

    return array_digest(np.asarray(lu, dtype=np.float64))[:16]


def mean_lu(inside: np.ndarray, lu: np.ndarray | None):
    """Mean LU of the points in a region (None without weights, NaN if empty)."""
    if lu is None:
        return None
    k = int(inside.sum())
    return float(lu[inside].sum() / k) if k else float("nan")


def region_lu(region, X, lu) -> float | None:
    """Mean LU of the points of X (row views fine) inside the region's E."""
    if lu is None:
        return None
    from .datasets import RowView

    total, k = 0.0, 0
    for start, stop, block in RowView(X).blocks():
        inside, _ = region.masks(block)
        total += float(lu[start:stop][inside].sum())
        k += int(inside.sum())
    return total / k if k else float("nan")


LU_FAMILIES = {"linf": ("cubes", "halfspace"), "l2": ("balls", "halfspace")}


def split_weights(weights: LabelWeights, fit_rows, val_rows, protocol: str) -> dict:
    """The LU vector of each set of a Concentration: ``train`` (the fitting
    rows), ``validation`` (holdout), ``test`` (None when not given)."""
    train = weights.train
    out = dict(train=train if fit_rows is None else train[fit_rows], test=weights.test)
    if protocol == "holdout":
        out["validation"] = train[val_rows]
    return out


def add_region_lu(figures: dict, region, sets: dict, lu: dict) -> None:
    """figures[set]["mean_lu"] = the region's mean LU on that set (where known)."""
    for name, X in sets.items():
        if lu.get(name) is not None:
            figures[name]["mean_lu"] = region_lu(region, X, lu[name])


def greedy_lu_params(fit, lu, gamma: float) -> dict:
    """Per-ball mean LU of the points each ball newly covered (fitting set),
    and why the greedy stopped short, if it did."""
    return dict(gamma=gamma, ball_mean_lu=[h["mean_lu"] for h in fit.history],
                stopped=fit.stopped)


# ---------------------------------------------------------------- CIFAR-10H

CIFAR10H_FILES = ("cifar10h-probs.npy", "cifar10h-counts.npy")
VIEW_FORMAT = 1


def view_rows(dataset) -> dict | None:
    """{train, test: source row numbers, source_n} of a view file, else None."""
    import h5py

    with h5py.File(dataset.path, "r") as f:
        if "view_source_n" not in f.attrs:
            return None
        try:
            rows = dict(train=np.asarray(f["train/source_rows"][()], dtype=np.int64),
                        test=np.asarray(f["test/source_rows"][()], dtype=np.int64),
                        source_n=int(f.attrs["view_source_n"]))
        except KeyError:
            raise NumbaconcError(f"{dataset.path}: damaged view file (no source_rows)") from None
    if len(rows["train"]) != dataset.train.n_samples or len(rows["test"]) != dataset.test.n_samples:
        raise NumbaconcError(f"{dataset.path}: damaged view file (source_rows do not match the splits)")
    return rows


def load_cifar10h(src) -> dict:
    """CIFAR-10H soft labels (10,000 x 10 shares of annotators, CIFAR-10 test
    order) and the annotator counts, checked against each other."""
    src = Path(src)
    probs_path = src / CIFAR10H_FILES[0] if src.is_dir() else src
    counts_path = probs_path.with_name(CIFAR10H_FILES[1])
    if not probs_path.is_file():
        raise NumbaconcError(f"{probs_path}: not found (the CIFAR-10H folder holds {CIFAR10H_FILES[0]})")
    try:
        probs = np.load(probs_path, allow_pickle=False)
        counts = np.load(counts_path, allow_pickle=False) if counts_path.is_file() else None
    except (OSError, ValueError) as exc:
        raise NumbaconcError(f"{probs_path.parent}: unreadable CIFAR-10H file ({exc})") from None
    if probs.ndim != 2 or probs.shape[1] != 10 or not np.issubdtype(probs.dtype, np.floating):
        raise NumbaconcError(f"{probs_path}: expected (n, 10) float soft labels, got {probs.shape} "
                             f"{probs.dtype}")
    if not np.isfinite(probs).all() or (probs < 0).any() \
            or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
        raise NumbaconcError(f"{probs_path}: soft labels must be finite, >= 0, rows summing to 1")
    if counts is not None:
        if counts.shape != probs.shape:
            raise NumbaconcError(f"{counts_path}: shape {counts.shape}, soft labels {probs.shape}")
        total = counts.sum(axis=1, keepdims=True)
        if (total <= 0).any() or not np.allclose(counts / total, probs, atol=1e-9):
            raise NumbaconcError(f"{counts_path}: the counts do not give the soft labels")
    return dict(probs=probs.astype(np.float64), counts=counts, path=probs_path)


def _cifar10_test(cifar10) -> tuple[np.ndarray, np.ndarray, str]:
    """(x_test uint8 (n, 3072), y_test, checksum) from the CIFAR-10 npz or an
    imported cifar10 .h5 (its test split)."""
    from . import datasets

    path = Path(cifar10)
    if path.suffix == ".npz":
        arrays = datasets._load_npz(path, require_labels=True)
        x, y = arrays["x_test"], arrays["y_test"]
        return x.reshape(len(x), -1), np.asarray(y).reshape(-1), datasets.file_sha256([path])
    with datasets.open_dataset(cifar10) as ds:
        if ds.test.y is None:
            raise NumbaconcError(f"{ds.path}: no test labels")
        return np.array(ds.test.array()), np.asarray(ds.test.y), ds.content_digest


def cifar10h_lu(src, cifar10) -> dict:
    """The LU vector of the CIFAR-10 test split from CIFAR-10H, and how well
    the two are aligned (human majority class = CIFAR-10 label)."""
    h = load_cifar10h(src)
    x, y, checksum = _cifar10_test(cifar10)
    if len(y) != len(h["probs"]):
        raise NumbaconcError(f"{h['path']}: {len(h['probs'])} soft labels but the CIFAR-10 test "
                             f"split has {len(y)} images")
    agreement = float((h["probs"].argmax(axis=1) == y).mean())
    if agreement < 0.9:  # an unaligned order agrees on about 10 %
        raise NumbaconcError(f"{h['path']}: the soft labels' majority class agrees with the CIFAR-10 "
                             f"test labels on only {100 * agreement:.2f} % of the images: not "
                             "aligned (CIFAR-10H follows the original test order)")
    return dict(lu=label_uncertainty(h["probs"], y), agreement=agreement, x=x, y=y,
                checksum=checksum, source=str(h["path"].parent))


def write_lu(out, lu) -> Path:
    from .datasets import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(lu, dtype=np.float64))
    return out


def view_split(n: int, fit_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train rows, test rows) of a split of n points, both sorted."""
    if not 0.0 < fit_fraction < 1.0:
        raise NumbaconcError(f"fit fraction must be in (0, 1), got {fit_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fit_fraction * n))
    if not 2 <= n_train <= n - 1:
        raise NumbaconcError(f"fit fraction {fit_fraction} of {n} points leaves an empty split")
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def write_view(out, loaded: dict, *, seed: int, fit_fraction: float, name: str = "cifar10h") -> Path:
    """A dataset file whose train split is a seeded ``fit_fraction`` of the
    CIFAR-10 test images and whose test split is the rest (row numbers kept
    as ``train/source_rows`` / ``test/source_rows``): the LU vector of the
    whole test split then weighs both (``LabelWeights.from_file``). Under
    ``holdout`` the validation split is carved from this train split, so
    fit / validation / report are 40 / 10 / 50 % at the default 0.5."""
    from .datasets import write_dataset

    x, y = loaded["x"], loaded["y"]
    train_rows, test_rows = view_split(len(x), fit_fraction, seed)
    return write_dataset(
        out, name=name, train_x=x[train_rows], train_y=y[train_rows], test_x=x[test_rows],
        test_y=y[test_rows], image_shape=(32, 32, 3),
        checksum=f"{loaded['checksum']}:test-view:fraction={fit_fraction}:seed={seed}",
        source=loaded["source"],
        extra_attrs=dict(view_source_n=len(x), view_seed=seed, view_fit_fraction=fit_fraction,
                         view_format=VIEW_FORMAT, view_of="CIFAR-10 test split"),
        extra_arrays={"train/source_rows": train_rows, "test/source_rows": test_rows})


def lu_lines(rows, gamma: float) -> list[str]:
    """One line per family: the region's mean LU per set, per-ball LU, stops."""
    out = []
    for row in rows:
        parts = [f"{name} {row[name]['mean_lu']:.3f}" for name in ("train", "validation", "test")
                 if name in row and row[name].get("mean_lu") is not None]
        line = f"{row['family']}: mean LU of the region (gamma = {gamma:g}): " + ", ".join(parts)
        balls = row["params"].get("ball_mean_lu")
        if balls:
            line += "; per ball (fit, newly covered): " + ", ".join(f"{v:.3f}" for v in balls)
        if row["params"].get("stopped"):
            line += f"; stopped: {row['params']['stopped']}"
        out.append(line)
    return out


def print_lu_lines(console, rows, gamma: float, failed: dict | None = None) -> None:
    for line in lu_lines(rows, gamma):
        console.print(line)
    for family, why in (failed or {}).items():
        console.print(f"{family}: no region ({why})")
