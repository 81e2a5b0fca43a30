"""User-facing errors.

Everything a user can cause by a bad value, a missing file or a wrong path raises a
``CnnlabError``: the entry points print its message (no stack trace) and exit non-zero.
Anything else is a bug in cnnlab and keeps its full traceback.
"""


class CnnlabError(Exception):
    """A problem the user can fix; the message names the bad value and the fix."""


class ConfigError(CnnlabError):
    """A composed config value is invalid."""


class DataError(CnnlabError):
    """Dataset files are missing, unreadable or corrupt."""


class ModelError(CnnlabError):
    """A model cannot be built for the chosen data (e.g. too deep for the image size)."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, unreadable, unsafe or belongs to another setup."""


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite."""


class DiskFull(CnnlabError):
    """A file could not be written for lack of space; the last good files are kept."""
