"""Exception and warning classes used throughout :mod:`lsm`.

Every error raised on bad user input is a subclass of :class:`LSMError` and of the
matching built-in (``ValueError``, ``FileNotFoundError``...), so callers can catch
either.
"""

__all__ = [
    "LSMError",
    "CohortError",
    "LesionImageError",
    "PhenotypeError",
    "DictionaryError",
    "DataFetchError",
    "HashMismatchError",
    "AnalysisError",
    "OutputExistsError",
    "SpaceError",
    "AtlasError",
    "MissingDependencyError",
    "LSMWarning",
    "DroppedSubjectsWarning",
    "DictionaryWarning",
    "ResamplingWarning",
    "TemplateSpaceWarning",
]


class LSMError(Exception):
    """Base class of every error raised by lsm."""


class CohortError(LSMError, ValueError):
    """The lesion masks and the phenotype table cannot be joined as asked."""


class LesionImageError(LSMError, ValueError):
    """A lesion mask is unreadable or invalid (not 3D, not binary, empty, NaN...)."""


class PhenotypeError(LSMError, ValueError):
    """The phenotype table is malformed or a value fails validation."""


class DictionaryError(LSMError, ValueError):
    """The data dictionary itself is malformed."""


class DataFetchError(LSMError, OSError):
    """A dataset could not be found locally nor downloaded."""


class HashMismatchError(DataFetchError):
    """A downloaded or cached file does not have its expected sha256."""


class AnalysisError(LSMError, ValueError):
    """The requested analysis cannot be run on these data (degenerate input)."""


class OutputExistsError(LSMError, FileExistsError):
    """An output path exists and ``overwrite=False``."""


class SpaceError(LSMError, ValueError):
    """Images are not in a common standard space (e.g. ISLES'24 native CT masks)."""


class MissingDependencyError(LSMError, ImportError):
    """An optional dependency (e.g. ANTsPy for registration) is not installed."""


class LSMWarning(UserWarning):
    """Base class of lsm warnings."""


class DroppedSubjectsWarning(LSMWarning):
    """Some subjects were excluded; see the ``dropped`` table."""


class DictionaryWarning(LSMWarning):
    """A phenotype column looks like a data-dictionary column but is not validated as one."""


class ResamplingWarning(LSMWarning):
    """Images were resampled with nearest-neighbour interpolation between lattices."""


class AtlasError(LSMError, ValueError):
    """A label atlas or its label table is malformed, or the two disagree."""


class TemplateSpaceWarning(LSMWarning):
    """Lesions registered to one MNI template variant are analysed with an atlas of another."""
