"""The typer command-line app (installed as ``numbaconc_cli``).

``main`` is the console entry point. It imports the app (numba, h5py,
typer: a second or two) inside a ``try``, so Ctrl-C during those first
seconds ends with one line and exit 130, like Ctrl-C during a command,
never a ``KeyboardInterrupt`` traceback. This module imports nothing heavy.
"""

import sys

INTERRUPTED = 130


def main():
    try:
        from .main import main as run_app

        return run_app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED)
