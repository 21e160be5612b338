"""Parameter checks at the boundary of every public function.

One module, so that a parameter of the shared vocabulary (see :mod:`lsm._docs`) is
checked the same way, and refused with the same message, wherever it is accepted.
Every message names the parameter, says what is allowed and what was received.
This module imports numpy only: the array-only engine (:mod:`lsm.stats`) uses it too.
"""

import math
import numbers

import numpy as np

__all__ = [
    "ALTERNATIVES",
    "CORRECTIONS",
    "LESION_VOLUME",
    "VOLUME_TRANSFORMS",
    "check_option",
    "check_alpha",
    "check_n_permutations",
    "check_min_lesioned",
    "check_lesion_volume",
    "check_volume_transform",
    "check_n_jobs",
    "check_random_state",
    "resolve_seed",
    "as_column_list",
]

#: ``alternative`` as scipy spells it; "greater" = damage goes with a higher score.
ALTERNATIVES = ("two-sided", "greater", "less")
#: Every multiple-comparison correction lsm knows (a function accepts a subset).
CORRECTIONS = ("fwe", "cfwer", "fdr_bh", "fdr_by", "cluster_size", "cluster_mass", "tfce", "none")
#: Every lesion-volume control lsm knows (a function accepts a subset).
LESION_VOLUME = (None, "covariate", "dtlvc", "lesion", "both", "dtlvc+covariate")
#: How lesion volume enters a model.
VOLUME_TRANSFORMS = ("linear", "log")

#: Hints for values that older versions (or other tools) used.
_RENAMED = {
    ("correction", "fdr"): "'fdr_bh' (Benjamini-Hochberg)",
    ("lesion_volume", True): "'covariate' (and volume_transform='linear')",
    ("lesion_volume", False): "None",
    ("lesion_volume", "linear"): "'covariate' with volume_transform='linear'",
    ("lesion_volume", "log"): "'covariate' with volume_transform='log'",
}


def _hint(name, value):
    try:
        hint = _RENAMED.get((name, value))
    except TypeError:  # unhashable value
        hint = None
    return f" Did you mean {hint}?" if hint else ""


def check_option(name, value, allowed):
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError saying so.

    Parameters
    ----------
    name : str
        Parameter name, as the user wrote it.
    value : object
        What was received.
    allowed : sequence
        The allowed values.

    Returns
    -------
    value : object
        ``value`` unchanged.
    """
    try:
        # True == 1 in Python: a bool only matches a bool
        ok = any(value is a or (isinstance(value, (bool, np.bool_)) == isinstance(a, bool)
                                and bool(value == a)) for a in allowed)
    except (TypeError, ValueError):  # arrays and other values without a plain ==
        ok = False
    if not ok:
        allowed_txt = ", ".join(repr(a) for a in allowed)
        raise ValueError(
            f"Invalid value for the {name!r} parameter. Allowed values are {allowed_txt}, "
            f"but got {value!r} instead.{_hint(name, value)}"
        )
    return value


def check_alpha(alpha, name="alpha"):
    """Return ``alpha`` as a float in (0, 1), else raise a ValueError."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"Invalid value for the {name!r} parameter: expected a number in (0, 1), "
                         f"but got {alpha!r} instead.")
    return float(alpha)


def check_n_permutations(n_permutations, name="n_permutations"):
    """Return ``n_permutations`` as a positive int, else raise a ValueError."""
    if (isinstance(n_permutations, (bool, np.bool_)) or not isinstance(n_permutations, numbers.Integral)
            or n_permutations < 1):
        raise ValueError(f"Invalid value for the {name!r} parameter: expected an int >= 1, "
                         f"but got {n_permutations!r} instead.")
    return int(n_permutations)


