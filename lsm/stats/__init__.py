"""Array-only voxel-wise statistics engine (numpy, scipy, joblib; no image I/O).

:func:`voxelwise_test` takes a sparse (n_subjects, n_voxels) lesion matrix and a score
vector and returns a :class:`VoxelwiseResult` of plain arrays; :func:`lsm.vlsm` wraps
images around it.
"""

from ._core import PERMUTATION_CHUNK, PermutationTest, max_statistic_test, run_permutations
from ._correction import CORRECTIONS, permutation_pvalues, permutation_threshold
from ._freedman_lane import partial_correlation_null, partial_correlation_test
from ._parallel import parallel_map
from ._patterns import unique_patterns
from ._permutation import (
    ALTERNATIVES,
    VoxelwiseResult,
    draw_permutations,
    resolve_min_lesioned,
    voxelwise_test,
)
from ._statistics import METHODS, t_to_z
from ._svr import SVRTestResult, svr_test

__all__ = [
    "PERMUTATION_CHUNK",
    "PermutationTest",
    "max_statistic_test",
    "run_permutations",
    "permutation_pvalues",
    "permutation_threshold",
    "ALTERNATIVES",
    "CORRECTIONS",
    "METHODS",
    "VoxelwiseResult",
    "SVRTestResult",
    "svr_test",
    "draw_permutations",
    "parallel_map",
    "partial_correlation_null",
    "partial_correlation_test",
    "resolve_min_lesioned",
    "t_to_z",
    "unique_patterns",
    "voxelwise_test",
]
