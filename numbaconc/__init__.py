"""numbaconc: empirical concentration of measure on CPU, with Numba kernels.

Given a dataset, a risk level alpha and a budget epsilon (l-inf or l2), find an
error region of measure >= alpha whose epsilon-expansion is as small as
possible (Mahloujifar et al., NeurIPS 2019; Prescott et al., ICLR 2021).

``import numbaconc as nc`` gives the Python API (``numbaconc.api``):
``nc.knn``, ``nc.measure``, ``nc.curve``, ``nc.reproduce``, ``nc.bound``,
``nc.open_dataset``, ``nc.import_dataset``, ``nc.Region``.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# Idle OpenMP threads (Numba's and the BLAS's) spin by default and steal the
# core their partner needs; on a shared 2-core machine passive waiting halved
# the l1 kNN time (bench/RESULTS-knn.md). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("numbaconc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from . import api  # noqa: E402
from .api import (CurveResult, FamilyResult, MeasureResult, SplitFigures, bound,  # noqa: E402
                  curve, knn, measure, reproduce)
from .datasets import Dataset, dataset_from_arrays, import_dataset, open_dataset  # noqa: E402
from .errors import NumbaconcError  # noqa: E402
from .regions import Region  # noqa: E402


__all__ = [
    "__version__", "knn", "measure", "curve", "reproduce", "bound", "open_dataset",
    "import_dataset", "dataset_from_arrays", "Dataset", "Region", "MeasureResult",
    "FamilyResult", "SplitFigures", "CurveResult", "NumbaconcError",
]
