"""Pictures: concentration curves, region centres as images, example points.

matplotlib is an optional extra (``pip install numbaconc[plot]``); every
function raises NumbaconcError with the install hint when it is missing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .datasets import atomic_path
from .errors import NumbaconcError

FAMILY_COLOURS = {"boxes": "tab:blue", "balls": "tab:green", "halfspace": "tab:orange",
                  "pca": "tab:gray", "best": "tab:red"}


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise NumbaconcError("plots need matplotlib: pip install 'numbaconc[plot]'") from None
    return Figure


def _save(fig, out: Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return out


def plot_curve(rows: list[dict], out: Path, *, title: str, alpha: float | None = None,
               x: str = "epsilon") -> Path:
    """Test adversarial risk against epsilon (``x="epsilon"``) or against
    alpha (``x="alpha"``, one line per epsilon) per family: the frontier read
    at alpha where the family has one (else the region's test figure), 95 %
    interval bands; train figures dashed; alpha as a reference line."""
    from .report import headline

    Figure = _pyplot()
    if x not in ("epsilon", "alpha"):
        raise NumbaconcError(f"x must be epsilon or alpha, got {x!r}")
    by_family = defaultdict(list)
    for row in rows:
        if "error" not in row and "test" in row:
            line = (row["spec"]["family"], row["protocol"])
            if x == "alpha":
                line += (row["spec"].get("epsilon_text") or f"{row['epsilon']:g}",)
            by_family[line].append(row)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for line, items in sorted(by_family.items()):
        family, protocol = line[:2]
        items.sort(key=lambda r: r[x])
        xs = np.array([r[x] for r in items])
        heads = [headline(r["test"]) for r in items]
        test = np.array([h[0] for h in heads]) * 100
        lo = np.array([h[1][0] for h in heads]) * 100
        hi = np.array([h[1][1] for h in heads]) * 100
        train = np.array([r["train"]["adv_risk"] for r in items]) * 100
        colour = FAMILY_COLOURS.get(family, None)
        style = "o-" if protocol == "holdout" else "s:"
        label = f"{family} ({protocol})" + (f", eps={line[2]}" if x == "alpha" else "")
        ax.plot(xs, test, style, color=colour, label=label)
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)
        ax.plot(xs, train, "--", color=colour, alpha=0.7)
    if x == "epsilon" and alpha is not None:
        ax.axhline(alpha * 100, color="black", linewidth=0.8, linestyle=":", label=f"alpha = {alpha:g}")
    elif x == "alpha":
        span = np.array(sorted({r["alpha"] for items in by_family.values() for r in items})) * 100
        if len(span):
            ax.plot(span, span, ":", color="black", linewidth=0.8, label="adv risk = alpha")
    ax.set_xlabel(f"{x} ([0,1] units)" if x == "epsilon" else "alpha (risk level)")
    ax.set_ylabel("adversarial risk (%): at alpha where read, test solid, train dashed")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def _image(vector: np.ndarray, image_shape, scale: float) -> np.ndarray:
    img = np.clip(np.asarray(vector, dtype=np.float64) * scale, 0.0, 1.0)
    shape = tuple(image_shape)
    if int(np.prod(shape)) != img.size:
        side = int(np.ceil(np.sqrt(img.size)))
        img = np.pad(img, (0, side * side - img.size)).reshape(side, side)
        return img
    return img.reshape(shape)


def plot_centers(region, out: Path, *, image_shape, title: str, columns: int = 10) -> Path:
    """The centres of a box or ball region rendered as an image grid."""
    if region.kind not in ("boxes", "balls"):
        raise NumbaconcError(f"a {region.kind} region has no centres to draw")
    Figure = _pyplot()
    centers = region.arrays["centers"]
    n = len(centers)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(1.2 * columns, 1.3 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            img = _image(centers[i], image_shape, region.scale)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if region.kind == "balls":
                ax.set_title(f"r={region.arrays['radii'][i] * region.scale:.2f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, out)


def plot_examples(region, X, out: Path, *, image_shape, title: str, per_row: int = 8,
                  seed: int = 0) -> Path:
    """Three rows of points: inside the error region E; within eps of it (in
    E_eps but not E: the points an adversary can push into E); and outside E_eps."""
    Figure = _pyplot()
    in_error, in_expanded = region.masks(X)
    groups = [("in E (error region)", np.flatnonzero(in_error)),
              ("in E_eps \\ E (attackable)", np.flatnonzero(in_expanded & ~in_error)),
              ("outside E_eps (robust)", np.flatnonzero(~in_expanded))]
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(1.1 * per_row, 3.9))
    axes = fig.subplots(3, per_row, squeeze=False)
    for r, (label, idx) in enumerate(groups):
        chosen = np.sort(rng.choice(idx, size=min(per_row, len(idx)), replace=False)) if len(idx) else []
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(chosen):
                img = _image(X[chosen[c]], image_shape, region.scale)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[r, 0].set_title(f"{label}: {len(idx)} points", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    return _save(fig, out)
