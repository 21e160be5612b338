"""Territory loads, lesion descriptors, overlap maps and territory summaries.

Every value is checked against a brute-force loop over lesion voxels (world coordinate
of each voxel centre -> atlas voxel with nibabel.affines.apply_affine), against
nilearn's nearest-neighbour resampling, against hand-built masks with known answers,
and, on the real data, against SOOP's published per-territory reference table and
lesion frequency map.
"""

import types
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.affines import apply_affine
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage

import lsm
from lsm.cohort import Cohort
from lsm.exceptions import AtlasError, LSMWarning, PhenotypeError, ResamplingWarning, SpaceError
from lsm.territory import (
    TerritorySummary,
    lesion_descriptors,
    overlap_map,
    plot_territory_summary,
    territory_load,
    territory_summary,
)

# --------------------------------------------------------------- synthetic data
# Atlas: RAS 1 mm, x = i - 6 (-6..5), y = j - 5 (-5..4), z = k - 4 (-4..4).
ATLAS_AFFINE = np.array([[1.0, 0, 0, -6], [0, 1, 0, -5], [0, 0, 1, -4], [0, 0, 0, 1]])
ATLAS_SHAPE = (12, 10, 9)
# Lesion grid: LAS 1 mm, x = 4 - i (4..-4), y = j - 4 (-4..3), z = k - 5 (-5..1): a
# flipped sub-box of the atlas lattice whose k = 0 plane (z = -5) lies below the atlas.
LESION_AFFINE = np.array([[-1.0, 0, 0, 4], [0, 1, 0, -4], [0, 0, 1, -5], [0, 0, 0, 1]])
LESION_SHAPE = (9, 8, 7)

LABELS = pd.DataFrame(
    {
        "index": [1, 2, 3, 4, 5],
        "abbrev": ["AL", "AR", "PL", "PR", "XL"],
        "name": ["a left", "a right", "p left", "p right", "absent left"],
        "level2_index": [1, 2, 1, 2, 1],
        "level2_abbrev": ["GL", "GR", "GL", "GR", "GL"],
    }
)


def _atlas_data():
    x, y, z = (np.indices(ATLAS_SHAPE).reshape(3, -1).T + ATLAS_AFFINE[:3, 3]).T
    labels = np.where(x < 0, np.where(y < 0, 1, 3), np.where(y < 0, 2, 4))
    labels[z == 4] = 0  # background plane
    labels[(x == 2) & (y == 1) & (z == 0)] = 0  # a background voxel inside the lesion box
    return labels.reshape(ATLAS_SHAPE).astype(np.int16)


@pytest.fixture(scope="module")
def atlas_img():
    return nib.Nifti1Image(_atlas_data(), ATLAS_AFFINE)


@pytest.fixture(scope="module")
def atlas(atlas_img):
    return (atlas_img, LABELS)


def _random_masks(n=8, seed=0):
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        mask = rng.random(LESION_SHAPE) < rng.uniform(0.03, 0.4)
        mask[rng.integers(9), rng.integers(8), rng.integers(1, 7)] = True
        masks.append(mask)
    only_outside = np.zeros(LESION_SHAPE, dtype=bool)
    only_outside[2:5, 3:6, 0] = True  # z = -5: below the atlas box
    masks.append(only_outside)
    return masks


def _cohort(masks, affine=LESION_AFFINE, groups=None, **kwargs):
    subjects = [f"sub-{i + 1:02d}" for i in range(len(masks))]
    phenotype = pd.DataFrame(
        {"group": groups if groups is not None else ["a" if i % 2 else "b" for i in range(len(masks))]},
        index=pd.Index(subjects, name="participant_id"),
    )
    indices = {s: np.flatnonzero(m).astype(np.int32) for s, m in zip(subjects, masks)}
    return Cohort(indices, phenotype, affine, masks[0].shape, **kwargs)


@pytest.fixture(scope="module")
def masks():
    return _random_masks()


@pytest.fixture(scope="module")
def cohort(masks):
    return _cohort(masks)


def _brute_labels(mask, lesion_affine, atlas_data, atlas_affine):
    """Atlas label of each lesion voxel by a loop: voxel -> world -> nearest atlas voxel."""
    to_atlas = np.linalg.inv(atlas_affine)
    out = []
    for ijk in np.argwhere(mask):
        a = np.floor(apply_affine(to_atlas, apply_affine(lesion_affine, ijk)) + 0.5).astype(int)
        inside = np.all(a >= 0) and np.all(a < atlas_data.shape)
        out.append(int(atlas_data[tuple(a)]) if inside else 0)
    return np.array(out, dtype=int)


def _brute_counts(masks, lesion_affine, atlas_data, atlas_affine, values):
    """(n_subjects, len(values) + 1) lesioned-voxel counts; last column: outside."""
    counts = np.zeros((len(masks), len(values) + 1), dtype=int)
    for s, mask in enumerate(masks):
        for lab in _brute_labels(mask, lesion_affine, atlas_data, atlas_affine):
            counts[s, values.index(lab) if lab in values else -1] += 1
    return counts


