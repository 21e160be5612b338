"""VLSM on a Dask cluster through ``joblib.parallel_config(backend="dask")``.

A two-worker ``distributed.LocalCluster`` (separate processes, one thread each) must
give maps and nulls bit-identical to the local serial run, and the work must really
run on the cluster's workers (checked with the task stream, so a silent fall-back to
the local process would fail the test).
"""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

import lsm  # noqa: E402
from lsm.simulate import make_synthetic_cohort  # noqa: E402

MAPS = ("stat", "z", "p", "p_corrected", "n_lesioned", "significant", "mask_img")

# (method, correction, extra kwargs): the chunk-over-patterns path (max statistic,
# v-th largest, with and without per-voxel degrees of freedom, Freedman-Lane) and the
# chunk-over-permutations path (cluster, TFCE).
CASES = [
    ("ttest", "fwe", {}),
    ("brunner_munzel", "fwe", {}),
    ("regression", "cfwer", {"covariates": ["age"], "lesion_volume": "covariate", "v": 3}),
    ("welch", "cluster_size", {}),
    ("ttest", "tfce", {}),
]


@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_cohort(n_subjects=36, shape=(12, 14, 12), voxel_size=8.0, random_state=3)


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dashboard / port warnings of a local cluster
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _run(cohort, method, correction, kwargs, n_jobs):
    return lsm.vlsm(
        cohort,
        "nihss",
        method=method,
        correction=correction,
        n_permutations=60,
        min_lesioned=3,
        n_jobs=n_jobs,
        random_state=11,
        **kwargs,
    )


def assert_identical(a, b):
    for name in MAPS:
        np.testing.assert_array_equal(
            np.asanyarray(getattr(a, name).dataobj), np.asanyarray(getattr(b, name).dataobj), err_msg=name
        )
        assert getattr(a, name).get_data_dtype() == getattr(b, name).get_data_dtype(), name
    assert set(a.extra_maps) == set(b.extra_maps)
    for name in a.extra_maps:
        np.testing.assert_array_equal(a.extra_maps[name].get_fdata(), b.extra_maps[name].get_fdata(), err_msg=name)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert a.null_distribution.dtype == b.null_distribution.dtype
    assert a.threshold == b.threshold or (a.threshold is None and b.threshold is None)
    np.testing.assert_array_equal(np.asarray(a.observed), np.asarray(b.observed))
    assert a.provenance["subjects"] == b.provenance["subjects"]
    pd.testing.assert_frame_equal(a.excluded, b.excluded)


@pytest.mark.parametrize("method, correction, kwargs", CASES, ids=[f"{m}-{c}" for m, c, _ in CASES])
@pytest.mark.parametrize("n_jobs", [2, -1])
def test_dask_cluster_is_bit_identical_to_local(cohort, client, method, correction, kwargs, n_jobs):
    local = _run(cohort, method, correction, kwargs, n_jobs=1)
    workers = set(client.scheduler_info()["workers"])
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):
            remote = _run(cohort, method, correction, kwargs, n_jobs=n_jobs)
    ran_on = {task["worker"] for task in stream.data}
    assert stream.data, "no task ran on the Dask cluster: the engine did not use the dask backend"
    assert ran_on <= workers
    assert remote.provenance["engine"]["n_chunks"] > 1 or correction in ("cluster_size", "tfce")
    assert_identical(local, remote)
    # the null is a real null (not all equal), so identity is a meaningful check
    assert np.unique(local.null_distribution).size > 1


def test_dask_with_n_jobs_1_still_matches(cohort, client):
    """``n_jobs=1`` inside a dask ``parallel_config`` gives the same result as serial."""
    local = _run(cohort, "ttest", "fwe", {}, n_jobs=1)
    with joblib.parallel_config(backend="dask"):
        remote = _run(cohort, "ttest", "fwe", {}, n_jobs=1)
    assert_identical(local, remote)
