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


_BLOCK_NNZ = 1 << 22  # lesioned entries per block: bounds the temporaries to ~100 MB


def _column_blocks(indptr):
    """Column ranges holding about ``_BLOCK_NNZ`` non-zeros each."""
    n_cols = indptr.size - 1
    bounds = [0]
    while bounds[-1] < n_cols:
        target = indptr[bounds[-1]] + _BLOCK_NNZ
        nxt = int(np.searchsorted(indptr, target, side="right")) - 1
        bounds.append(min(n_cols, max(nxt, bounds[-1] + 1)))
    return list(zip(bounds[:-1], bounds[1:]))


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
    csc = sp.csc_matrix(lesions)
    if not csc.has_canonical_format:
        csc = csc.copy()
        csc.sum_duplicates()
    csc.eliminate_zeros()
    indices, indptr = csc.indices, csc.indptr
    n_subjects, n_voxels = csc.shape
    rng = np.random.default_rng(0x15A)  # fixed: the hash must not depend on any user seed
    top = np.iinfo(np.uint64).max
    w1 = rng.integers(0, top, size=n_subjects, dtype=np.uint64, endpoint=True)
    w2 = rng.integers(0, top, size=n_subjects, dtype=np.uint64, endpoint=True)
    blocks = _column_blocks(indptr)
    keys = np.empty((n_voxels, 3), dtype=np.uint64)
    keys[:, 0] = np.diff(indptr)
    for a, b in blocks:
        sub_idx = indices[indptr[a] : indptr[b]]
        sub_ptr = indptr[a : b + 1] - indptr[a]
        keys[a:b, 1] = _column_hash(sub_idx, sub_ptr, w1)
        keys[a:b, 2] = _column_hash(sub_idx, sub_ptr, w2)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    del keys
    inverse = inverse.reshape(-1)
    # Order patterns by first occurrence so the output does not depend on hash values.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    reps, inverse = first[order], rank[inverse]

    # Verify that every column equals its representative (guards against collisions).
    for a, b in blocks:
        lengths = np.diff(indptr[a : b + 1])
        rep_start = np.repeat(indptr[reps[inverse[a:b]]].astype(np.int64), lengths)
        offsets = np.arange(indptr[a], indptr[b], dtype=np.int64) - np.repeat(
            indptr[a:b].astype(np.int64), lengths
        )
        if not np.array_equal(indices[indptr[a] : indptr[b]], indices[rep_start + offsets]):
            reps, inverse = _group_exact(indices, indptr)
            break

    counts = np.bincount(inverse, minlength=reps.size).astype(np.int64)
    patterns = csc[:, reps]
    patterns = sp.csc_matrix(
        (np.ones(patterns.nnz), patterns.indices, patterns.indptr), shape=(n_subjects, reps.size)
    )
    patterns.sort_indices()
    return patterns, inverse.astype(np.int64), counts
