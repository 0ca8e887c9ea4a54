"""Errors the trainers raise; each carries a sentence a user can act on."""


class TrainerError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class DataError(TrainerError):
    """A data set is missing, malformed or inconsistent."""


class ManifestError(TrainerError):
    """The model store manifest is missing, corrupt or inconsistent with the artifacts."""


class ExportError(TrainerError):
    """An artifact could not be written or packaged."""
