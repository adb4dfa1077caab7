"""Domain errors with messages a user can act on; the UI shows them as notices, never tracebacks."""


class CastError(Exception):
    """Base class of every error CAST Explorer raises on purpose."""


class InvalidImageError(CastError, ValueError):
    """The input is not an image we can segment (unreadable, too small, too large, ...)."""


class SuperpixelError(CastError, ValueError):
    """Superpixels could not be computed, or too few came back for the model."""


class CheckpointError(CastError, ValueError):
    """A checkpoint file is missing, unreadable, hostile, or does not fit the model."""


class NotCastCheckpointError(CheckpointError):
    """A readable checkpoint of another architecture (e.g. the paper's ViT baseline), not CAST."""


class DatasetError(CastError, ValueError):
    """A data set, image folder or annotation file is missing, unsafe or not in the expected format."""


class TrainingError(CastError, RuntimeError):
    """A training run cannot start or continue (bad configuration, resume state that does not fit, ...)."""


class JobError(CastError, ValueError):
    """A job request is refused: unknown job, not this session's, over a limit, or in the wrong state."""


class VocabularyError(CastError, ValueError):
    """A vocabulary for naming segments is empty, unparsable or larger than allowed."""


class ClipModelError(CastError, RuntimeError):
    """The CLIP model that names segments cannot be had (not cached and offline, bad folder, ...)."""