def check_min_lesioned(min_lesioned, n_subjects=None):
    """Check ``min_lesioned`` and, given ``n_subjects``, resolve it into a count.

    An int is a number of subjects; a float in (0, 1) is a fraction ``f`` of the
    analysed subjects, meaning ``ceil(f * n_subjects)`` of them. The count must be at
    least 2 (a group of one subject has no variance).

    Parameters
    ----------
    min_lesioned : int or float
        The value received.
    n_subjects : int, optional
        Number of analysed subjects; without it only the type and range are checked.

    Returns
    -------
    count : int or float
        The resolved count, or ``min_lesioned`` itself when ``n_subjects`` is None.
    """
    if isinstance(min_lesioned, (bool, np.bool_)) or not isinstance(min_lesioned, numbers.Real):
        raise TypeError(
            "Invalid value for the 'min_lesioned' parameter: expected an int (a number of "
            f"subjects) or a float in (0, 1) (a fraction of the subjects), but got {min_lesioned!r}."
        )
    if isinstance(min_lesioned, numbers.Integral):
        count = int(min_lesioned)
    else:
        if not 0 < min_lesioned < 1:
            raise ValueError(
                "Invalid value for the 'min_lesioned' parameter: a float is a fraction of the "
                f"subjects and must lie in (0, 1), but got {min_lesioned!r}; pass an int for a "
                "number of subjects."
            )
        if n_subjects is None:
            return float(min_lesioned)
        count = math.ceil(float(min_lesioned) * n_subjects - 1e-9)
    if count < 2:
        from .exceptions import AnalysisError

        of = f" out of {n_subjects}" if n_subjects is not None else ""
        raise AnalysisError(
            f"min_lesioned={min_lesioned!r} means {count} subject(s){of}, but every tested unit "
            "needs at least 2 lesioned and 2 non-lesioned subjects (a group of one has no "
            "variance). Use min_lesioned >= 2."
        )
    return count


def check_lesion_volume(lesion_volume, allowed=(None, "covariate", "dtlvc")):
    """Check a lesion-volume control against the values a function accepts."""
    return check_option("lesion_volume", lesion_volume, allowed)


def check_volume_transform(volume_transform):
    """Check ``volume_transform`` ("linear": ml, "log": log10 ml)."""
    return check_option("volume_transform", volume_transform, VOLUME_TRANSFORMS)


def check_n_jobs(n_jobs):
    """Validate ``n_jobs`` and return it as a Python int (None means 1).

    Accepts any non-zero integer, numpy integers included (e.g. from a parameter grid).
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(
            "Invalid value for the 'n_jobs' parameter: expected a non-zero int "
            f"(1 for serial, -1 for all cores), but got {n_jobs!r} instead."
        )
    return int(n_jobs)


def check_random_state(random_state):
    """Turn ``None``, an int, a SeedSequence or a Generator into a ``np.random.Generator``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        raise TypeError(
            "Invalid value for the 'random_state' parameter: expected None, an int or a "
            "numpy.random.Generator; legacy RandomState objects are not supported (use "
            "np.random.default_rng(seed))."
        )
    if isinstance(random_state, (bool, np.bool_)) or not (
        random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence))
    ):
        raise TypeError(
            "Invalid value for the 'random_state' parameter: expected None, an int or a "
            f"numpy.random.Generator, but got {random_state!r} instead."
        )
    return np.random.default_rng(random_state)


def resolve_seed(random_state):
    """The seed to record for ``random_state`` and the generator to draw from.

    ``None`` draws a fresh seed (so that the run can be repeated from the recorded
    value); an int is used as is. A Generator is used as given and its seed recorded as
    ``None`` (its state cannot be summarised by one number).

    Returns
    -------
    seed : int or None
    rng : numpy.random.Generator
    """
    if isinstance(random_state, np.random.Generator):
        return None, random_state
    if random_state is None:
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    rng = check_random_state(random_state)
    seed = int(random_state) if isinstance(random_state, numbers.Integral) else None
    return seed, rng


def as_column_list(value, name):
    """``None`` -> [], a str -> [str], a sequence of str -> list; else a TypeError."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        out = list(value)
    except TypeError:
        out = None
    if out is None or not all(isinstance(v, str) for v in out):
        raise TypeError(f"Invalid value for the {name!r} parameter: expected a column name or a "
                        f"list of column names, but got {value!r} instead.")
    return out
