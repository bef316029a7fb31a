"""numbaconc: empirical concentration of measure on CPU, with Numba kernels.

Given a dataset, a risk level alpha and a budget epsilon (l-inf or l2), find an
error region of measure >= alpha whose epsilon-expansion is as small as
possible (Mahloujifar et al., NeurIPS 2019; Prescott et al., ICLR 2021).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("numbaconc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
