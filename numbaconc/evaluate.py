"""Apply a saved region to any dataset."""

from __future__ import annotations

import math

from .datasets import Dataset
from .errors import NumbaconcError
from .regions import Region
from .stats import clopper_pearson


def evaluate_region(region: Region, dataset: Dataset, split: str = "all") -> dict:
    """Risk / adversarial risk of ``region`` on the dataset's splits, with intervals."""
    if not math.isclose(region.scale, dataset.scale, rel_tol=1e-9):
        raise NumbaconcError(
            f"region was fitted on data with scale {region.scale:g}, {dataset.path} has {dataset.scale:g}"
        )
    names = ("train", "test") if split == "all" else (split,)
    out = dict(kind=region.kind, metric=region.metric, epsilon=region.epsilon,
               expansion="exact" if region.exact else "upper bound", dataset=str(dataset.path),
               splits={})
    for name in names:
        part = dataset.split(name)
        figures = region.evaluate(part.x)
        figures["risk_ci"] = list(clopper_pearson(figures["n_risk"], figures["n"]))
        figures["adv_risk_ci"] = list(clopper_pearson(figures["n_adv"], figures["n"]))
        out["splits"][name] = figures
    return out
