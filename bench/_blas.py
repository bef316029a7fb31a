"""OpenBLAS core type for the benchmarks; import before numpy.

SkylakeX (OpenBLAS's AVX-512 kernels) where the CPU has AVX-512: OpenBLAS
detected some VMs' Intel CPUs as an older core. Anywhere else OpenBLAS's own
detection (SkylakeX there dies with an illegal instruction). A value the
caller set is kept.
"""

import os


def set_coretype() -> None:
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = " avx512f" in f.read()
    except OSError:
        return
    if avx512:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