# ---------------------------------------------------------------- territory_load
@pytest.mark.parametrize("measure", ["territory_fraction", "lesion_fraction", "ml"])
def test_territory_load_matches_brute_force_on_shared_lattice(cohort, masks, atlas, measure):
    values = LABELS["index"].tolist()
    counts = _brute_counts(masks, LESION_AFFINE, _atlas_data(), ATLAS_AFFINE, values)
    n = counts.sum(axis=1)
    atlas_voxels = np.array([(_atlas_data() == v).sum() for v in values])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact alignment: no ResamplingWarning
        table = territory_load(cohort, atlas=atlas, measure=measure)
    assert list(table.columns) == LABELS["abbrev"].tolist() + ["outside_ml", "lesion_volume_ml"]
    assert list(table.index) == cohort.subjects
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {
            "ml": counts[:, :-1] * 0.001,
            "lesion_fraction": counts[:, :-1] / n[:, None],
            "territory_fraction": counts[:, :-1] / atlas_voxels,
        }[measure]
    assert_allclose(table.iloc[:, :-2].to_numpy(), expected, rtol=1e-12, atol=0)
    assert_allclose(table["outside_ml"], counts[:, -1] * 0.001, rtol=1e-12)
    assert_allclose(table["lesion_volume_ml"], [m.sum() * 0.001 for m in masks], rtol=1e-12)
    assert table.attrs["alignment"] == "exact"
    assert_allclose(list(table.attrs["territory_volume_ml"].values()), atlas_voxels * 0.001)
    # The brute force sees every kind of voxel: inside territories, on background, off the atlas.
    assert counts[:, -1].sum() > 0 and counts[-1, :-1].sum() == 0
    if measure == "territory_fraction":
        assert np.isnan(table["XL"]).all()  # label 5 has no voxel in the atlas


