"""Registration of native-space lesions to MNI (lsm.registration).

Tests without ANTs (input checks, the synthetic generator, the "ANTs missing" error) run in
the core environment; tests marked ``registration`` need ANTsPy and run in CI's second
environment (``pip install ".[registration,test]"``). The accuracy study on 2 mm cases is
also marked ``slow``.
"""

import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lsm.exceptions import LesionImageError, MissingDependencyError, TemplateSpaceWarning
from lsm.registration._register import check_inputs
from lsm.registration._synthetic import synthetic_case, template_images


@pytest.fixture(scope="module")
def tpl2():
    return template_images(2)


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _truth_on(case, affine, shape):
    """The planted template-space lesion on a target grid (linear, >= 0.5), independent of ANTs."""
    from scipy import ndimage

    truth = case["truth"]
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    src = np.linalg.solve(truth.affine, np.vstack([world, np.ones(world.shape[1])]))[:3]
    vals = ndimage.map_coordinates(truth.get_fdata().astype(np.float32), src, order=1, cval=0.0)
    return vals.reshape(shape) >= 0.5


# ------------------------------------------------------------ without ANTs
def test_synthetic_case_plants_the_requested_lesion(tpl2):
    case = synthetic_case("ct", lesion_ml=20.0, voxel_size=3.0, random_state=3, template=tpl2)
    assert abs(case["truth_ml"] - 20.0) <= 8 / 1000 * 1.01  # whole 2 mm voxels
    truth = case["truth"].get_fdata() > 0
    xs = (case["truth"].affine[:3, :3] @ np.argwhere(truth).T + case["truth"].affine[:3, 3:4])[0]
    assert (xs < 0).all() if case["hemisphere"] == "left" else (xs > 0).all()
    img = case["image"].get_fdata()
    assert img.min() <= -900 and img.max() >= 1000  # air and skull in HU
    les = case["lesion"].get_fdata() > 0
    # hypodense lesion: darker than the surrounding brain
    assert np.median(img[les]) < 25
    native_ml = les.sum() * 27 / 1000
    det = abs(np.linalg.det(case["native_to_template"][:3, :3]))
    assert native_ml == pytest.approx(case["truth_ml"] / det, rel=0.25)



def test_binarize_keeps_the_interpolated_volume():
    from lsm.registration._register import _binarize

    rng = np.random.default_rng(0)
    frac = np.where(rng.random((12, 12, 12)) < 0.3, rng.random((12, 12, 12)), 0.0)
    got = _binarize(frac)
    # brute force: the round(sum) largest values, nothing below the smallest of them
    k = int(round(frac.sum()))
    top = np.sort(frac.ravel())[::-1][:k]
    assert got.sum() == k
    assert frac[got].min() == top[-1] and np.isclose(frac[got].sum(), top.sum())
    # a lesion that warps to less than half of any voxel is not lost
    tiny = np.zeros((4, 4, 4))
    tiny[1:3, 1:3, 1:3] = np.linspace(0.1, 0.3, 8).reshape(2, 2, 2)
    assert np.array_equal(np.flatnonzero(_binarize(tiny)), np.sort(np.argsort(tiny, axis=None)[-2:]))

def test_check_inputs_names_subject_and_shapes(tmp_path):
    img = nib.Nifti1Image(np.zeros((10, 12, 14), np.float32), np.eye(4))
    les = np.zeros((10, 12, 13), np.uint8)
    les[4, 4, 4] = 1
    with pytest.raises(LesionImageError, match=r"sub-07.*\(10, 12, 14\).*\(10, 12, 13\)"):
        check_inputs("sub-07", img, nib.Nifti1Image(les, np.eye(4)))


@pytest.mark.parametrize("values, match", [
    (lambda a: a * 0, "is empty"),
    (lambda a: a * 0.5, "not binary: values 0, 0.5"),
    (lambda a: np.where(a > 0, np.nan, 0), "NaN"),
])
def test_check_inputs_rejects_bad_lesions(values, match):
    base = np.zeros((8, 8, 8), np.float32)
    base[3:5, 3:5, 3:5] = 1
    img = nib.Nifti1Image(base.copy(), np.eye(4))
    with pytest.raises(LesionImageError, match=match):
        check_inputs("sub-1", img, nib.Nifti1Image(values(base).astype(np.float32), np.eye(4)))


def test_check_inputs_rejects_4d_image():
    img = nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4))
    les = nib.Nifti1Image(np.ones((8, 8, 8), np.uint8), np.eye(4))
    with pytest.raises(LesionImageError, match=r"sub-2.*3D image.*\(8, 8, 8, 3\)"):
        check_inputs("sub-2", img, les)


