"""Errors a user can fix: one clear sentence naming the fix, never a traceback."""


class AskAnyError(Exception):
    """A problem the user can fix (missing file, bad setting, model not downloaded).

    The CLI prints ``str(error)`` alone and exits non-zero; programming errors
    are not wrapped in this class and still raise with a traceback.
    """


class ConfigError(AskAnyError):
    """A setting has a wrong value."""


class ModelUnavailableError(AskAnyError):
    """A model role cannot be loaded (missing files, offline without a cache, wrong kind)."""

    def __init__(self, role: str, message: str):
        super().__init__(message)
        self.role = role


class DatabaseError(AskAnyError):
    """The database cannot be reached or is in a state AskAny cannot use."""


class DatabaseConnectionLost(DatabaseError):
    """The server went away while a command was using it; what was committed before is kept."""
