"""Partial correlations of many predictors with one outcome, Freedman–Lane permutations.

The territory-level test (:func:`lsm.territory_lsm`) asks, for each of a few dozen
predictors (territory loads), whether it correlates with a score beyond nuisance
variables. The statistic of predictor ``j`` is the partial correlation of ``x_j`` and the
outcome given the nuisance basis ``Q`` (orthonormal, intercept included). Under
Freedman–Lane the residuals ``e`` of the outcome on ``Q`` are permuted and added back to
the fitted values; the fitted part is orthogonal to the residualised predictors, so the
permuted partial correlation is ``Xn_j' e[perm] / ||R_Q e[perm]||`` with ``Xn`` the
residualised, unit-norm predictors. Inference runs on the shared permutation core
(:func:`lsm.stats.max_statistic_test`).
"""

import numpy as np

from ._core import PERMUTATION_CHUNK, max_statistic_test

__all__ = ["partial_correlation_null", "partial_correlation_test"]


def partial_correlation_null(perms, Xn, e, Q):
    """Signed partial correlations under each permutation of a chunk.

    Parameters
    ----------
    perms : ndarray of shape (c, n_subjects)
        Permutations (subject ``i`` receives the residual of subject ``perms[b, i]``).
    Xn : ndarray of shape (n_subjects, n_tests)
        Predictors residualised on ``Q``, unit norm.
    e : ndarray of shape (n_subjects,)
        Residuals of the outcome on ``Q``.
    Q : ndarray of shape (n_subjects, q)
        Orthonormal basis of the nuisance space.

    Returns
    -------
    r : ndarray of shape (n_tests, c)
    """
    # einsum without `optimize` runs numpy's own loops, not a (multi-threaded) BLAS whose
    # last bits can depend on the thread count: worker and main process agree exactly.
    # C order whatever the layout of `perms` (pickling to a worker makes it C-contiguous)
    E = np.ascontiguousarray(e[np.ascontiguousarray(perms)])  # (c, n)
    num = np.einsum("np,cn->pc", Xn, E)
    proj = np.einsum("nq,cn->qc", Q, E)
    den = np.sqrt(np.maximum(np.einsum("cn,cn->c", E, E) - np.einsum("qc,qc->c", proj, proj), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def partial_correlation_test(X, e, Q, permutations, *, alternative="two-sided",
                             chunk_size=PERMUTATION_CHUNK, n_jobs=1, verbose=0):
    """Max-statistic permutation test of the partial correlations of ``X`` with ``e``.

    Parameters
    ----------
    X : ndarray of shape (n_subjects, n_tests)
        Predictors residualised on ``Q`` (no column of zero norm).
    e : ndarray of shape (n_subjects,)
        Outcome residuals of the nuisance model (orthogonal to ``Q``).
    Q : ndarray of shape (n_subjects, q)
        Orthonormal basis of the nuisance space (intercept and covariates).
    permutations : ndarray of shape (n_permutations, n_subjects)
        From :func:`lsm.stats.draw_permutations`.
    alternative : {"two-sided", "greater", "less"}
    chunk_size, n_jobs, verbose
        As for :func:`lsm.stats.max_statistic_test`; the result does not depend on
        ``n_jobs``.

    Returns
    -------
    test : PermutationTest
        ``observed`` holds the partial correlations.
    """
    Xn = X / np.linalg.norm(X, axis=0)
    den = np.sqrt(max(float(e @ e) - float(np.sum((Q.T @ e) ** 2)), 0.0))
    r = (Xn.T @ e) / den
    return max_statistic_test(r, partial_correlation_null, permutations, args=(Xn, e, Q),
                              alternative=alternative, chunk_size=chunk_size, n_jobs=n_jobs,
                              verbose=verbose)
