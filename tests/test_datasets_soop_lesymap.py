"""load_soop / fetch_soop and load_lesymap_example / fetch_lesymap_example on the real data."""

import re
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from lsm.datasets import fetch_lesymap_example, fetch_soop, load_lesymap_example
from lsm.exceptions import DataFetchError, DroppedSubjectsWarning


def test_fetch_soop_paths(shared_data_dir):
    files = fetch_soop(data_dir=shared_data_dir)
    assert len(files.lesions) == 1449
    assert files.lesions[0].name.startswith("bwsrsub-")
    for path in (files.participants, files.atlas, files.atlas_labels, files.artery_reference, files.lesion_mean):
        assert path.is_file(), path
    assert "Sci Data 11:839" in files.citation


def test_load_soop_join_counts(shared_data_dir, soop_cohort):
    # Done-criterion of the foundation issue, with the expected sets computed here
    # from the file names and participants.tsv, independently of the loader.
    soop = shared_data_dir / "soop"
    pattern = re.compile(r"^bwsr(sub-\w+)_lesion\.nii\.gz$")
    masks = {pattern.match(p.name).group(1) for p in (soop / "lesions").glob("*.nii.gz")}
    table = pd.read_csv(soop / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = set(table["participant_id"])
    assert len(masks) == 1449 and len(rows) == 1505
    both = masks & rows
    assert len(soop_cohort) == len(both) == 1265
    assert set(soop_cohort.subjects) == both
    joined = table[table["participant_id"].isin(both)]
    assert soop_cohort.phenotype["nihss"].notna().sum() == (joined["nihss"] != "n/a").sum() == 944
    n_rankin = soop_cohort.phenotype["gs_rankin_6isdeath"].notna().sum()
    assert n_rankin == (joined["gs_rankin_6isdeath"] != "n/a").sum() == 618
    dropped = soop_cohort.excluded
    no_row = dropped[dropped["reason"] == "lesion mask without a phenotype row"]
    no_mask = dropped[dropped["reason"] == "phenotype row without a lesion mask"]
    assert set(no_row["subject"]) == masks - rows and len(no_row) == 184
    assert set(no_mask["subject"]) == rows - masks and len(no_mask) == 240
    assert len(dropped) == 184 + 240


def test_load_soop_metadata(soop_cohort):
    if "dataset" not in soop_cohort.metadata:
        pytest.skip("soop_cohort fixture built without lsm.datasets.load_soop")
    assert soop_cohort.metadata["dataset"] == "SOOP"
    assert soop_cohort.space == "MNI"
    assert soop_cohort.shape == (157, 189, 136)


@pytest.fixture(scope="module")
def lesymap_cohort(shared_data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedSubjectsWarning)  # nothing may be dropped
        return load_lesymap_example(data_dir=shared_data_dir, n_jobs=2)


def test_lesymap_cohort(shared_data_dir, lesymap_cohort):
    files = fetch_lesymap_example(data_dir=shared_data_dir)
    assert len(files.lesions) == 131 and files.truth_label == 101
    assert files.template.is_file() and files.parcellation.is_file()
    cohort = lesymap_cohort
    assert cohort.subjects == [f"sub-{i:03d}" for i in range(1, 132)]
    assert len(cohort.excluded) == 0
    scores = np.loadtxt(shared_data_dir / "lesymap" / "behavior.txt")
    np.testing.assert_array_equal(cohort.phenotype["score"].to_numpy(), scores)
    assert cohort.space == "MNI" and cohort.shape == (181, 217, 181)
    # Subject_042 is sub-042: same voxels.
    img = nib.load(shared_data_dir / "lesymap" / "lesions" / "Subject_042.nii.gz")
    np.testing.assert_array_equal(cohort.lesion_mask("sub-042"), np.asarray(img.dataobj) > 0.5)
    assert cohort.metadata["truth_label"] == 101


def test_lesymap_truth_parcel_has_the_best_lesion_load_correlation(shared_data_dir, lesymap_cohort):
    # LESYMAP wiki: scores simulated from area 101 of Parcellation_403areas. Check it on
    # the data: lesion load (fraction of the parcel lesioned) vs score, every parcel.
    parc = np.asarray(nib.load(shared_data_dir / "lesymap" / "template" / "Parcellation_403areas.nii.gz").dataobj)
    parc = parc.astype(np.int64).ravel()
    labels, column = np.unique(parc, return_inverse=True)
    onehot = sparse.csr_matrix((np.ones(parc.size), (np.arange(parc.size), column)))
    X = lesymap_cohort.lesion_matrix().astype(np.float64)
    loads = np.asarray((X @ onehot).todense()) / np.bincount(column)
    y = lesymap_cohort.phenotype["score"].to_numpy()
    keep = (labels > 0) & (loads.std(axis=0) > 0)
    r = np.array([np.corrcoef(loads[:, k], y)[0, 1] for k in np.flatnonzero(keep)])
    best = labels[np.flatnonzero(keep)][np.argmin(r)]
    assert best == 101
    assert r.min() < -0.8


def test_lesymap_score_count_mismatch(tmp_path, shared_data_dir):
    import shutil

    from lsm.datasets._lesymap import _read_scores

    shutil.copy(shared_data_dir / "lesymap" / "behavior.txt", tmp_path / "behavior.txt")
    with pytest.raises(DataFetchError, match="131 scores but there are 130 lesion files"):
        _read_scores(tmp_path / "behavior.txt", 130)