def test_permuted_axes_lattice_is_exact(atlas):
    """Voxel axes in another order (i -> world y, j -> world -x, k -> world z): still exact."""
    affine = np.array([[0.0, -1, 0, 3], [1, 0, 0, -4], [0, 0, 1, -3], [0, 0, 0, 1]])
    rng = np.random.default_rng(7)
    masks = [rng.random((7, 9, 6)) < 0.3 for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = territory_load(_cohort(masks, affine=affine), atlas=atlas, measure="ml")
    values = LABELS["index"].tolist()
    counts = _brute_counts(masks, affine, _atlas_data(), ATLAS_AFFINE, values)
    assert_allclose(table.iloc[:, : len(values)].to_numpy(), counts[:, :-1] * 0.001, rtol=1e-12)
    assert_allclose(table["outside_ml"], counts[:, -1] * 0.001, rtol=1e-12)
    assert table.attrs["alignment"] == "exact"


CENTRE_WARNING = (r"lesion voxels \(2 mm, grid \(6, 5, 5\)\) are 2 times larger along each axis than "
                  r"the 1 mm voxels of .*takes the atlas label at its centre.*approximate.*exact loads, "
                  r"use a cohort on the atlas's voxel size \(1 mm")


@pytest.mark.parametrize("measure", ["territory_fraction", "lesion_fraction", "ml"])
def test_integer_scaled_lattice_samples_centres_with_a_warning(atlas, monkeypatch, measure):
    """A 2 mm LAS grid whose voxel centres are atlas voxel centres (like Cohort.resample(2)
    against the 1 mm atlas): the very values of the nearest-neighbour path and of the brute
    force, with a ResamplingWarning saying the loads are approximate (each 2 mm voxel takes
    the label at its centre)."""
    import lsm.territory as territory

    affine = np.array([[-2.0, 0, 0, 5], [0, 2, 0, -5], [0, 0, 2, -6], [0, 0, 0, 1]])
    rng = np.random.default_rng(11)
    masks = [rng.random((6, 5, 5)) < 0.4 for _ in range(5)]  # x 5..-5, y -5..3, z -6..2
    cohort = _cohort(masks, affine=affine)
    with pytest.warns(ResamplingWarning, match=CENTRE_WARNING) as record:
        table = territory_load(cohort, atlas=atlas, measure=measure)
    assert len(record) == 1 and record[0].filename == __file__  # points at the caller's line
    assert table.attrs["alignment"] == "centre"
    values = LABELS["index"].tolist()
    counts = _brute_counts(masks, affine, _atlas_data(), ATLAS_AFFINE, values)
    atlas_voxels = np.array([(_atlas_data() == v).sum() for v in values])
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {
            "ml": counts[:, :-1] * 0.008,
            "lesion_fraction": counts[:, :-1] / n[:, None],
            "territory_fraction": counts[:, :-1] * 0.008 / (atlas_voxels * 0.001),
        }[measure]
    assert_allclose(table.iloc[:, :-2].to_numpy(), expected, rtol=1e-12)
    assert_allclose(table["outside_ml"], counts[:, -1] * 0.008, rtol=1e-12)
    monkeypatch.setattr(territory, "_lattice_map", lambda vox2vox: None)
    with pytest.warns(ResamplingWarning, match="do not share a voxel lattice"):
        nearest = territory_load(cohort, atlas=atlas, measure=measure)
    assert nearest.attrs["alignment"] == "nearest"
    pd.testing.assert_frame_equal(table, nearest, check_exact=True)
    assert table.attrs["territory_volume_ml"] == nearest.attrs["territory_volume_ml"]


def test_centre_alignment_warns_once_per_call(atlas):
    """lesion_descriptors and territory_summary map the 2 mm grid once for both levels: one
    warning per call; an anisotropic multiple is named axis by axis."""
    affine = np.array([[-2.0, 0, 0, 5], [0, 2, 0, -5], [0, 0, 2, -6], [0, 0, 0, 1]])
    rng = np.random.default_rng(12)
    cohort = _cohort([rng.random((6, 5, 5)) < 0.4 for _ in range(3)], affine=affine)
    for func in (lesion_descriptors, territory_summary):
        with pytest.warns(ResamplingWarning, match=CENTRE_WARNING) as record:
            func(cohort, atlas=atlas)
        assert len(record) == 1, func.__name__
    anisotropic = _cohort([rng.random((6, 5, 3)) < 0.4 for _ in range(3)],
                          affine=np.array([[-2.0, 0, 0, 5], [0, 2, 0, -5], [0, 0, 3, -4], [0, 0, 0, 1]]))
    expected = r"\(2 x 2 x 3 mm.* 2, 2 and 3 times larger along the lesion grid's i, j and k axes than the 1 mm"
    with pytest.warns(ResamplingWarning, match=expected) as record:
        table = territory_load(anisotropic, atlas=atlas)
    assert len(record) == 1 and table.attrs["alignment"] == "centre"


def test_lesion_fractions_and_outside_add_up_to_the_lesion(cohort, atlas):
    table = territory_load(cohort, atlas=atlas, measure="lesion_fraction")
    total = table.iloc[:, :-2].sum(axis=1) + table["outside_ml"] / table["lesion_volume_ml"]
    assert_allclose(total, 1.0, rtol=1e-12)


def test_territory_load_nearest_neighbour_matches_nilearn(atlas_img):
    """Atlas at 2 mm (no shared lattice): nearest-neighbour, with a ResamplingWarning."""
    from nilearn.image import resample_to_img

    data2 = _atlas_data()[::2, ::2, ::2]
    affine2 = np.diag([2.0, 2.0, 2.0, 1.0])
    affine2[:3, 3] = [-6.5, -5.5, -4.5]  # lesion voxel centres fall at x.25 / x.75: no ties
    atlas2 = nib.Nifti1Image(data2, affine2)
    inner = _random_masks(seed=3)[:6]
    for m in inner:  # keep lesion centres between atlas voxel centres (nilearn's box)
        m[:, :, 0] = False
        m[0] = False
        m[:, 7] = False
        m[3, 3, 3] = True
    cohort = _cohort(inner)
    with pytest.warns(ResamplingWarning, match="nearest"):
        table = territory_load(cohort, atlas=(atlas2, LABELS), measure="ml")
    assert table.attrs["alignment"] == "nearest"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_grid = np.asarray(
            resample_to_img(atlas2, nib.Nifti1Image(inner[0].astype(np.uint8), LESION_AFFINE),
                            interpolation="nearest", force_resample=True, copy_header=True).dataobj
        )
    values = LABELS["index"].tolist()
    expected = np.array([[np.count_nonzero(on_grid[m] == v) for v in values] for m in inner]) * 0.001
    assert_allclose(table.iloc[:, : len(values)].to_numpy(), expected, rtol=1e-12)
    brute = _brute_counts(inner, LESION_AFFINE, data2, affine2, values)
    assert_allclose(table.iloc[:, : len(values)].to_numpy(), brute[:, :-1] * 0.001, rtol=1e-12)
    # Territory fraction's denominator is the territory's volume in the atlas's own grid.
    with pytest.warns(ResamplingWarning):
        frac = territory_load(cohort, atlas=(atlas2, LABELS))
    vol2 = np.array([(data2 == v).sum() * 0.008 for v in values])
    with np.errstate(invalid="ignore", divide="ignore"):
        assert_allclose(frac.iloc[:, : len(values)].to_numpy(), expected / vol2, rtol=1e-12)


def test_level2_equals_sum_of_level1(cohort, atlas):
    level1 = territory_load(cohort, atlas=atlas, level=1, measure="ml")
    level2 = territory_load(cohort, atlas=atlas, level=2, measure="ml")
    groups = LABELS.set_index("abbrev")["level2_abbrev"]
    summed = level1[groups.index].T.groupby(groups).sum().T
    assert list(level2.columns[:-2]) == ["GL", "GR"]
    assert_allclose(level2[["GL", "GR"]].to_numpy(), summed[["GL", "GR"]].to_numpy(), rtol=1e-12)
    assert_allclose(level2["outside_ml"], level1["outside_ml"])
    frac2 = territory_load(cohort, atlas=atlas, level=2)
    data = _atlas_data()
    for name, members in LABELS.groupby("level2_abbrev")["index"]:
        denominator = np.isin(data, members.to_numpy()).sum() * 0.001
        assert_allclose(frac2[name], summed[name] / denominator, rtol=1e-12)


def test_n_jobs_does_not_change_results(cohort, atlas):
    serial = territory_load(cohort, atlas=atlas, n_jobs=1)
    parallel = territory_load(cohort, atlas=atlas, n_jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)
    d1 = lesion_descriptors(cohort, atlas=atlas, n_jobs=1)
    d2 = lesion_descriptors(cohort, atlas=atlas, n_jobs=2)
    pd.testing.assert_frame_equal(d1, d2)


# ------------------------------------------------------------------ atlas forms
def test_label_table_forms_give_the_same_loads(cohort, atlas_img, tmp_path):
    reference = territory_load(cohort, atlas=(atlas_img, LABELS), measure="ml")
    img_path = tmp_path / "myatlas.nii.gz"
    nib.save(atlas_img, img_path)
    tsv = tmp_path / "labels.tsv"
    LABELS.to_csv(tsv, sep="\t", index=False)
    pipe = tmp_path / "pipe.txt"
    pipe.write_text("".join(f"{r.index}|{r.abbrev}|{r.name}|{r.level2_index}\n" for r in LABELS.itertuples()))
    LABELS.to_csv(tmp_path / "myatlas.tsv", sep="\t", index=False)  # sidecar
    forms = {
        "tsv path": (img_path, tsv),
        "pipe text": (str(img_path), pipe),
        "dict": (atlas_img, dict(zip(LABELS["index"], LABELS["abbrev"]))),
        "reversed dict": (atlas_img, dict(zip(LABELS["abbrev"], LABELS["index"]))),
        "series": (atlas_img, pd.Series(LABELS["abbrev"].to_numpy(), index=LABELS["index"])),
        "frame indexed by value, 'name' column": (
            atlas_img, pd.DataFrame({"name": LABELS["abbrev"].to_numpy()}, index=LABELS["index"].to_numpy())),
        "object with img and labels": types.SimpleNamespace(img=atlas_img, labels=LABELS),
        "image path with sidecar": img_path,
        "float image with whole-number labels": (
            nib.Nifti1Image(_atlas_data().astype(np.float32), ATLAS_AFFINE), LABELS),
    }
    for what, form in forms.items():
        table = territory_load(cohort, atlas=form, measure="ml")
        pd.testing.assert_frame_equal(table, reference, check_names=False, obj=what)
    level2 = territory_load(cohort, atlas=(img_path, pipe), level=2, measure="ml")
    assert list(level2.columns[:2]) == ["level2-1", "level2-2"]  # no level2_abbrev in the text table


def test_duplicate_abbreviations_are_renamed_with_a_warning(cohort, atlas_img):
    table = LABELS.assign(abbrev=["AL", "AL", "PL", "PR", "XL"])
    with pytest.warns(LSMWarning, match=r"repeats abbreviation.*2 -> 'AL_2'") as record:
        loads = territory_load(cohort, atlas=(atlas_img, table))
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert list(loads.columns[:2]) == ["AL", "AL_2"]


@pytest.mark.parametrize(
    "labels, img_data, match",
    [
        (LABELS[LABELS["index"] != 3], None, r"holds label value\(s\) \[3\].*lacks"),
        (LABELS.drop(columns=["abbrev", "name"]), None, "abbreviation column"),
        (pd.concat([LABELS, LABELS.iloc[:1]]), None, r"label value\(s\) \[1\] more than once"),
        (LABELS.assign(abbrev=["AL", "", "PL", "PR", "XL"]), None, "no abbreviation"),
        (LABELS.assign(abbrev=["outside_ml", "AR", "PL", "PR", "XL"]), None, "reserved"),
        (LABELS, "float", "integer labels"),
        (LABELS, "negative", "negative label"),
    ],
)
def test_bad_atlas_raises_clear_errors(cohort, labels, img_data, match):
    data = _atlas_data()
    if img_data == "float":
        data = data + 0.5
    elif img_data == "negative":
        data = data.astype(np.int16) - 1
    with pytest.raises(AtlasError, match=match):
        territory_load(cohort, atlas=(nib.Nifti1Image(data, ATLAS_AFFINE), labels))


def test_atlas_argument_errors(cohort, atlas_img, tmp_path):
    with pytest.raises(AtlasError, match="needs its label table"):
        territory_load(cohort, atlas=atlas_img)
    nib.save(atlas_img, tmp_path / "lonely.nii.gz")
    with pytest.raises(AtlasError, match="No label table found beside"):
        territory_load(cohort, atlas=tmp_path / "lonely.nii.gz")
    with pytest.raises(AtlasError, match="does not exist"):
        territory_load(cohort, atlas=(tmp_path / "missing.nii.gz", LABELS))
    with pytest.raises(AtlasError, match="level2_index"):
        territory_load(cohort, atlas=(atlas_img, LABELS[["index", "abbrev"]]), level=2)
    with pytest.raises(ValueError, match="'measure' parameter.*'ml'.*got 'voxels'"):
        territory_load(cohort, atlas=(atlas_img, LABELS), measure="voxels")
    with pytest.raises(ValueError, match="'level' parameter"):
        territory_load(cohort, atlas=(atlas_img, LABELS), level=3)
    with pytest.raises(TypeError, match="atlas must be"):
        territory_load(cohort, atlas=42)
    native = _cohort(_random_masks(3), space="native")
    with pytest.raises(SpaceError, match="native space"):
        territory_load(native, atlas=(atlas_img, LABELS))


# ------------------------------------------------------------ lesion_descriptors
def _mask_from_world(points):
    """Boolean lesion-grid mask with the voxels at the given world (x, y, z) points."""
    mask = np.zeros(LESION_SHAPE, dtype=bool)
    ijk = np.rint(apply_affine(np.linalg.inv(LESION_AFFINE), np.asarray(points, float))).astype(int)
    mask[tuple(ijk.T)] = True
    assert mask.sum() == len(points)
    return mask


def _side_mask(n_left, n_right, n_mid):
    """A lesion with n voxels at x < 0, x > 0 and x == 0 (world)."""
    pts = []
    for x_values, count in (((-1, -2, -3, -4), n_left), ((1, 2, 3, 4), n_right), ((0,), n_mid)):
        grid = [(x, y, z) for x in x_values for y in range(-4, 4) for z in range(-4, 2)]
        pts.extend(grid[:count])
    return _mask_from_world(pts)


def test_hemisphere_rule_on_known_masks(atlas):
    cases = {  # (left, right, midline voxels) -> expected side and left fraction
        (40, 0, 0): ("left", 1.0),
        (0, 30, 0): ("right", 0.0),
        (96, 4, 0): ("left", 0.96),
        (95, 5, 0): ("left", 0.95),
        (94, 6, 0): ("bilateral", 0.94),
        (90, 0, 10): ("left", 0.95),  # midline counts half: (90 + 5) / 100
        (88, 0, 12): ("bilateral", 0.94),
        (4, 96, 0): ("right", 0.04),
        (0, 0, 8): ("bilateral", 0.5),
        (50, 50, 0): ("bilateral", 0.5),
    }
    cohort = _cohort([_side_mask(*k) for k in cases])
    desc = lesion_descriptors(cohort, atlas=atlas)
    assert desc["hemisphere"].tolist() == [v[0] for v in cases.values()]
    assert_allclose(desc["left_fraction"], [v[1] for v in cases.values()], rtol=1e-12)
    assert_allclose(desc["right_fraction"], 1 - np.array([v[1] for v in cases.values()]), rtol=1e-12)
    strict = lesion_descriptors(cohort, atlas=atlas, hemisphere_threshold=1.0)
    assert strict["hemisphere"].tolist()[:4] == ["left", "right", "bilateral", "bilateral"]
    with pytest.raises(ValueError, match="hemisphere_threshold"):
        lesion_descriptors(cohort, atlas=atlas, hemisphere_threshold=0.4)


def _blocks(*corners, size=2):
    mask = np.zeros(LESION_SHAPE, dtype=bool)
    for i, j, k in corners:
        mask[i : i + size, j : j + size, k : k + size] = True
    return mask


def test_connected_components_on_known_masks(atlas):
    corner = _blocks((0, 0, 1), (2, 2, 3))  # two cubes touching at one corner only
    edge = _blocks((0, 0, 1), (2, 2, 1))  # touching along an edge
    apart = _blocks((0, 0, 1), (6, 5, 4))
    blob_and_dot = _blocks((0, 0, 1), size=3)
    blob_and_dot[8, 7, 6] = True
    three = _blocks((0, 0, 1), (4, 0, 1), (0, 5, 4))
    masks = [corner, edge, apart, blob_and_dot, three]
    # Sanity of the construction: 6-connectivity separates the touching cubes.
    assert ndimage.label(corner)[1] == 2 and ndimage.label(edge)[1] == 2
    cohort = _cohort(masks)
    assert lesion_descriptors(cohort, atlas=atlas)["n_components"].tolist() == [1, 1, 2, 2, 3]
    assert lesion_descriptors(cohort, atlas=atlas, min_component_size=2)["n_components"].tolist() == [1, 1, 2, 1, 3]
    # sizes: 16 (two joined cubes), 16, 8 + 8, 27 + 1, 8 + 8 + 8
    assert lesion_descriptors(cohort, atlas=atlas, min_component_size=9)["n_components"].tolist() == [1, 1, 0, 1, 0]
    assert lesion_descriptors(cohort, atlas=atlas, min_component_size=17)["n_components"].tolist() == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="min_component_size"):
        lesion_descriptors(cohort, atlas=atlas, min_component_size=0)