def test_missing_ants_says_how_to_install(monkeypatch, tmp_path, capsys):
    import lsm
    from lsm.cli import main

    monkeypatch.setitem(sys.modules, "ants", None)  # import ants -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "lsm\[registration\]"'):
        lsm.register_lesions({"sub-1": "a.nii.gz"}, {"sub-1": "b.nii.gz"}, modality="ct")
    img = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    nib.save(img, tmp_path / "sub-1_ct.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.uint8), np.eye(4)), tmp_path / "sub-1_lesion.nii.gz")
    code = main(["register", "--images", str(tmp_path / "sub-1_ct.nii.gz"), "--lesions",
                 str(tmp_path / "sub-1_lesion.nii.gz"), "--modality", "ct", "--output", str(tmp_path / "out")])
    assert code == 1
    assert 'pip install "lsm[registration]"' in capsys.readouterr().err


def test_import_lsm_and_cli_never_import_ants():
    import subprocess

    code = ("import sys, lsm, lsm.cli, lsm.registration; lsm.cli.build_parser(); lsm.register_lesions; "
            "print('ants' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_mixed_template_spaces_warn():
    from lsm.registration._spaces import warn_mixed_spaces

    class C:
        metadata = {"template_space": "MNI152NLin2009aSym"}

    with pytest.warns(TemplateSpaceWarning, match="MNI152NLin2009aSym.*MNI152NLin6Asym"):
        assert warn_mixed_spaces(C(), "the arterial atlas")
    C.metadata = {"template_space": "MNI152NLin6Asym"}
    assert not warn_mixed_spaces(C(), "the arterial atlas")


# ------------------------------------------------------------ with ANTs
@pytest.fixture(scope="module")
def small_cases(tpl2):
    """Two CT cases on 4 mm native grids (fast), lesions of 40 and 15 ml."""
    pytest.importorskip("ants")
    return {f"sub-{i}": synthetic_case("ct", lesion_ml=ml, voxel_size=4.0, random_state=i, template=tpl2)
            for i, ml in ((1, 40.0), (2, 15.0))}


@pytest.fixture(scope="module")
def small_result(small_cases):
    pytest.importorskip("ants")
    import lsm

    return lsm.register_lesions({s: c["image"] for s, c in small_cases.items()},
                                {s: c["lesion"] for s, c in small_cases.items()},
                                modality="ct", resolution=4, random_state=7, n_jobs=2)


@pytest.mark.registration
def test_small_ct_case_recovers_the_lesion(small_result, small_cases):
    from lsm._images import mni_grid

    affine, shape = mni_grid(4)
    for s, case in small_cases.items():
        out = small_result.lesions[s]
        assert out.shape == shape and np.allclose(out.affine, affine)
        truth = _truth_on(case, affine, shape)
        got = np.asarray(out.dataobj) > 0
        assert _dice(got, truth) >= 0.7, s
        assert 0.75 <= got.sum() / truth.sum() <= 1.25, s
    qc = small_result.to_dataframe()
    assert list(qc.index) == ["sub-1", "sub-2"]
    assert (qc["brain_dice"] > 0.85).all()
    assert qc["hemisphere"].tolist() == [small_cases[s]["hemisphere"] for s in qc.index]
    assert small_result.excluded.empty
    assert small_result.params["template_space"] == "MNI152NLin2009aSym"
    assert "flagged" in str(small_result.summary())


@pytest.mark.registration
def test_to_cohort_joins_phenotype_and_records_the_template(small_result):
    phenotype = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"], "nihss": [4, 9, 2]})
    with pytest.warns(lsm_warning()):
        cohort = small_result.to_cohort(phenotype)
    assert cohort.space == "MNI" and list(cohort.subjects) == ["sub-1", "sub-2"]
    assert cohort.metadata["template_space"] == "MNI152NLin2009aSym"
    np.testing.assert_array_equal(cohort.lesion_mask("sub-2"), np.asarray(small_result.lesions["sub-2"].dataobj) > 0)
    assert "sub-3" in set(cohort.excluded["subject"])


def lsm_warning():
    from lsm.exceptions import DroppedSubjectsWarning

    return DroppedSubjectsWarning


@pytest.mark.registration
def test_same_seed_gives_identical_masks_for_any_n_jobs(small_result, small_cases):
    import lsm

    again = lsm.register_lesions({s: c["image"] for s, c in small_cases.items()},
                                 {s: c["lesion"] for s, c in small_cases.items()},
                                 modality="ct", resolution=4, random_state=7, n_jobs=1)
    for s in small_cases:
        np.testing.assert_array_equal(np.asarray(again.lesions[s].dataobj),
                                      np.asarray(small_result.lesions[s].dataobj))
    pd.testing.assert_series_equal(again.qc["mni_ml"], small_result.qc["mni_ml"])


@pytest.mark.registration
def test_save_load_and_qc_page(small_result, tmp_path):
    from lsm.registration import RegistrationResult

    small_result.save(tmp_path / "reg")
    names = {p.relative_to(tmp_path / "reg").as_posix() for p in (tmp_path / "reg").rglob("*") if p.is_file()}
    assert "sub-1/anat/sub-1_space-MNI152NLin2009aSym_res-4_desc-lesion_mask.nii.gz" in names
    assert "sub-1/xfm/sub-1_from-native_to-MNI152NLin2009aSym_mode-image_xfm.mat" in names
    assert {"qc.tsv", "qc.json", "qc.html", "dataset_description.json"} <= names
    back = RegistrationResult.load(tmp_path / "reg")
    for s in small_result.lesions:
        np.testing.assert_array_equal(np.asarray(back.lesions[s].dataobj), np.asarray(small_result.lesions[s].dataobj))
    pd.testing.assert_frame_equal(back.qc, small_result.qc, check_dtype=False, atol=1e-9)
    page = (tmp_path / "reg" / "qc.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "sub-2" in page
    with pytest.raises(FileExistsError):
        small_result.save(tmp_path / "reg")


@pytest.mark.registration
def test_cli_register_is_resumable(small_cases, tmp_path):
    from lsm.cli import main

    pytest.importorskip("ants")
    for s, c in small_cases.items():
        nib.save(c["image"], tmp_path / f"{s}_ct.nii.gz")
        nib.save(c["lesion"], tmp_path / f"{s}_lesion.nii.gz")
    out = tmp_path / "out"
    base = ["register", "--modality", "ct", "--resolution", "4", "--output", str(out), "--quiet"]
    assert main(base + ["--images", str(tmp_path / "sub-1_ct.nii.gz"), "--lesions",
                        str(tmp_path / "sub-1_lesion.nii.gz")]) == 0
    first = out / "sub-1" / "anat" / "sub-1_space-MNI152NLin2009aSym_res-4_desc-lesion_mask.nii.gz"
    stamp = first.stat().st_mtime_ns
    assert main(base + ["--images", str(tmp_path / "*_ct.nii.gz"), "--lesions",
                        str(tmp_path / "*_lesion.nii.gz")]) == 0
    assert first.stat().st_mtime_ns == stamp  # sub-1 skipped
    qc = pd.read_csv(out / "qc.tsv", sep="\t")
    assert qc["participant_id"].tolist() == ["sub-1", "sub-2"]


@pytest.mark.registration
def test_failed_registration_is_listed_not_dropped(small_cases, monkeypatch):
    pytest.importorskip("ants")
    import lsm
    from lsm.registration import _register

    real = _register._register_one

    def flaky(subject, *args):
        if subject == "sub-2":
            raise RuntimeError("Registration failed with error code 1")
        return real(subject, *args)

    monkeypatch.setattr(_register, "_register_one", flaky)
    res = lsm.register_lesions({s: c["image"] for s, c in small_cases.items()},
                               {s: c["lesion"] for s, c in small_cases.items()}, modality="ct", resolution=4)
    assert list(res.lesions) == ["sub-1"]
    assert res.excluded["subject"].tolist() == ["sub-2"]
    assert "error code 1" in res.excluded["reason"].iloc[0]


@pytest.mark.registration
def test_register_lesions_rejects_lesion_as_large_as_brain(tpl2):
    pytest.importorskip("ants")
    import lsm

    case = synthetic_case("t1", lesion_ml=10.0, voxel_size=4.0, random_state=5, template=tpl2)
    brainish = (case["image"].get_fdata() > 0).astype(np.uint8)
    with pytest.raises(LesionImageError, match="sub-9.*as large as the brain"):
        lsm.register_lesions({"sub-9": case["image"]}, {"sub-9": nib.Nifti1Image(brainish, case["image"].affine)},
                             modality="t1", resolution=4)


# ------------------------------------------------------------ accuracy study (slow)
@pytest.mark.registration
@pytest.mark.slow
@pytest.mark.parametrize("modality", ["t1", "ct"])
def test_accuracy_at_2mm(modality):
    """Median lesion Dice >= 0.88 and volume within 10 % over 5 cases of 5-150 ml."""
    import lsm
    from lsm._images import mni_grid

    pytest.importorskip("ants")
    tpl = template_images(1)
    volumes = [5.0, 20.0, 45.0, 90.0, 150.0]
    cases = {f"sub-{i}": synthetic_case(modality, lesion_ml=v, voxel_size=2.0, random_state=100 + i, template=tpl)
             for i, v in enumerate(volumes)}
    res = lsm.register_lesions({s: c["image"] for s, c in cases.items()}, {s: c["lesion"] for s, c in cases.items()},
                               modality=modality, n_jobs=2)
    affine, shape = mni_grid(2)
    dice, ratio = [], []
    for s, case in cases.items():
        truth = _truth_on(case, affine, shape)
        got = np.asarray(res.lesions[s].dataobj) > 0
        dice.append(_dice(got, truth))
        ratio.append(got.sum() / truth.sum())
    assert np.median(dice) >= 0.88, dice
    # volume within 10 % for every case, the 5 ml lesion included (the requirement)
    assert all(0.9 <= r <= 1.1 for r in ratio), ratio
    # masking never worse than no masking on the largest lesion
    big = "sub-4"
    plain = lsm.register_lesions({big: cases[big]["image"]}, {big: cases[big]["lesion"]}, modality=modality,
                                 cost_function_masking=False, lesion_filling=False)
    truth = _truth_on(cases[big], affine, shape)
    assert dice[-1] >= _dice(np.asarray(plain.lesions[big].dataobj) > 0, truth) - 0.005


# ------------------------------------------------------------ ISLES'24 end to end
@pytest.mark.registration
def test_isles24_register_then_vlsm_territory_and_qc_page(tmp_path, tpl2, shared_data_dir):
    pytest.importorskip("ants")
    import warnings

    import lsm
    from lsm.datasets import load_isles24
    from lsm.registration._synthetic import make_isles24_tree

    root = tmp_path / "isles24"
    cases = make_isles24_tree(root, n_subjects=6, voxel_size=4.0, random_state=11, template=tpl2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsm.exceptions.DroppedSubjectsWarning)
        cohort = load_isles24(root, register=True, registration_kwargs={"resolution": 4, "n_jobs": 2})
    assert cohort.space == "MNI" and len(cohort) == 6
    assert cohort.metadata["template_space"] == "MNI152NLin2009aSym"
    qc = cohort.metadata["registration_qc"]
    assert list(qc.index) == sorted(cases)
    cache = root / "derivatives" / "lsm-registration_ncct"
    assert (cache / "qc.html").exists() and (cache / "dataset_description.json").exists()
    # the lesions land where they were planted
    for s, case in cases.items():
        truth = _truth_on(case, cohort.affine, cohort.shape)
        assert _dice(cohort.lesion_mask(s), truth) >= 0.6, s
    # cached: a second load registers nothing (the mask files are not rewritten)
    mask = cache / "sub-stroke0001" / "anat" / "sub-stroke0001_space-MNI152NLin2009aSym_res-4_desc-lesion_mask.nii.gz"
    stamp = mask.stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsm.exceptions.DroppedSubjectsWarning)
        again = load_isles24(root, register=True, registration_kwargs={"resolution": 4})
    assert mask.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.lesion_matrix().toarray(), cohort.lesion_matrix().toarray())
    # the analyses that refused the native cohort now run
    result = lsm.vlsm(cohort, "nihss_admission", method="regression", n_permutations=50, random_state=0,
                      min_lesioned=2)
    assert result.n_tested > 0
    with pytest.warns(TemplateSpaceWarning):
        loads = lsm.territory_load(cohort)
    assert (loads["lesion_volume_ml"] > 0).all()
    _render_in_chromium(cache / "qc.html", tmp_path)


def _render_in_chromium(page, tmp_path):
    import shutil
    import subprocess

    import matplotlib.image as mpimg

    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                   None)
    if browser is None:
        return  # the page was checked as text above; CI installs chromium
    png = tmp_path / "qc.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,2400", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rgb = mpimg.imread(png)[..., :3]
    assert (rgb.mean(axis=2) < 0.2).mean() > 0.02  # text and overlays drawn
    blue = np.all(np.abs(rgb - np.array([0x2a, 0x5d, 0x8f]) / 255) < 0.03, axis=2)
    assert blue.sum(axis=1).max() > 600  # the report's header rule
