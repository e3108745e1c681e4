"""One error hierarchy for foldatlas.

Every error a user can cause derives from :class:`FoldatlasError`; its message
says what was wrong and what to do. The CLI maps these to one-line messages and
exit codes in one place (``foldatlas.cli.main``).
"""

from __future__ import annotations

__all__ = [
    "FoldatlasError",
    "InvalidSequenceError",
    "InvalidFileError",
    "UnknownModelError",
    "WeightsNotFoundError",
    "WeightsIntegrityError",
    "SequenceTooLongError",
    "OutputConflictError",
    "InvalidOptionError",
    "DataToolError",
    "UnknownEntryError",
    "AtlasError",
    "ServiceBusyError",
    "MissingExtraError",
]


class FoldatlasError(Exception):
    """Base class of every error foldatlas reports to a user."""

    exit_code: int = 1


class InvalidSequenceError(FoldatlasError, ValueError):
    """A sequence holds a character that is not a residue, or is empty."""

    exit_code = 2


class InvalidFileError(FoldatlasError, ValueError):
    """An input file is missing, empty, or not in the expected format."""

    exit_code = 2


class UnknownModelError(FoldatlasError, KeyError):
    """A model name is neither registered, a hub id, nor a checkpoint folder."""

    exit_code = 3

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(FoldatlasError, FileNotFoundError):
    """A known model whose weights are not on this machine."""

    exit_code = 3


class WeightsIntegrityError(FoldatlasError):
    """A checkpoint folder is incomplete or its weights are not safetensors."""

    exit_code = 3


class SequenceTooLongError(FoldatlasError, ValueError):
    """A sequence exceeds the configured or memory-derived length limit."""

    exit_code = 2


class OutputConflictError(FoldatlasError):
    """An output folder holds results made with other settings."""

    exit_code = 4


class InvalidOptionError(FoldatlasError, ValueError):
    """An option value that cannot be used here (unknown dtype, absent device)."""

    exit_code = 2


class NonFiniteOutputError(FoldatlasError):
    """A model produced NaN or infinite coordinates or confidences (a numerical failure, never written out)."""

    exit_code = 1


class DataToolError(FoldatlasError):
    """A tool or Debian package the training-data extraction needs is missing or failed."""

    exit_code = 5


class UnknownEntryError(FoldatlasError, KeyError):
    """An atlas entry ID (or alias, or checksum) that the atlas does not hold."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AtlasError(FoldatlasError):
    """A folder that is not an atlas, or an atlas this version cannot read or write."""

    exit_code = 2


class ServiceBusyError(FoldatlasError):
    """The service's fold queue is full; try again after ``retry_after`` seconds."""

    exit_code = 1

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingExtraError(FoldatlasError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 2