def test_descriptors_match_brute_force(cohort, masks, atlas):
    desc = lesion_descriptors(cohort, atlas=atlas)
    values = LABELS["index"].tolist()
    counts = _brute_counts(masks, LESION_AFFINE, _atlas_data(), ATLAS_AFFINE, values)
    names = LABELS["abbrev"].tolist()
    level2_of = dict(zip(LABELS["abbrev"], LABELS["level2_abbrev"]))
    for s, mask in enumerate(masks):
        row = desc.iloc[s]
        world = apply_affine(LESION_AFFINE, np.argwhere(mask))
        assert row["n_voxels"] == mask.sum()
        assert row["volume_ml"] == pytest.approx(mask.sum() * 0.001, rel=1e-12)
        assert_allclose(row[["centroid_x", "centroid_y", "centroid_z"]].astype(float), world.mean(axis=0),
                        rtol=1e-12, atol=1e-12)
        assert row["n_components"] == ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
        inside = counts[s, :-1]
        if inside.sum() == 0:
            assert row["dominant_level1"] == "outside" and row["dominant_level2"] == "outside"
            assert row["dominant_level1_fraction"] == 1.0
            continue
        best = max(range(len(names)), key=lambda j: (inside[j], -j))  # first in label order on ties
        assert row["dominant_level1"] == names[best]
        assert row["dominant_level1_fraction"] == pytest.approx(inside[best] / mask.sum())
        per_group = pd.Series(inside, index=names).groupby(level2_of).sum()
        assert row["dominant_level2"] == per_group.idxmax()
        assert row["dominant_level2_fraction"] == pytest.approx(per_group.max() / mask.sum())
    assert desc.attrs["connectivity"] == 26


