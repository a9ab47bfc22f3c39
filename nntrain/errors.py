"""The one exception type for mistakes a user can make: bad config, data, checkpoint or argument."""


class NntrainError(Exception):
    """A user-facing error; the CLI prints it without a traceback and exits with code 2."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)
