"""Errors a user can act on. Every message says what was wrong and what to do."""


class HippoError(Exception):
    """Base class of every error this package raises on purpose."""


class VideoError(HippoError):
    """The video file cannot give the requested frames."""


class CheckpointError(HippoError):
    """A checkpoint folder is missing files, or a draft/target pair does not fit together."""


class ConfigError(HippoError, ValueError):
    """A decoding, sampling or pruning parameter is out of range."""


class DatasetError(ConfigError):
    """A benchmark's local copy is missing a file, a field or a video, or a field has the wrong form.
    The message names the benchmark, the file (and row) and what was expected there."""