def test_descriptors_without_level2_grouping(cohort, atlas_img):
    desc = lesion_descriptors(cohort, atlas=(atlas_img, LABELS[["index", "abbrev"]]))
    assert "dominant_level1" in desc and "dominant_level2" not in desc


# ------------------------------------------------------------------- overlap_map
def test_overlap_map_counts_and_fractions(cohort, masks):
    counts = overlap_map(cohort, normalize=False)
    assert_array_equal(np.asarray(counts.dataobj), np.sum(masks, axis=0))
    assert counts.get_data_dtype() == np.int32
    assert_allclose(counts.affine, LESION_AFFINE)
    frac = overlap_map(cohort)
    assert_allclose(np.asarray(frac.dataobj), np.mean(masks, axis=0), rtol=1e-6)
    split = overlap_map(cohort, by="group", normalize=False)
    groups = cohort.phenotype["group"].to_numpy()
    assert list(split) == ["a", "b"]
    for level, img in split.items():
        assert_array_equal(np.asarray(img.dataobj), np.sum([m for m, g in zip(masks, groups) if g == level], axis=0))
    split_frac = overlap_map(cohort, by="group")
    group_a = [m for m, g in zip(masks, groups) if g == "a"]
    assert_allclose(np.asarray(split_frac["a"].dataobj), np.mean(group_a, axis=0), rtol=1e-6)


