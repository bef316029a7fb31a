"""The one exception type that the CLI turns into a one-line error."""


class NumbaconcError(Exception):
    """A known, user-facing error: bad input, missing file, bad parameter.

    The CLI prints ``error: <message>`` and exits with status 1. Messages are
    one line and name the file or parameter at fault.
    """


class OptionError(NumbaconcError):
    """A bad option or combination of options.

    ``template`` is a ``str.format`` string whose fields stand for options;
    ``options`` gives each field's Python wording (``domain=False``). The
    message reads in those terms; the CLI re-words the fields as its flags
    (``numbaconc_cli.common``), so no flag name lives in the package.
    """

    def __init__(self, template: str, **options: str):
        self.template = template
        self.options = options
        super().__init__(template.format(**options))

    def reworded(self, wording) -> str:
        """The message with each option's text passed through ``wording``."""
        return self.template.format(**{key: wording(text) for key, text in self.options.items()})
