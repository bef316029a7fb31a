"""``python -m numbaconc``: the command-line app."""

from numbaconc_cli import main

if __name__ == "__main__":
    main()
