"""numbaconc: empirical concentration of measure on CPU, with Numba kernels.

Given a dataset, a risk level alpha and a budget epsilon (l-inf or l2), find an
error region of measure >= alpha whose epsilon-expansion is as small as
possible (Mahloujifar et al., NeurIPS 2019; Prescott et al., ICLR 2021).
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
