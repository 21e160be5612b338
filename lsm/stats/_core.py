"""The permutation core shared by every permutation test of lsm.

Conventions, the same for the voxel-wise engine, the territory-level test and the
multivariate maps:

- every permutation is drawn once, in the calling process, from one
  ``numpy.random.Generator`` (:func:`draw_permutations`); subject ``i`` receives the
  score of subject ``perms[b, i]``;
- workers get fixed-size chunks of permutations (:func:`run_permutations`), whose size
  does not depend on ``n_jobs``, and the caller reduces their outputs in chunk order,
  so the result is identical for any ``n_jobs`` and joblib backend;
- p-values are ``(1 + #{null >= observed}) / (1 + B)``, and a null value tied with the
  observed one up to a relative 1e-12 counts as ">=" (:func:`permutation_pvalues`);
- family-wise error is controlled with the maximum statistic over the tests in each
  permutation (its ``v``-th largest for CFWER), uncorrected permutation p-values come
  from each test's own null.
"""

from dataclasses import dataclass

import numpy as np

from ._correction import (
    alternative_transform,
    permutation_pvalues,
    permutation_threshold,
    tie_lowered,
    top_values,
)
from ._parallel import parallel_map

__all__ = ["PermutationTest", "run_permutations", "max_statistic_test", "PERMUTATION_CHUNK"]

#: Permutations per task of :func:`run_permutations` (fixed: results never depend on it
#: nor on ``n_jobs``; only memory and scheduling do).
PERMUTATION_CHUNK = 100


def run_permutations(fn, permutations, *, args=(), chunk_size=PERMUTATION_CHUNK, n_jobs=1,
                     verbose=0, desc="permutations"):
    """Apply ``fn(chunk, *args)`` to fixed-size chunks of permutations, in parallel.

    Parameters
    ----------
    fn : callable
        Module-level function (picklable) taking a chunk of permutations, an int array
        of shape (c, n_subjects), then ``args``.
    permutations : ndarray of shape (n_permutations, n_subjects)
        All permutations, from :func:`draw_permutations`.
    args : tuple
        Further arguments of ``fn`` (sent to every worker).
    chunk_size : int
        Permutations per call of ``fn``.
    n_jobs : int
        joblib workers; the outputs do not depend on it.
    verbose : int
        > 0 shows a progress bar.
    desc : str
        Label of the progress bar.

    Returns
    -------
    outputs : list
        ``fn``'s outputs, in the order of the chunks.
    """
    permutations = np.asarray(permutations)
    chunk_size = max(1, int(chunk_size))
    chunks = [permutations[s : s + chunk_size] for s in range(0, len(permutations), chunk_size)]
    return parallel_map(fn, [(c, *args) for c in chunks], n_jobs=n_jobs, verbose=verbose, desc=desc)


@dataclass(frozen=True)
class PermutationTest:
    """Outcome of :func:`max_statistic_test`.

    Attributes
    ----------
    observed : ndarray of shape (n_tests,)
        Observed statistics, signed.
    p_uncorrected : ndarray of shape (n_tests,)
        Permutation p-value of each test against its own null.
    p_fwe : ndarray of shape (n_tests,)
        Family-wise corrected p-value (max statistic; v-th largest when ``v > 1``).
    null_max : ndarray of shape (n_permutations,)
        Per permutation, the maximum (v-th largest) over tests of the statistic
        transformed by ``alternative`` (|stat| when two-sided).
    alternative : str
    v : int
    """

    observed: np.ndarray
    p_uncorrected: np.ndarray
    p_fwe: np.ndarray
    null_max: np.ndarray
    alternative: str
    v: int = 1

    @property
    def n_permutations(self):
        """Number of permutations."""
        return int(self.null_max.size)

    def threshold(self, alpha):
        """Value of the transformed statistic above which a test is FWE-significant."""
        return permutation_threshold(self.null_max, alpha)


def _max_chunk(perms, null_fn, args, observed_t, alternative, v):
    """Per-permutation top-v and per-test exceedance counts for one chunk."""
    null = np.asarray(null_fn(perms, *args), dtype=np.float64)  # (n_tests, c)
    s = alternative_transform(null, alternative)
    s = np.where(np.isfinite(s), s, -np.inf)  # undefined statistics never count
    counts = (s >= tie_lowered(observed_t)[:, None]).sum(axis=1)
    top = top_values(s, np.ones(s.shape[0], dtype=np.int64), v)
    return top, counts


def max_statistic_test(observed, null_fn, permutations, *, args=(), alternative="two-sided", v=1,
                       chunk_size=PERMUTATION_CHUNK, n_jobs=1, verbose=0):
    """Permutation test of many statistics with family-wise error control.

    Parameters
    ----------
    observed : ndarray of shape (n_tests,)
        Observed signed statistics (NaN: not testable; p = 1).
    null_fn : callable
        ``null_fn(chunk, *args)`` returns the signed statistics of every test under each
        permutation of the chunk, an array of shape (n_tests, c). Module-level
        (picklable) for process backends. Its output must not depend on the memory
        layout of its inputs (pickling to a worker changes it): index with
        ``np.ascontiguousarray(chunk)`` and avoid multi-threaded BLAS reductions whose
        last bits vary (``np.einsum`` without ``optimize`` is safe).
    permutations : ndarray of shape (n_permutations, n_subjects)
        From :func:`draw_permutations`.
    args : tuple
        Further arguments of ``null_fn``.
    alternative : {"two-sided", "greater", "less"}
        Which values count as extreme (|stat|, stat, -stat).
    v : int
        Use the v-th largest statistic of each permutation (CFWER); 1 is the FWE maximum.
    chunk_size : int
        Permutations per task.
    n_jobs : int
        joblib workers; the result does not depend on it.
    verbose : int
        > 0 shows a progress bar.

    Returns
    -------
    test : PermutationTest
    """
    observed = np.asarray(observed, dtype=np.float64)
    observed_t = alternative_transform(observed, alternative)
    observed_t = np.where(np.isnan(observed_t), np.inf, observed_t)  # never exceeded
    permutations = np.asarray(permutations)
    outs = run_permutations(_max_chunk, permutations,
                            args=(null_fn, tuple(args), observed_t, alternative, int(v)),
                            chunk_size=chunk_size, n_jobs=n_jobs, verbose=verbose)
    B = len(permutations)
    if outs:
        null_top = np.concatenate([o[0] for o in outs], axis=0)
        counts = np.sum([o[1] for o in outs], axis=0)
    else:
        null_top = np.full((0, int(v)), -np.inf)
        counts = np.zeros(observed.size, dtype=np.int64)
    null_max = null_top[:, int(v) - 1]
    p_unc = (1.0 + counts) / (1.0 + B)
    p_fwe = permutation_pvalues(observed_t, null_max)
    nan = np.isnan(observed)
    p_unc[nan] = 1.0
    p_fwe[nan] = 1.0
    return PermutationTest(observed=observed, p_uncorrected=p_unc, p_fwe=p_fwe,
                           null_max=null_max, alternative=alternative, v=int(v))