def test_overlap_map_by_errors_and_missing_values(masks):
    cohort = _cohort(masks, groups=["a", None, "b", "a", None, "b", "a", "b", "a"])
    split = overlap_map(cohort, by="group", normalize=False)
    total = sum(np.asarray(img.dataobj) for img in split.values())
    assert_array_equal(total, np.sum([m for i, m in enumerate(masks) if i not in (1, 4)], axis=0))
    with pytest.raises(PhenotypeError, match="'nihss'.*available columns"):
        overlap_map(cohort, by="nihss")
    many = _cohort(masks, groups=[str(i) for i in range(len(masks))])
    with pytest.raises(lsm.exceptions.AnalysisError, match="bin it first"):
        overlap_map(many, by="group", max_groups=5)


# -------------------------------------------------------------- territory_summary
def test_territory_summary_counts(cohort, masks, atlas):
    summary = territory_summary(cohort, atlas=atlas, level=1)
    assert isinstance(summary, TerritorySummary)
    values = LABELS["index"].tolist()
    counts = _brute_counts(masks, LESION_AFFINE, _atlas_data(), ATLAS_AFFINE, values)[:, :-1]
    table = summary.table
    assert_array_equal(table["n_involved"], (counts > 0).sum(axis=0))
    assert_allclose(table["percent_involved"], 100 * (counts > 0).mean(axis=0))
    assert_allclose(table["lesioned_ml"], counts.sum(axis=0) * 0.001)
    dominant = lesion_descriptors(cohort, atlas=atlas)["dominant_level1"]
    assert_array_equal(table["n_dominant"], [(dominant == a).sum() for a in LABELS["abbrev"]])
    assert summary.n_outside_only == int((counts.sum(axis=1) == 0).sum()) == 1
    # Hemispheres of territories from their centroids (the table has no hemisphere column).
    assert table["hemisphere"].tolist()[:4] == ["left", "right", "left", "right"]
    assert table["territory"].tolist()[:4] == ["A", "A", "P", "P"]
    sides = lesion_descriptors(cohort, atlas=atlas)["hemisphere"].value_counts()
    assert summary.hemispheres.to_dict() == {h: int(sides.get(h, 0)) for h in ("left", "right", "bilateral")}
    level2 = territory_summary(cohort, atlas=atlas)
    assert list(level2.table.index) == ["GL", "GR"]
    assert_array_equal(level2.table["n_involved"], [
        (counts[:, [0, 2, 4]].sum(axis=1) > 0).sum(), (counts[:, [1, 3]].sum(axis=1) > 0).sum()])
    assert "Territory summary" in str(level2) and "<table" in level2._repr_html_()


