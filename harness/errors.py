"""The one exception the CLI turns into a one-line error and exit code 2."""


class HarnessError(Exception):
    """A usage or input error: `str(err)` is the whole message, naming the file and the problem."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
