"""Domain errors with messages a user can act on; the UI shows them as notices, never tracebacks.

Every error the library raises on purpose is a `CastError`. Each subclass also derives from the built-in
exception a Python caller would expect (ValueError, IndexError, ...), so `except ValueError` keeps working;
the CLI and the app catch `CastError` once at their boundary.
"""


class CastError(Exception):
    """Base class of every error CAST Explorer raises on purpose."""


class ConfigError(CastError, ValueError):
    """A configuration value is out of range or names something unknown (a model variant, an input mode, ...)."""


class InvalidImageError(CastError, ValueError):
    """The input is not an image we can segment (unreadable, too small, too large, ...)."""


class SuperpixelError(CastError, ValueError):
    """Superpixels could not be computed, or too few came back for the model."""


class CheckpointError(CastError, ValueError):
    """A checkpoint file is missing, unreadable, hostile, or does not fit the model."""


class NotCastCheckpointError(CheckpointError):
    """A readable checkpoint of another architecture (e.g. the paper's ViT baseline), not CAST."""


class HierarchyError(CastError, ValueError):
    """A hierarchy is inconsistent, or cannot be built or read from what was given."""


class OutOfRangeError(CastError, IndexError):
    """A level, segment or pixel that the hierarchy does not have."""


class DatasetError(CastError, ValueError):
    """A data set, image folder or annotation file is missing, unsafe or not in the expected format."""


class TrainingError(CastError, RuntimeError):
    """A training run cannot start or continue (bad configuration, resume state that does not fit, ...)."""


class JobError(CastError, ValueError):
    """A job request is refused: unknown job, not this session's, over a limit, or in the wrong state."""
