"""The demo (``lsm demo`` / :func:`lsm.demo.run_demo`) and its planted-region recovery check."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import lsm
from lsm.demo import recovery, run_demo
from lsm.exceptions import OutputExistsError
from lsm.results import VLSMResult
from lsm.simulate import make_synthetic_cohort

from cli_helpers import console_script, run_lsm


def _data(img):
    return np.asarray(img.dataobj)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "lsm_demo"
    return run_demo(out, n_permutations=200, random_state=0)


def test_demo_recovers_the_planted_region(demo_run):
    rec = demo_run.recovery
    assert rec["recovered"], demo_run.summary()
    assert rec["n_significant"] > 0 and rec["sensitivity"] >= 0.5
    assert "RECOVERED" in demo_run.summary()
    # the analysis the demo promises: Student t, FWE, 200 permutations, every subject
    params = demo_run.result.params
    assert (params["method"], params["correction"], params["n_permutations"]) == ("ttest", "fwe", 200)
    assert demo_run.result.provenance["n_subjects"] == len(demo_run.cohort) == 200


def test_demo_outputs_are_complete_and_loadable(demo_run):
    out = demo_run.output
    for name in ("report.html", "dataset_description.json", "vlsm.json", "vlsm_clusters.tsv",
                 "desc-count_overlap.nii.gz", "desc-planted_mask.nii.gz", "participants.tsv", "demo.json"):
        assert (out / name).is_file(), name
    # every NIfTI has its JSON sidecar with a description
    for nii in out.glob("*.nii.gz"):
        sidecar = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Description"], nii.name
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]

    loaded = VLSMResult.load(out)
    for name in ("z", "p_corrected", "significant"):
        np.testing.assert_array_equal(_data(getattr(loaded, name)), _data(getattr(demo_run.result, name)))

    cohort = demo_run.cohort
    overlap = nib.load(out / "desc-count_overlap.nii.gz")
    expected = np.sum([cohort.lesion_mask(s).astype(int) for s in cohort.subjects], axis=0)
    np.testing.assert_array_equal(_data(overlap), expected)
    np.testing.assert_array_equal(_data(nib.load(out / "desc-planted_mask.nii.gz")).astype(bool),
                                  cohort.metadata["truth_mask"])

    clusters = pd.read_csv(out / "vlsm_clusters.tsv", sep="\t")
    assert clusters["n_voxels"].sum() == demo_run.recovery["n_significant"]
    participants = pd.read_csv(out / "participants.tsv", sep="\t", index_col="participant_id")
    assert list(participants.index) == cohort.subjects
    np.testing.assert_allclose(participants["lesion_volume_ml"], cohort.lesion_volumes)

    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and html.rstrip().endswith("</html>")
    assert "data:image/png;base64," in html
    assert "lsm demo: VLSM of a synthetic cohort with a planted region" in html


def test_demo_refuses_to_overwrite(tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        run_demo(out, n_subjects=20, n_permutations=10)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_demo_rejects_tiny_cohorts(tmp_path):
    with pytest.raises(ValueError, match="n_subjects"):
        run_demo(tmp_path / "x", n_subjects=3)
    assert not (tmp_path / "x").exists()


def test_small_demo_runs(tmp_path):
    """Any n_subjects >= 10 runs (lsm.vlsm's 5% default means fewer than 2 subjects below 40)."""
    run = run_demo(tmp_path / "small", n_subjects=12, n_permutations=10)
    assert run.result.params["min_lesioned_count"] == 2
    tested = np.asarray(run.result.mask_img.dataobj).astype(bool)
    counts = np.asarray(run.result.n_lesioned.dataobj)
    assert tested.any() and counts[tested].min() >= 2 and (12 - counts[tested]).min() >= 2


def test_recovery_by_hand():
    """recovery() on a hand-built result: every number counted here independently."""
    shape = (9, 9, 9)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -8.0  # voxel (4, 4, 4) is at the origin
    center, radius = np.zeros(3), 2.5
    ijk = np.indices(shape).reshape(3, -1).T
    dist = np.linalg.norm(ijk * 2.0 - 8.0, axis=1)
    truth = (dist <= radius).reshape(shape)  # the centre voxel and its 6 face neighbours
    assert truth.sum() == 7
    tested = np.ones(ijk.shape[0], bool)
    tested[np.ravel_multi_index((4, 4, 5), shape)] = False  # one planted voxel untested
    sig_voxels = [(4, 4, 4), (3, 4, 4), (5, 4, 4), (4, 3, 4), (0, 0, 0)]  # 4 planted + 1 far away
    z_full = np.zeros(ijk.shape[0])
    significant = np.zeros(ijk.shape[0], bool)
    for v, value in zip(sig_voxels, (5.0, 4.0, 4.5, 3.9, -6.0)):
        flat = np.ravel_multi_index(v, shape)
        significant[flat], z_full[flat] = True, value
    t = tested.copy()
    result = VLSMResult.from_arrays(
        affine=affine, shape=shape, tested=t, stat=z_full[t], z=z_full[t],
        p=np.full(t.sum(), 0.5), p_corrected=np.where(significant[t], 0.01, 1.0),
        significant=significant[t], n_lesioned=np.full(ijk.shape[0], 5), threshold=3.5,
        null_distribution=None, params={}, provenance={},
    )
    rec = recovery(result, truth, center, radius, margin_mm=2.0)
    assert rec["n_planted_voxels"] == 7 and rec["n_planted_tested"] == 6
    assert rec["n_significant"] == 5
    assert rec["sensitivity"] == pytest.approx(4 / 6)
    assert rec["localised"] == pytest.approx(4 / 5)  # (0,0,0) is 13.9 mm away
    # the strongest |z| is the negative far voxel: a negative peak is not a recovery
    assert rec["peak_z"] == -6.0 and rec["peak_mm"] == [-8.0, -8.0, -8.0]
    assert rec["peak_distance_mm"] == pytest.approx(np.sqrt(3) * 8)
    assert rec["recovered"] is False

    significant[np.ravel_multi_index((0, 0, 0), shape)] = False
    result = VLSMResult.from_arrays(
        affine=affine, shape=shape, tested=t, stat=z_full[t], z=z_full[t],
        p=np.full(t.sum(), 0.5), p_corrected=np.where(significant[t], 0.01, 1.0),
        significant=significant[t], n_lesioned=np.full(ijk.shape[0], 5), threshold=3.5,
        null_distribution=None, params={}, provenance={},
    )
    rec = recovery(result, truth, center, radius)
    assert rec["peak_z"] == 5.0 and rec["peak_distance_mm"] == 0.0
    assert rec["localised"] == 1.0 and rec["recovered"] is True


def test_no_planted_effect_is_not_recovered():
    cohort = make_synthetic_cohort(120, effect_size=0.0, lesion_radius=(10.0, 20.0), random_state=5)
    result = lsm.vlsm(cohort, "score", method="ttest", n_permutations=200, correction="fwe",
                      random_state=5)
    meta = cohort.metadata
    rec = recovery(result, meta["truth_mask"], meta["effect_center"], meta["effect_radius"])
    assert rec["recovered"] is False


def test_lsm_demo_console_script(tmp_path):
    """What CI does first: the console script writes report.html and says RECOVERED."""
    exe = console_script()
    if exe is None:
        pytest.skip("the 'lsm' console script is not installed (pip install . creates it)")
    out = tmp_path / "lsm_demo"
    proc = run_lsm("demo", "--output", out, "--n-permutations", "200", exe=exe)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").is_file()
    assert "planted region RECOVERED" in proc.stdout
    # a second run refuses to replace the folder, in one line
    proc = run_lsm("demo", "--output", out, "--n-permutations", "200", exe=exe)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("lsm: error:") and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
