"""The one exception type that the CLI turns into a one-line error."""


class NumbaconcError(Exception):
    """A known, user-facing error: bad input, missing file, bad parameter.

    The CLI prints ``error: <message>`` and exits with status 1. Messages are
    one line and name the file or parameter at fault.
    """
