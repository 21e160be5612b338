"""Cohort loading: ID joins, grids, mask checks, drop lists and bad input."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import lsm
from lsm.cohort import normalize_id, read_phenotype, subject_from_filename
from lsm.exceptions import (
    CohortError,
    DroppedSubjectsWarning,
    LesionImageError,
    PhenotypeError,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-10.0, -12.0, -8.0]
SHAPE = (10, 12, 9)


def _mask(seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.uint8)
    i, j, k = (rng.integers(1, s - 3) for s in shape)
    data[i : i + 3, j : j + 2, k : k + 2] = 1
    return data


def _write(path, data, affine=AFFINE):
    nib.Nifti1Image(data, affine).to_filename(str(path))
    return path


@pytest.fixture
def tree(tmp_path):
    """Four BIDS-named masks and a participants.tsv with one extra row."""
    lesions = tmp_path / "lesions"
    lesions.mkdir()
    for n in (1, 2, 3, 4):
        _write(lesions / f"bwsrsub-{n}_lesion.nii.gz", _mask(n))
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tage\tsex\tnihss\n"
        "sub-1\t70\tM\t4\n"
        "2\t89+\tF\tn/a\n"
        "sub-3\t55\tF\t12\n"
        "sub-9\t60\tM\t3\n",
        encoding="utf-8",
    )
    return tmp_path


def _load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        return lsm.load_cohort(*args, **kwargs)


@pytest.mark.parametrize(
    "raw, expected",
    [(1000, "sub-1000"), ("1000", "sub-1000"), (1000.0, "sub-1000"), ("sub-1000", "sub-1000"),
     ("Subject_001", "sub-Subject001")],
)
def test_normalize_id(raw, expected):
    assert normalize_id(raw) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bwsrsub-1000_lesion.nii.gz", "sub-1000"),
        ("sub-stroke0001_ses-02_space-MNI_lesion-msk.nii.gz", "sub-stroke0001"),
        ("sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz", "sub-r001s001"),
    ],
)
def test_subject_from_filename(name, expected):
    assert subject_from_filename(name) == expected


def test_subject_from_filename_without_entity():
    with pytest.raises(CohortError, match="Lesion_7.nii.gz.*mapping"):
        subject_from_filename("Lesion_7.nii.gz")


def test_join_and_drop_list(tree):
    with pytest.warns(DroppedSubjectsWarning, match="2 subject"):
        cohort = lsm.load_cohort(tree / "lesions", tree / "participants.tsv")
    assert cohort.subjects == ["sub-1", "sub-2", "sub-3"]
    assert len(cohort) == 3
    dropped = cohort.excluded.set_index("subject")["reason"].to_dict()
    assert dropped == {
        "sub-4": "lesion mask without a phenotype row",
        "sub-9": "phenotype row without a lesion mask",
    }
    # 89+ is top-coded to 89 and listed.
    assert cohort.phenotype.loc["sub-2", "age"] == 89
    assert cohort.coerced["action"].str.contains("top-coded").any()
    # n/a is missing; select() lists the subject it drops.
    nihss = cohort.select("nihss")
    assert nihss.subjects == ["sub-1", "sub-3"]
    assert "sub-2" in set(nihss.excluded["subject"])
    assert nihss.excluded.iloc[-1]["reason"] == "missing value in column 'nihss'"
    assert cohort.phenotype["nihss"].dtype == np.float64
    # Every input subject is accounted for: joined or dropped.
    assert set(cohort.subjects) | set(cohort.excluded["subject"]) == {"sub-1", "sub-2", "sub-3", "sub-4", "sub-9"}


def test_masks_match_files(tree):
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    assert cohort.shape == SHAPE
    np.testing.assert_array_equal(cohort.affine, AFFINE)
    for n, subject in ((1, "sub-1"), (3, "sub-3")):
        expected = _mask(n).astype(bool)
        np.testing.assert_array_equal(cohort.lesion_mask(subject), expected)
        np.testing.assert_array_equal(cohort.lesion_img(subject).get_fdata() > 0, expected)
        assert cohort.lesion_volumes[subject] == pytest.approx(expected.sum() * 8 / 1000)
    matrix = cohort.lesion_matrix()
    assert matrix.shape == (3, np.prod(SHAPE))
    dense = np.stack([_mask(n).ravel() for n in (1, 2, 3)])
    np.testing.assert_array_equal(matrix.toarray(), dense)
    assert set(cohort.lesion_imgs) == set(cohort.subjects)


def test_list_of_images_asks_for_a_mapping(tree):
    images = [nib.load(f) for f in sorted((tree / "lesions").glob("*.nii.gz"))]
    with pytest.raises(CohortError, match=r"item 0 is a Nifti1Image.*mapping \{subject_id: image\}"):
        lsm.load_cohort(images, tree / "participants.tsv")


@pytest.mark.parametrize("form", ["glob", "list", "mapping_paths", "mapping_images", "dataframe"])
def test_input_forms(tree, form):
    files = sorted((tree / "lesions").glob("*.nii.gz"))
    phenotype = tree / "participants.tsv"
    if form == "glob":
        lesions = str(tree / "lesions" / "bwsrsub-*_lesion.nii.gz")
    elif form == "list":
        lesions = files
    elif form == "mapping_paths":
        lesions = {n: f for n, f in zip((1, 2, 3, 4), files)}
    elif form == "mapping_images":
        lesions = {f"sub-{n}": nib.load(f) for n, f in zip((1, 2, 3, 4), files)}
    else:
        lesions = files
        phenotype = pd.read_csv(phenotype, sep="\t", dtype=str, keep_default_na=False)
    cohort = _load(lesions, phenotype)
    assert cohort.subjects == ["sub-1", "sub-2", "sub-3"]
    np.testing.assert_array_equal(cohort.lesion_mask("sub-3"), _mask(3).astype(bool))


@pytest.mark.parametrize("ext", ["csv", "xlsx"])
def test_phenotype_formats(tree, ext):
    table = pd.read_csv(tree / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    path = tree / f"pheno.{ext}"
    if ext == "csv":
        path.write_text(table.to_csv(index=False), encoding="utf-8-sig")  # with a BOM
    else:
        table.to_excel(path, index=False)
    cohort = _load(tree / "lesions", path)
    assert cohort.subjects == ["sub-1", "sub-2", "sub-3"]
    assert cohort.phenotype.loc["sub-3", "nihss"] == 12


def test_other_orientation_and_grid_are_resampled(tree):
    """A LAS copy of a RAS mask lands on the same voxels; a 1 mm mask is regridded."""
    data = _mask(5)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    las_affine = AFFINE @ flip
    _write(tree / "lesions" / "sub-3_lesion.nii.gz", data[::-1].copy(), las_affine)
    (tree / "lesions" / "bwsrsub-3_lesion.nii.gz").unlink()
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    np.testing.assert_array_equal(cohort.lesion_mask("sub-3"), data.astype(bool))
    # Onto a 1 mm grid with the same field of view: each 2 mm voxel becomes 2x2x2 voxels
    fine = AFFINE.copy()
    fine[:3, :3] = np.eye(3)
    fine[:3, 3] -= 0.5
    target = nib.Nifti1Image(np.zeros(tuple(2 * s for s in SHAPE), np.uint8), fine)
    fine_cohort = _load(tree / "lesions", tree / "participants.tsv", target_img=target)
    up = data.repeat(2, 0).repeat(2, 1).repeat(2, 2).astype(bool)
    np.testing.assert_array_equal(fine_cohort.lesion_mask("sub-3"), up)
    # and back down with Cohort.resample: exact
    back = fine_cohort.resample(cohort.grid_img())
    np.testing.assert_array_equal(back.lesion_mask("sub-3"), data.astype(bool))


def test_describe_reports_volumes_phenotype_and_drops():
    """Volumes of 2, 5 and 40 voxels of 1 mm^3: every number printed with its digits
    (the range's upper end used to be rounded to one decimal: '0.002-0.0')."""
    from lsm.cohort import Cohort

    sizes = {"sub-1": 2, "sub-2": 5, "sub-3": 40}
    phenotype = pd.DataFrame(
        {"nihss": [4.0, np.nan, 12.0], "sex": ["F", "M", "F"]},
        index=pd.Index(list(sizes), name="participant_id"),
    )
    dropped = pd.DataFrame([("sub-9", "phenotype", "phenotype row without a lesion mask")],
                           columns=["subject", "source", "reason"])
    cohort = Cohort({s: np.arange(n) for s, n in sizes.items()}, phenotype, np.eye(4), (4, 4, 4),
                    excluded=dropped)
    vol = pd.Series(sizes, dtype=float) / 1000.0
    text = cohort.describe()
    assert (f"median {vol.median():.4g}, IQR {vol.quantile(0.25):.4g}-{vol.quantile(0.75):.4g}, "
            f"range {vol.min():.4g}-{vol.max():.4g}") in text
    assert "range 0.002-0.04" in text
    assert "nihss: 2 non-missing; mean 8.00, range 4-12" in text
    assert "sex: 3 non-missing; F: 2, M: 1" in text
    assert "1 x phenotype row without a lesion mask" in text
    assert cohort._repr_html_().startswith("<pre>Cohort of 3 subjects")


def test_half_voxel_ties_do_not_depend_on_orientation():
    """A target grid offset by half a voxel on every axis: each target centre lies halfway
    between source centres. The same lesion stored RAS, LAS or RPI regrids to the same
    voxels: ties take the source voxel with the larger world coordinate (brute force)."""
    rng = np.random.default_rng(3)
    shape = (7, 6, 5)
    data = rng.random(shape) < 0.3
    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    ras[:3, 3] = [-3.0, -2.0, -1.0]
    flips = {"RAS": (False, False, False), "LAS": (True, False, False), "RPI": (False, True, True)}
    images = {}
    for n, (name, flip) in enumerate(flips.items(), start=1):
        stored, affine = data, ras.copy()
        for axis, f in enumerate(flip):
            if f:
                stored = np.flip(stored, axis)
                m = np.eye(4)
                m[axis, axis], m[axis, 3] = -1.0, shape[axis] - 1
                affine = affine @ m
        images[f"sub-{n}"] = nib.Nifti1Image(np.ascontiguousarray(stored).astype(np.uint8), affine)
    target_affine = ras.copy()
    target_affine[:3, 3] -= 0.5  # centres halfway between source centres
    target_shape = tuple(s + 1 for s in shape)
    phenotype = pd.DataFrame({"participant_id": list(images), "age": [50, 60, 70]})
    cohort = _load(images, phenotype, target_img=nib.Nifti1Image(np.zeros(target_shape, np.uint8), target_affine))
    # Brute force: target voxel (i, j, k) at world ras-origin + (i, j, k) - 0.5 takes the
    # source voxel at + 0.5 along each axis, i.e. source voxel (i, j, k) of the RAS copy.
    expected = np.zeros(target_shape, dtype=bool)
    expected[: shape[0], : shape[1], : shape[2]] = data
    for subject in images:
        np.testing.assert_array_equal(cohort.lesion_mask(subject), expected, err_msg=subject)


def test_resample_to_mni_voxel_size(tree):
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    mni2 = cohort.resample(2)
    assert mni2.shape == (91, 109, 91)
    assert mni2.affine[0, 3] == -91
    # World coordinates of lesion voxels are preserved (both grids have 2 mm voxels
    # whose centres are offset by 1 mm, so each voxel maps to a neighbour within 1 mm).
    ijk = np.array(np.unravel_index(cohort.lesion_indices("sub-1"), cohort.shape))
    xyz = AFFINE[:3, :3] @ ijk + AFFINE[:3, 3:4]
    ijk2 = np.array(np.unravel_index(mni2.lesion_indices("sub-1"), mni2.shape))
    xyz2 = mni2.affine[:3, :3] @ ijk2 + mni2.affine[:3, 3:4]
    assert ijk.shape == ijk2.shape
    assert np.abs(np.sort(xyz, axis=1) - np.sort(xyz2, axis=1)).max() <= 1.0 + 1e-9


@pytest.mark.parametrize(
    "data, reason",
    [
        (np.zeros(SHAPE, np.uint8), "empty mask"),
        (np.where(_mask(7) > 0, 255, 0).astype(np.uint8), "values other than 0 and 1"),
        (np.where(_mask(7) > 0, np.nan, 0).astype(np.float32), "NaN"),
        (np.stack([_mask(7), _mask(8)], axis=-1), "4D"),
    ],
    ids=["empty", "non-binary", "nan", "4d"],
)
def test_invalid_masks_are_listed(tree, data, reason):
    _write(tree / "lesions" / "bwsrsub-2_lesion.nii.gz", data)
    with pytest.warns(DroppedSubjectsWarning, match="invalid lesion mask"):
        cohort = lsm.load_cohort(tree / "lesions", tree / "participants.tsv")
    assert "sub-2" not in cohort.subjects
    row = cohort.excluded.set_index("subject").loc["sub-2"]
    assert reason in row["reason"]
    assert row["source"].endswith("bwsrsub-2_lesion.nii.gz")
    with pytest.raises(LesionImageError, match=f"sub-2.*bwsrsub-2_lesion.nii.gz.*{reason}"):
        lsm.load_cohort(tree / "lesions", tree / "participants.tsv", on_invalid="raise")


def _write_with_sform(path, data, sform):
    img = nib.Nifti1Image(data, None)  # no affine: the header's sform is kept as written
    img.header.set_sform(sform, code=1)
    img.header.set_qform(None, code=0)
    img.to_filename(str(path))


@pytest.mark.parametrize("bad, reason", [("singular", "singular"), ("nan", "NaN or infinite")])
def test_unusable_affine_is_listed(tree, bad, reason):
    sform = AFFINE.copy()
    if bad == "singular":
        sform[:3, 0] = 0.0  # zero voxel size along i
    else:
        sform[1, 3] = np.nan
    _write_with_sform(tree / "lesions" / "bwsrsub-2_lesion.nii.gz", _mask(2), sform)
    assert np.allclose(nib.load(tree / "lesions" / "bwsrsub-2_lesion.nii.gz").affine, sform, equal_nan=True)
    with pytest.warns(DroppedSubjectsWarning, match="invalid lesion mask"):
        cohort = lsm.load_cohort(tree / "lesions", tree / "participants.tsv")
    assert reason in cohort.excluded.set_index("subject").loc["sub-2", "reason"]
    # the same file first in line cannot define the common grid: the next one does
    _write_with_sform(tree / "lesions" / "bwsrsub-1_lesion.nii.gz", _mask(1), sform)
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    assert cohort.subjects == ["sub-3"]
    np.testing.assert_array_equal(cohort.affine, AFFINE)


def test_every_mask_invalid_names_each_subject_and_file(tree):
    for n in (1, 2, 3, 4):
        _write(tree / "lesions" / f"bwsrsub-{n}_lesion.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(LesionImageError) as info:
        lsm.load_cohort(tree / "lesions", tree / "participants.tsv")
    message = str(info.value)
    for n in (1, 2, 3):  # sub-4 has no phenotype row: it is not loaded
        assert f"sub-{n} (" in message and f"bwsrsub-{n}_lesion.nii.gz" in message
    assert "empty mask" in message


def test_mask_beyond_the_common_grid_is_cut_off_with_a_note(tree):
    from lsm.exceptions import ResamplingWarning

    # sub-2 on a grid shifted by 4 voxels along i: its block partly leaves the common grid
    data = np.zeros(SHAPE, np.uint8)
    data[6:10, 2:4, 2:4] = 1  # i = 6..9 on its own grid
    shifted = AFFINE.copy()
    shifted[0, 3] += 4 * 2.0  # i_common = i_own + 4: 10..13, of which none fit (shape 10)
    data[2:4, 5:7, 5:7] = 1  # and a block that lands on i_common = 6..7 (kept)
    _write(tree / "lesions" / "bwsrsub-2_lesion.nii.gz", data, shifted)
    with pytest.warns(ResamplingWarning, match="cut off"):
        cohort = _load(tree / "lesions", tree / "participants.tsv")
    assert cohort.lesion_indices("sub-2").size == 8
    assert cohort.lesion_volumes["sub-2"] == pytest.approx(24 * 8 / 1000)
    note = [n for n in cohort.notes if n.startswith("sub-2:") and "cut off" in n]
    assert len(note) == 1 and "16 of 24 lesioned voxels" in note[0]
    assert not [n for n in cohort.notes if "cut off" in n and not n.startswith("sub-2:")]


def test_threshold_binarises(tree):
    _write(tree / "lesions" / "bwsrsub-2_lesion.nii.gz", (_mask(2) * 0.8).astype(np.float32))
    cohort = _load(tree / "lesions", tree / "participants.tsv", threshold=0.5)
    np.testing.assert_array_equal(cohort.lesion_mask("sub-2"), _mask(2).astype(bool))


def test_unreadable_file(tree):
    (tree / "lesions" / "bwsrsub-3_lesion.nii.gz").write_bytes(b"not a nifti")
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    assert "unreadable" in cohort.excluded.set_index("subject").loc["sub-3", "reason"]


def test_single_voxel_4d_is_accepted(tree):
    _write(tree / "lesions" / "bwsrsub-2_lesion.nii.gz", _mask(2)[..., None])
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    np.testing.assert_array_equal(cohort.lesion_mask("sub-2"), _mask(2).astype(bool))


def test_duplicate_mask_ids(tree):
    _write(tree / "lesions" / "sub-1_ses-2_lesion.nii.gz", _mask(11))
    with pytest.raises(CohortError, match="Duplicate subject sub-1"):
        lsm.load_cohort(tree / "lesions", tree / "participants.tsv")


def test_duplicate_phenotype_ids(tree):
    path = tree / "participants.tsv"
    path.write_text(path.read_text() + "1\t50\tM\t2\n")
    with pytest.raises(PhenotypeError, match="Duplicate subject IDs.*sub-1"):
        lsm.load_cohort(tree / "lesions", path)


def test_ids_match_nothing(tree):
    (tree / "p.tsv").write_text("participant_id\tage\nsub-77\t50\nsub-78\t60\n")
    with pytest.raises(CohortError, match="No subject has both.*sub-77"):
        lsm.load_cohort(tree / "lesions", tree / "p.tsv")


def test_missing_id_column(tree):
    with pytest.raises(PhenotypeError, match="'subject'.*participants.tsv.*id_column"):
        lsm.load_cohort(tree / "lesions", tree / "participants.tsv", id_column="subject")


def test_out_of_range_and_text_values(tree):
    path = tree / "participants.tsv"
    path.write_text(
        "participant_id\tage\tnihss\n"
        "sub-1\t70\t45\n"
        "sub-2\tseventy\t3\n"
        "sub-3\t55\t2.5\n"
    )
    with pytest.raises(PhenotypeError) as info:
        lsm.load_cohort(tree / "lesions", path)
    message = str(info.value)
    assert "3 phenotype value(s)" in message
    assert "subject 'sub-1', column 'nihss': value '45' is above the maximum 42" in message
    assert "subject 'sub-2', column 'age': value 'seventy' is not a number" in message
    assert "subject 'sub-3', column 'nihss': value '2.5' is not a whole number" in message
    assert "coerce=True" in message
    cohort = _load(tree / "lesions", path, coerce=True)
    assert np.isnan(cohort.phenotype.loc["sub-1", "nihss"])
    assert np.isnan(cohort.phenotype.loc["sub-2", "age"])
    assert len(cohort.coerced) == 3
    assert cohort.coerced["action"].str.startswith("coerced to missing").all()


def test_user_dictionary_overrides(tree):
    path = tree / "participants.tsv"
    path.write_text("participant_id\tgrip\nsub-1\t12\nsub-2\t-3\nsub-3\t40\n")
    dictionary = {"grip": {"type": "number", "Minimum": 0, "Units": "kg"}}
    with pytest.raises(PhenotypeError, match="'grip': value '-3' is below the minimum 0"):
        lsm.load_cohort(tree / "lesions", path, dictionary=dictionary)


def test_unreadable_phenotype(tmp_path, tree):
    with pytest.raises(PhenotypeError, match="does not exist"):
        lsm.load_cohort(tree / "lesions", tmp_path / "nope.tsv")
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    with pytest.raises(PhenotypeError, match="Unsupported phenotype file type"):
        read_phenotype(bad)


def test_select_unknown_column(tree):
    cohort = _load(tree / "lesions", tree / "participants.tsv")
    with pytest.raises(PhenotypeError, match="'mrs' is not in the phenotype"):
        cohort.select("mrs")


def test_parallel_loading_identical(tree):
    a = _load(tree / "lesions", tree / "participants.tsv", n_jobs=1)
    b = _load(tree / "lesions", tree / "participants.tsv", n_jobs=2)
    assert a.subjects == b.subjects
    assert (a.lesion_matrix() != b.lesion_matrix()).nnz == 0


def test_synthetic_cohort_has_planted_effect():
    from scipy import stats

    from lsm.simulate import make_synthetic_cohort

    cohort = make_synthetic_cohort(80, random_state=1)
    truth = cohort.metadata["truth_mask"].ravel()
    hit = np.asarray(cohort.lesion_matrix()[:, truth].sum(axis=1)).ravel() > 0
    score = cohort.phenotype["score"].to_numpy()
    assert stats.ttest_ind(score[hit], score[~hit]).statistic > 5
    null = make_synthetic_cohort(80, effect_size=0.0, random_state=1)
    assert abs(stats.ttest_ind(null.phenotype["score"][hit], null.phenotype["score"][~hit]).statistic) < 4


@pytest.mark.shared_data
def test_load_soop_join_counts(shared_data_dir):
    soop = shared_data_dir / "soop"
    cohort = _load(soop / "lesions", soop / "participants.tsv", n_jobs=2)
    assert len(cohort) == 1265
    assert len(cohort.select("nihss")) == 944
    assert len(cohort.select("gs_rankin_6isdeath")) == 618
    reasons = cohort.excluded["reason"].value_counts()
    assert reasons["lesion mask without a phenotype row"] == 184
    assert reasons["phenotype row without a lesion mask"] == 240
    assert cohort.shape == (157, 189, 136)
    # '89+' ages are parsed as 89 and listed
    assert (cohort.coerced["value"] == "89+").sum() > 0
    assert cohort.phenotype["age"].max() == 89


def test_atomic_outputs_respect_umask(tmp_path):
    import os
    import stat

    from lsm._utils import atomic_output_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("x")
        atomic_write_text(tmp_path / "r.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "r.html").stat().st_mode) == 0o644


class _NoMemoryImage(nib.Nifti1Image):
    """A mask whose voxel data cannot be read: the machine has run out of memory."""

    @property
    def dataobj(self):
        raise MemoryError("Unable to allocate 2.1 GiB")


@pytest.mark.parametrize("where", ["open", "read", "resample"])
def test_out_of_memory_is_raised_not_a_dropped_subject(tree, monkeypatch, where):
    """Who is in a cohort must not depend on free RAM: MemoryError is never a drop reason."""
    files = {f"sub-{n}": tree / "lesions" / f"bwsrsub-{n}_lesion.nii.gz" for n in (1, 2, 3)}
    lesions = dict(files)
    if where == "open":
        real_load = nib.load

        def load(path, *args, **kwargs):
            if "sub-3" in str(path):
                raise MemoryError("Unable to allocate 2.1 GiB")
            return real_load(path, *args, **kwargs)

        monkeypatch.setattr(nib, "load", load)
    elif where == "read":
        lesions["sub-3"] = _NoMemoryImage(_mask(3), AFFINE)
    else:
        import lsm.cohort

        def no_memory(*args, **kwargs):
            raise MemoryError("Unable to allocate 2.1 GiB")

        monkeypatch.setattr(lsm.cohort, "grid_mapping", no_memory)
        monkeypatch.setattr(lsm.cohort, "_MAPPING_CACHE", {})
        lesions["sub-3"] = _write(tree / "sub-3_1mm.nii.gz", _mask(3, (20, 24, 18)), np.diag([1.0, 1, 1, 1]))
    with pytest.raises(MemoryError):
        _load(lesions, tree / "participants.tsv", target_img=nib.load(files["sub-1"]))
