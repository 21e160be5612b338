"""Compression of a sparse lesion matrix to its unique lesion patterns.

Neighbouring voxels are very often lesioned in exactly the same subjects. Every
statistic of a voxel depends only on its column of the lesion matrix, so each unique
column is computed once and mapped back to its voxels.
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["unique_patterns"]


def _column_hash(indices, indptr, weights):
    # Sum of per-subject random 64-bit weights over the lesioned subjects of each
    # column, with wrap-around; differences of a cumulative sum handle empty columns.
    cums = np.zeros(indices.size + 1, dtype=np.uint64)
    np.cumsum(weights[indices], out=cums[1:])
    return cums[indptr[1:]] - cums[indptr[:-1]]


def _group_exact(indices, indptr):
    # Fallback (hash collision, practically never): group columns by their bytes.
    first = {}
    inverse = np.empty(indptr.size - 1, dtype=np.int64)
    for j in range(indptr.size - 1):
        key = indices[indptr[j] : indptr[j + 1]].tobytes()
        inverse[j] = first.setdefault(key, len(first))
    reps = np.zeros(len(first), dtype=np.int64)
    reps[inverse[::-1]] = np.arange(inverse.size)[::-1]
    return reps, inverse


def unique_patterns(lesions):
    """Find the unique columns (lesion patterns) of a binary sparse matrix.

    Parameters
    ----------
    lesions : sparse matrix of shape (n_subjects, n_voxels)
        Binary lesion matrix (non-zero = lesioned).

    Returns
    -------
    patterns : scipy.sparse.csc_matrix of shape (n_subjects, n_patterns)
        One column per unique pattern (float64 ones), in order of first occurrence.
    inverse : ndarray of shape (n_voxels,), int64
        Pattern of each voxel: ``lesions[:, j]`` equals ``patterns[:, inverse[j]]``.
    counts : ndarray of shape (n_patterns,), int64
        Number of voxels sharing each pattern.
    """
    csc = sp.csc_matrix(lesions, copy=True)
    csc.eliminate_zeros()
    csc.sort_indices()
    indices = csc.indices.astype(np.int64, copy=False)
    indptr = csc.indptr.astype(np.int64, copy=False)
    n_subjects, n_voxels = csc.shape
    rng = np.random.default_rng(0x15A)  # fixed: the hash must not depend on any user seed
    w1 = rng.integers(0, np.iinfo(np.uint64).max, size=n_subjects, dtype=np.uint64, endpoint=True)
    w2 = rng.integers(0, np.iinfo(np.uint64).max, size=n_subjects, dtype=np.uint64, endpoint=True)
    nnz = np.diff(indptr).astype(np.uint64)
    keys = np.stack([nnz, _column_hash(indices, indptr, w1), _column_hash(indices, indptr, w2)], 1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Order patterns by first occurrence so the output does not depend on hash values.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    reps, inverse = first[order], rank[inverse]

    # Verify that every column equals its representative (guards against collisions).
    lengths = np.diff(indptr)
    offsets = np.arange(indices.size) - np.repeat(indptr[:-1], lengths)
    rep_pos = np.repeat(indptr[reps[inverse]], lengths) + offsets
    if not np.array_equal(indices, indices[rep_pos]):
        reps, inverse = _group_exact(indices, indptr)

    counts = np.bincount(inverse, minlength=reps.size).astype(np.int64)
    patterns = csc[:, reps]
    patterns = sp.csc_matrix(
        (np.ones(patterns.nnz), patterns.indices, patterns.indptr), shape=(n_subjects, reps.size)
    )
    return patterns, inverse.astype(np.int64), counts
