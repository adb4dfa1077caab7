"""Domain errors with messages a user can act on; the UI shows them as notices, never tracebacks."""


class CastError(Exception):
    """Base class of every error CAST Explorer raises on purpose."""


class InvalidImageError(CastError, ValueError):
    """The input is not an image we can segment (unreadable, too small, too large, ...)."""


class SuperpixelError(CastError, ValueError):
    """Superpixels could not be computed, or too few came back for the model."""


class CheckpointError(CastError, ValueError):
    """A checkpoint file is missing, unreadable, hostile, or does not fit the model."""
