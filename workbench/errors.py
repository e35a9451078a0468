"""One error family for the whole package.

Every error says what is wrong (the field, file or value) and what to do about it. The CLI prints
the message and exits non-zero without a traceback; Python callers can catch `WorkbenchError`.
"""


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError):
    """A spec or variant configuration is invalid."""


class DataError(WorkbenchError):
    """A corpus or evaluation file cannot be used."""


class ModelError(WorkbenchError):
    """A model endpoint (generation or embeddings) failed or is misconfigured."""


class TrackingError(WorkbenchError):
    """MLflow tracking failed."""


class StorageError(WorkbenchError):
    """A file of the workbench's own could not be written (disk full, no permission)."""