def test_empty_lesions_have_no_side_nor_dominant_territory(masks, atlas):
    """A lesion with no voxel on the cohort grid (Cohort.resample keeps a subject whose tiny
    lesion vanishes on the coarser grid) is neither bilateral nor outside the atlas: its
    hemisphere and dominant territories are missing, and territory_summary counts it apart."""
    # A 1 mm cohort resampled to 2 mm: the single voxel at x = 4 is no 2 mm voxel centre.
    dot = _mask_from_world([(4, 0, 0)])
    block = _mask_from_world([(x, y, z) for x in (-3, -2, -1) for y in (-3, -2, -1) for z in (-2, -1, 0)])
    grid2 = nib.Nifti1Image(np.zeros((6, 5, 5), np.uint8),
                            np.array([[-2.0, 0, 0, 5], [0, 2, 0, -5], [0, 0, 2, -6], [0, 0, 0, 1]]))
    resampled = _cohort([dot, block]).resample(grid2)
    assert_array_equal(resampled.lesion_voxel_counts, [0, 8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResamplingWarning)  # 2 mm voxels on the 1 mm atlas
        desc2 = lesion_descriptors(resampled, atlas=atlas)
        summary2 = territory_summary(resampled, atlas=atlas, level=1)
    assert desc2["hemisphere"].isna().tolist() == [True, False] and desc2["hemisphere"].iloc[1] == "left"
    assert desc2["dominant_level1"].isna().tolist() == [True, False]
    assert summary2.n_empty == 1 and summary2.n_outside_only == 0
    assert summary2.hemispheres.to_dict() == {"left": 1, "right": 0, "bilateral": 0}

    # Added to the fixture cohort (which has one lesion entirely outside the atlas).
    empty = np.zeros(LESION_SHAPE, dtype=bool)
    cohort = _cohort([*masks, empty])
    desc = lesion_descriptors(cohort, atlas=atlas)
    row = desc.iloc[-1]
    assert row["n_voxels"] == 0 and row["volume_ml"] == 0 and row["n_components"] == 0
    for column in ("hemisphere", "dominant_level1", "dominant_level2"):
        assert row[column] is pd.NA, column
        assert desc[column].dtype == "string", column
    for column in ("left_fraction", "right_fraction", "centroid_x", "dominant_level1_fraction",
                   "dominant_level2_fraction"):
        assert np.isnan(row[column]), column
    # The other subjects are described as without the empty lesion.
    pd.testing.assert_frame_equal(desc.iloc[:-1], lesion_descriptors(_cohort(masks), atlas=atlas))
    assert (desc["dominant_level1"] == "outside").sum() == 1  # the lesion outside the atlas only
    summary = territory_summary(cohort, atlas=atlas, level=1)
    without = territory_summary(_cohort(masks), atlas=atlas, level=1)
    assert summary.n_subjects == len(masks) + 1 and summary.n_empty == 1 and without.n_empty == 0
    assert summary.n_outside_only == without.n_outside_only == 1
    assert summary.hemispheres.to_dict() == without.hemispheres.to_dict()
    assert summary.hemispheres.sum() == summary.n_subjects - summary.n_empty
    assert_array_equal(summary.table["n_involved"], without.table["n_involved"])
    assert_array_equal(summary.table["n_dominant"], without.table["n_dominant"])
    assert "1 empty" in str(summary) and "empty" not in str(without)
    import matplotlib.pyplot as plt

    assert "empty 1" in summary.plot().get_title()
    plt.close("all")


def test_plot_territory_summary(cohort, atlas):
    import matplotlib.pyplot as plt

    summary = territory_summary(cohort, atlas=atlas, level=1)
    ax = plot_territory_summary(summary, value="n_involved")
    bars = ax.patches
    assert len(bars) == 2 * 3  # territories A, P, XL x sides left, right
    heights = sorted(b.get_height() for b in bars)
    # XL has no voxel in the atlas (side "unknown", 0 involved): two empty bars.
    assert heights == sorted([*summary.table["n_involved"].astype(float), 0.0])
    assert summary.plot().get_title().startswith(f"{len(cohort)} lesions")
    with pytest.raises(ValueError, match="'value' parameter"):
        plot_territory_summary(summary, value="bogus")
    plt.close("all")


# ------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def soop_all(soop_cohort, shared_data_dir):
    """All 1,449 SOOP masks (the 1,265 with a participants row plus the 184 without)."""
    extra = soop_cohort.excluded[soop_cohort.excluded["reason"] == "lesion mask without a phenotype row"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsm.exceptions.DroppedSubjectsWarning)
        others = lsm.load_cohort(dict(zip(extra["subject"], extra["source"])),
                                 pd.DataFrame({"participant_id": extra["subject"]}), n_jobs=2)
    indices = {s: soop_cohort.lesion_indices(s) for s in soop_cohort.subjects}
    indices.update({s: others.lesion_indices(s) for s in others.subjects})
    subjects = sorted(indices)
    cohort = Cohort(indices, pd.DataFrame(index=pd.Index(subjects, name="participant_id")),
                    soop_cohort.affine, soop_cohort.shape)
    assert len(cohort) == 1449
    return cohort


@pytest.fixture(scope="module")
def soop_reference(shared_data_dir):
    return pd.read_csv(shared_data_dir / "soop" / "artery_reference.tsv", sep="\t").set_index("participant_id")


def _reference_labels(reference):
    """Reference column -> label value ('10_MCAPL' is label 10 despite its left name)."""
    return {c: int(c.split("_")[0]) for c in reference.columns if c != "lesion_volume"}


def test_soop_matches_published_reference(soop_all, soop_reference, shared_data_dir):
    atlas_dir = shared_data_dir / "soop" / "atlas"
    atlas = (atlas_dir / "ArterialAtlas136.nii.gz", atlas_dir / "ArterialAtlas136.txt")
    with pytest.warns(LSMWarning, match="repeats abbreviation"):  # its right labels 10/12/14/16
        table = territory_load(soop_all, atlas=atlas)
    table = table.loc[soop_reference.index]
    assert table.attrs["alignment"] == "exact"
    assert_allclose(table["lesion_volume_ml"] * 1000, soop_reference["lesion_volume"], rtol=1e-12)
    labels = _reference_labels(soop_reference)
    assert sorted(labels.values()) == list(range(1, 32))  # label 32 is missing from the reference
    for column, value in labels.items():
        assert table.columns[value - 1].startswith(column.split("_")[1])
        assert_allclose(table.iloc[:, value - 1], soop_reference[column], rtol=0, atol=1e-12, err_msg=column)


def test_soop_default_atlas_full_territories(soop_all, soop_reference, shared_data_dir, monkeypatch):
    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    atlas_dir = shared_data_dir / "soop" / "atlas"
    full = np.asarray(
        nib.load(shared_data_dir / "arterial_atlas" / "atlas-Arterial_level-1_res-1mm_dseg.nii.gz").dataobj)
    cropped = np.asarray(nib.load(atlas_dir / "ArterialAtlas136.nii.gz").dataobj)
    full_voxels = np.bincount(full.ravel().astype(int), minlength=33)[1:]
    cropped_voxels = np.bincount(cropped.ravel().astype(int), minlength=33)[1:]
    assert (full_voxels > cropped_voxels).any()  # the 136 grid crops some territories
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResamplingWarning)
        default = territory_load(soop_all).loc[soop_reference.index]
        default_ml = territory_load(soop_all, measure="ml")
    assert default.attrs["alignment"] == "exact"
    assert_allclose(list(default.attrs["territory_volume_ml"].values()), full_voxels / 1000, rtol=1e-12)
    for column, value in _reference_labels(soop_reference).items():
        numerators = soop_reference[column] * cropped_voxels[value - 1]
        assert_allclose(default.iloc[:, value - 1] * full_voxels[value - 1], numerators, rtol=1e-9, atol=1e-6)
    with pytest.warns(LSMWarning):
        cropped_ml = territory_load(
            soop_all, measure="ml", atlas=(atlas_dir / "ArterialAtlas136.nii.gz", atlas_dir / "ArterialAtlas136.txt"))
    assert_array_equal(default_ml.iloc[:, :33].to_numpy(), cropped_ml.iloc[:, :33].to_numpy())  # incl. outside


