"""The exceptions sarray raises. Every message names the input, the problem and the fix."""

from __future__ import annotations


class SarrayError(ValueError):
    """Base class of every error sarray raises on purpose."""


class SarrayWarning(UserWarning):
    """Something sarray did that the user should know about (the CLI prints it as one line)."""


class ConfigError(SarrayError):
    """A configuration value is out of range or inconsistent."""


class IngestError(SarrayError):
    """An input file cannot be ingested (missing, corrupt, unsupported, no georeferencing...)."""


class ArchiveError(SarrayError):
    """The archive is missing, malformed, or does not hold what was asked for."""


class SceneNotFoundError(ArchiveError):
    """A scene id that is not in the archive's catalog."""


class ModelError(SarrayError):
    """Model weights missing or invalid, or a model configuration that cannot be built."""


class ReplicaError(SarrayError):
    """A failure inside a model replica, re-raised with the key of the tile that failed."""


class ChunkError(ArchiveError):
    """A stored chunk that cannot be read back intact (checksum mismatch, truncated, missing)."""


class CommitConflictError(ArchiveError):
    """A commit that kept conflicting with concurrent writers after every retry."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of a library's error (at most ``limit`` characters), or its type's name
    when it has no text: what a one-line message quotes of the cause."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
