"""Seed-dataset layout loaders on tiny trees built in each documented layout.

The trees use the datasets' real file naming and column names with 5x6x7 images; every
expected value below comes from what the test wrote, not from the loader.
"""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lsm.datasets import load_atlas_r2, load_isles24, load_jhu_stroke
from lsm.exceptions import CohortError, DroppedSubjectsWarning, PhenotypeError, SpaceError

SHAPE = (5, 6, 7)
MNI_AFFINE = np.array([[2.0, 0, 0, -4], [0, 2, 0, -5], [0, 0, 2, -6], [0, 0, 0, 1]])


def _mask(seed, shape=SHAPE, n=6):
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.uint8)
    flat = rng.choice(data.size, size=n, replace=False)
    data.flat[flat] = 1
    return data


def _save(path, data, affine=MNI_AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return data


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        return func(*args, **kwargs)


# ----------------------------------------------------------------------- JHU
@pytest.fixture
def jhu_tree(tmp_path):
    root = tmp_path / "ICPSR_38464"
    mni = root / "derivatives" / "DWI-MNI-IntensityNormalized"
    masks = {}
    for i, sub in enumerate(["sub-00001", "sub-00002", "sub-00004"]):
        folder = mni / sub / "ses-1"
        masks[sub] = _save(folder / f"{sub}_ses-1_space-MNI152_desc-lesion_mask.nii.gz", _mask(i))
        # Other derivatives beside the mask (intensity-normalised DWI) must be ignored.
        _save(folder / f"{sub}_ses-1_space-MNI152_desc-normalized_dwi.nii.gz",
              np.full(SHAPE, 7.5, dtype=np.float32))
        # Native-space masks in another derivatives folder must be ignored too.
        _save(root / "derivatives" / "DWI-native" / sub / "ses-1" / f"{sub}_ses-1_desc-lesion_mask.nii.gz",
              _mask(i, shape=(3, 3, 3), n=2), np.eye(4))
    pd.DataFrame({
        "participant_id": ["sub-00001", "sub-00002", "sub-00003", "sub-00004"],
        "Age": ["71", "64", "80", "89+"],
        "Gender": ["F", "M", "M", "F"],
        "NIHSS": ["4", "n/a", "12", "20"],
        "mRS": ["1", "3", "n/a", "5"],
    }).to_csv(root / "participants.tsv", sep="\t", index=False)
    for sub, hemi in (("sub-00001", "L"), ("sub-00002", "R"), ("sub-00004", "B")):
        folder = root / "phenotype" / sub / "ses-1"
        folder.mkdir(parents=True)
        pd.DataFrame({"participant_id": [sub], "Lesion_hemisphere": [hemi], "Stroke_type": ["ischemic"]}
                     ).to_csv(folder / f"{sub}_ses-1_phenotype.tsv", sep="\t", index=False)
    return root, masks


def test_jhu_loads_mni_masks_and_merged_phenotype(jhu_tree):
    root, masks = jhu_tree
    cohort = _quiet(load_jhu_stroke, root)
    assert cohort.subjects == ["sub-00001", "sub-00002", "sub-00004"]
    assert cohort.space == "MNI"
    assert cohort.shape == SHAPE and np.allclose(cohort.affine, MNI_AFFINE)
    for sub, data in masks.items():
        np.testing.assert_array_equal(cohort.lesion_mask(sub), data.astype(bool))
    ph = cohort.phenotype
    assert {"age", "sex", "nihss_admission", "mrs", "hemisphere", "lesion_type"} <= set(ph.columns)
    assert ph.loc["sub-00001", "nihss_admission"] == 4
    assert np.isnan(ph.loc["sub-00002", "nihss_admission"])
    assert ph.loc["sub-00004", "age"] == 89  # '89+' top-coded
    assert list(ph["hemisphere"]) == ["left", "right", "bilateral"]
    assert cohort.metadata["renamed"]["NIHSS"] == "nihss_admission"
    assert cohort.metadata["renamed"]["Gender"] == "sex"
    # The participants row without a mask is listed, with its reason.
    assert cohort.excluded["subject"].tolist() == ["sub-00003"]
    assert "without a lesion mask" in cohort.excluded["reason"].item()


def test_jhu_several_sessions_need_a_choice(jhu_tree):
    root, masks = jhu_tree
    second = _mask(99)
    _save(root / "derivatives" / "DWI-MNI-IntensityNormalized" / "sub-00001" / "ses-2"
          / "sub-00001_ses-2_space-MNI152_desc-lesion_mask.nii.gz", second)
    with pytest.raises(CohortError, match=r"sub-00001 has 2 MNI lesion masks.*session="):
        load_jhu_stroke(root)
    cohort = _quiet(load_jhu_stroke, root, session="2")
    assert cohort.subjects == ["sub-00001"]
    np.testing.assert_array_equal(cohort.lesion_mask("sub-00001"), second.astype(bool))


def test_jhu_conflicting_phenotype_values_are_an_error(jhu_tree):
    root, _ = jhu_tree
    pd.DataFrame({"participant_id": ["sub-00001"], "NIHSS": ["9"]}).to_csv(
        root / "phenotype" / "sub-00001" / "ses-1" / "sub-00001_ses-1_nihss.tsv", sep="\t", index=False)
    with pytest.raises(PhenotypeError, match=r"sub-00001: column .nihss_admission. is .4. in participants.tsv but .9."):
        load_jhu_stroke(root)


def test_jhu_missing_derivatives_folder(tmp_path):
    (tmp_path / "derivatives").mkdir()
    with pytest.raises(CohortError, match="DWI-MNI-IntensityNormalized"):
        load_jhu_stroke(tmp_path)


# ---------------------------------------------------------------- ATLAS 2.0
ATLAS2_MASK = "{sub}_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz"


@pytest.fixture
def atlas2_tree(tmp_path):
    root = tmp_path / "ATLAS_2"
    masks = {}
    for i, (site, sub) in enumerate([("R001", "sub-r001s001"), ("R001", "sub-r001s002"), ("R002", "sub-r002s001")]):
        anat = root / "Training" / site / sub / "ses-1" / "anat"
        masks[sub] = _save(anat / ATLAS2_MASK.format(sub=sub), _mask(10 + i))
        _save(anat / f"{sub}_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz", np.full(SHAPE, 300, dtype=np.int16))
    pd.DataFrame({
        "Subject ID": ["sub-r001s001", "sub-r001s002", "sub-r002s001", "sub-r003s001"],
        "Session": ["ses-1"] * 4,
        "# Lesions LH Cortical and White Matter": [0, 1, 2, 0],
        "Primary Stroke Hemisphere": ["Left", "Right", "Left", "Right"],
        "Primary Stroke Location": ["Subcortical", "Cortical", "Subcortical", "Other"],
        "Lesion Volume": [1234.0, 56.0, 7890.0, 10.0],
        "Scanner Strength": ["3T", "1.5T", "3T", "3T"],
        "Days Post Stroke": [200, None, 365, 400],
        "Chronicity": [180, 180, 180, 180],
        "ATLAS 1.2": [1, 0, 0, 1],
    }).to_excel(root / "20220425_ATLAS_2.0_MetaData.xlsx", index=False)
    return root, masks


def test_atlas_r2(atlas2_tree):
    root, masks = atlas2_tree
    cohort = _quiet(load_atlas_r2, root)
    assert cohort.subjects == sorted(masks)
    for sub, data in masks.items():
        np.testing.assert_array_equal(cohort.lesion_mask(sub), data.astype(bool))
    ph = cohort.phenotype
    assert ph.loc["sub-r001s002", "hemisphere"] == "right"
    assert ph.loc["sub-r002s001", "lesion_volume_mm3"] == 7890.0
    assert ph.loc["sub-r001s002", "n_lesions_lh_cortical_and_white_matter"] == 1
    assert np.isnan(ph.loc["sub-r001s002", "days_post_stroke"])
    assert ph.loc["sub-r001s001", "atlas_1_2"] == 1
    assert cohort.metadata["renamed"]["Primary Stroke Hemisphere"] == "hemisphere"
    assert cohort.excluded["subject"].tolist() == ["sub-r003s001"]
    assert cohort.metadata["dataset"] == "ATLAS R2.0"


def test_atlas_r2_subject_with_several_rows_and_no_mask_is_listed(atlas2_tree):
    """A metadata subject with one row per session but no mask is not lost silently: it
    is listed in `excluded` (once) as a phenotype row without a lesion mask."""
    root, masks = atlas2_tree
    meta = root / "20220425_ATLAS_2.0_MetaData.xlsx"
    table = pd.read_excel(meta)
    extra = table[table["Subject ID"] == "sub-r003s001"].assign(Session="ses-2")
    pd.concat([table, extra], ignore_index=True).to_excel(meta, index=False)
    cohort = _quiet(load_atlas_r2, root)
    assert cohort.subjects == sorted(masks)
    assert cohort.excluded.to_dict("records") == [
        {"subject": "sub-r003s001", "source": "phenotype", "reason": "phenotype row without a lesion mask"}
    ]


def test_atlas_needs_one_metadata_file(atlas2_tree):
    root, _ = atlas2_tree
    (root / "copy_MetaData.csv").write_text("Subject ID\nsub-r001s001\n")
    with pytest.raises(PhenotypeError, match="found 2.*metadata="):
        load_atlas_r2(root)
    cohort = _quiet(load_atlas_r2, root, metadata=root / "20220425_ATLAS_2.0_MetaData.xlsx")
    assert len(cohort) == 3


def test_atlas_invalid_release(atlas2_tree):
    with pytest.raises(ValueError, match="'release' parameter"):
        load_atlas_r2(atlas2_tree[0], release="3.0")


# ---------------------------------------------------------------- ATLAS 1.1
def test_atlas_r11(tmp_path):
    root = tmp_path / "ATLAS R 1.1"
    one = _save(root / "Site1" / "031768" / "t01" / "031768_LesionSmooth_stx.nii.gz", _mask(1))
    part1, part2 = _mask(2), _mask(3)
    _save(root / "Site1" / "031769" / "t01" / "031769_LesionSmooth_1_stx.nii.gz", part1)
    _save(root / "Site1" / "031769" / "t01" / "031769_LesionSmooth_2_stx.nii.gz", part2)
    first = _save(root / "Site2" / "031770" / "t01" / "031770_LesionSmooth_stx.nii.gz", _mask(4))
    _save(root / "Site2" / "031770" / "t02" / "031770_LesionSmooth_stx.nii.gz", _mask(5))
    _save(root / "Site1" / "031768" / "t01" / "031768_t1w_deface_stx.nii.gz", np.full(SHAPE, 9, np.int16))
    pd.DataFrame({
        "INDI Site ID": ["Site1", "Site1", "Site2", "Site2"],
        "INDI Subject ID": [31768, 31769, 31770, 31770],  # as a spreadsheet stores them
        "Session": ["t01", "t01", "t01", "t02"],
        "Hemisphere": ["L", "R", "L", "L"],
    }).to_csv(root / "ATLAS_Meta-Data_Release_1.1_standard_mni.csv", index=False)
    cohort = _quiet(load_atlas_r2, root, release="1.1")
    assert cohort.subjects == ["sub-031768", "sub-031769", "sub-031770"]
    np.testing.assert_array_equal(cohort.lesion_mask("sub-031768"), one.astype(bool))
    np.testing.assert_array_equal(cohort.lesion_mask("sub-031769"), (part1 | part2).astype(bool))
    np.testing.assert_array_equal(cohort.lesion_mask("sub-031770"), first.astype(bool))
    assert cohort.phenotype.loc["sub-031769", "hemisphere"] == "right"
    assert cohort.phenotype.loc["sub-031770", "session"] == "t01"
    cohort2 = _quiet(load_atlas_r2, root, release="1.1", session="t02")
    assert cohort2.subjects == ["sub-031770"]
    assert cohort2.phenotype.loc["sub-031770", "session"] == "t02"


# ------------------------------------------------------------------ ISLES'24
@pytest.fixture
def isles_tree(tmp_path):
    root = tmp_path / "isles24" / "train"
    masks = {}
    grids = {"sub-stroke0001": ((5, 6, 7), np.diag([0.45, 0.45, 2.0, 1])),
             # Scanner coordinates far from the first subject's field of view, LPS order.
             "sub-stroke0002": ((6, 5, 4), np.array([[-0.5, 0, 0, 300.0], [0, -0.5, 0, -200.0],
                                                     [0, 0, 5.0, 500.0], [0, 0, 0, 1]])),
             "sub-stroke0003": ((4, 4, 4), np.diag([0.4, 0.4, 3.0, 1]))}
    for i, (sub, (shape, affine)) in enumerate(grids.items()):
        deriv = root / "derivatives" / sub
        masks[sub] = (_save(deriv / "ses-02" / f"{sub}_ses-02_space-ncct_lesion-msk.nii.gz",
                            _mask(20 + i, shape, n=5), affine), affine)
        _save(deriv / "ses-01" / f"{sub}_ses-01_space-ncct_cow-msk.nii.gz", _mask(1, shape, n=3) * 4, affine)
        _save(deriv / "ses-02" / f"{sub}_ses-02_space-ncct_adc.nii.gz", np.full(shape, 900, np.int16), affine)
    clinical = {
        "sub-stroke0001": (67, "M", 12, 4, 2),
        "sub-stroke0002": (80, "F", 21, 5, 6),
        "sub-stroke0004": (55, "F", 3, 1, 0),
    }
    for sub, (age, sex, nihss, mrs0, mrs3) in clinical.items():
        ses1 = root / "phenotype" / sub / "ses-01"
        ses2 = root / "phenotype" / sub / "ses-02"
        ses1.mkdir(parents=True)
        ses2.mkdir(parents=True)
        pd.DataFrame({"Age": [age], "Sex": [sex], "NIHSS at admission": [nihss], "mRS at admission": [mrs0]}
                     ).to_excel(ses1 / f"{sub}_ses-01_demographic_baseline.xlsx", index=False)
        pd.DataFrame({"mRS 3 months": [mrs3]}).to_excel(ses2 / f"{sub}_ses-02_outcome.xlsx", index=False)
    return root, masks, clinical


def test_isles24_native(isles_tree):
    root, masks, clinical = isles_tree
    with pytest.warns(DroppedSubjectsWarning) as record:
        cohort = load_isles24(root)
    # The warning points at this file (the user's call), not at lsm internals.
    assert any(r.filename == __file__ for r in record)
    assert cohort.space == "native"
    assert "non-contrast CT space" in cohort.metadata["space_note"]
    assert cohort.subjects == ["sub-stroke0001", "sub-stroke0002"]
    ph = cohort.phenotype
    for sub in cohort.subjects:
        age, sex, nihss, mrs0, mrs3 = clinical[sub]
        assert (ph.loc[sub, "age"], ph.loc[sub, "sex"], ph.loc[sub, "nihss_admission"],
                ph.loc[sub, "mrs_admission"], ph.loc[sub, "mrs_3month"]) == (age, sex, nihss, mrs0, mrs3)
    assert cohort.metadata["renamed"]["mRS 3 months"] == "mrs_3month"
    # Volumes come from each subject's own CT voxel size.
    for sub in cohort.subjects:
        data, affine = masks[sub]
        expected = data.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000.0
        assert cohort.lesion_volumes[sub] == pytest.approx(expected)
    dropped = dict(zip(cohort.excluded["subject"], cohort.excluded["reason"]))
    assert set(dropped) == {"sub-stroke0003", "sub-stroke0004"}
    assert "without a phenotype row" in dropped["sub-stroke0003"]
    lesion_file = cohort.metadata["lesion_files"]["sub-stroke0002"]
    assert lesion_file.endswith("sub-stroke0002_ses-02_space-ncct_lesion-msk.nii.gz")
    # Every mask fits on the storage grid, whatever its scanner coordinates: nothing is cut
    # off, and the first subject (whose voxel axes the grid uses) keeps every voxel.
    assert all(cohort.lesion_indices(s).size > 0 for s in cohort.subjects)
    assert not [n for n in cohort.notes if "cut off" in n], cohort.notes
    assert cohort.lesion_indices("sub-stroke0001").size == masks["sub-stroke0001"][0].sum()


def test_isles24_native_refused_by_voxelwise_analysis(isles_tree):
    import lsm.territory as territory
    cohort = _quiet(load_isles24, isles_tree[0])
    with pytest.raises(SpaceError, match="native space"):
        territory.territory_load(cohort)


def test_isles24_with_mni_masks(isles_tree, tmp_path):
    root, _, _ = isles_tree
    mni = {sub: _save(tmp_path / "mni" / f"{sub}_space-MNI152_lesion.nii.gz", _mask(40 + i))
           for i, sub in enumerate(["sub-stroke0001", "sub-stroke0002"])}
    cohort = _quiet(load_isles24, root, mni_lesions=tmp_path / "mni")
    assert cohort.space == "MNI"
    assert "space_note" not in cohort.metadata
    for sub, data in mni.items():
        np.testing.assert_array_equal(cohort.lesion_mask(sub), data.astype(bool))


def test_isles24_empty_tree(tmp_path):
    with pytest.raises(CohortError, match="lesion-msk"):
        load_isles24(tmp_path)


def test_jhu_explicit_phenotype_with_rename(jhu_tree):
    root, _ = jhu_tree
    table = pd.DataFrame({"Subject": ["00001", "00002", "00004"], "Admission NIHSS score": [3, 8, 30],
                          "Other Thing": ["a", "b", "c"]})
    cohort = _quiet(load_jhu_stroke, root, phenotype=table, rename={"Admission NIHSS score": "nihss_admission"})
    assert cohort.phenotype["nihss_admission"].tolist() == [3, 8, 30]
    assert cohort.phenotype["other_thing"].tolist() == ["a", "b", "c"]  # unknown columns: snake_case
    assert cohort.metadata["renamed"] == {"Subject": "participant_id",
                                          "Admission NIHSS score": "nihss_admission",
                                          "Other Thing": "other_thing"}


def test_renames_that_collide_are_an_error(jhu_tree):
    root, _ = jhu_tree
    table = pd.DataFrame({"participant_id": ["sub-00001"], "NIHSS": [3], "nihss_admission": [4]})
    with pytest.raises(PhenotypeError, match="both map to 'nihss_admission'"):
        load_jhu_stroke(root, phenotype=table)


def test_isles24_without_phenotype_files(isles_tree):
    import shutil

    root = isles_tree[0]
    shutil.rmtree(root / "phenotype")
    with pytest.raises(PhenotypeError, match="No phenotype files"):
        load_isles24(root)
