"""The typer command-line app (installed as ``numbaconc_cli``)."""