def test_soop_level2_is_sum_of_level1(soop_all, shared_data_dir, monkeypatch):
    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    table = pd.read_csv(shared_data_dir / "arterial_atlas" / "labels_level-1.tsv", sep="\t")
    level1 = territory_load(soop_all, measure="ml")
    level2 = territory_load(soop_all, level=2, measure="ml")
    summed = level1[table["abbrev"]].T.groupby(table.set_index("abbrev")["level2_abbrev"]).sum().T
    assert list(level2.columns[:10]) == ["ACAL", "ACAR", "MCAL", "MCAR", "PCAL", "PCAR", "VBL", "VBR", "LVL", "LVR"]
    assert_allclose(level2[summed.columns], summed, rtol=1e-12)
    full = np.asarray(
        nib.load(shared_data_dir / "arterial_atlas" / "atlas-Arterial_level-1_res-1mm_dseg.nii.gz").dataobj)
    frac2 = territory_load(soop_all, level=2)
    for name, members in table.groupby("level2_abbrev")["index"]:
        assert_allclose(frac2[name], summed[name] / (np.isin(full, members).sum() / 1000), rtol=1e-12)


def test_soop_overlap_matches_published_frequency_map(soop_all, shared_data_dir):
    published = nib.load(shared_data_dir / "soop" / "lesion_mean.nii.gz")
    mine = overlap_map(soop_all)
    assert_allclose(mine.affine, published.affine)
    # The published map is stored as uint8 with a scale factor: compare within half a step.
    assert_allclose(np.asarray(mine.dataobj), np.asarray(published.dataobj), rtol=0,
                    atol=published.dataobj.slope / 2 + 1e-7)


def test_soop_descriptors(soop_cohort, shared_data_dir, monkeypatch):
    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    sample = soop_cohort.select(subjects=soop_cohort.subjects[:40])
    desc = lesion_descriptors(sample, n_jobs=2)
    assert_array_equal(desc["n_voxels"], sample.lesion_voxel_counts)
    loads = territory_load(sample, measure="ml")
    assert (desc["dominant_level1"] == loads.iloc[:, :32].idxmax(axis=1)).all()
    for s in sample.subjects[:15]:
        assert desc.loc[s, "n_components"] == ndimage.label(sample.lesion_mask(s), structure=np.ones((3, 3, 3)))[1]
    assert set(desc["hemisphere"]) <= {"left", "right", "bilateral"}
