"""Tests of lsm.results.VLSMResult on small synthetic grids with planted blobs."""

import json
import logging
import os
import sys
import types

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import lsm.results as results_mod
from lsm.exceptions import AnalysisError, DataFetchError, OutputExistsError
from lsm.results import VLSMResult

SHAPE = (12, 14, 10)
# LAS, 2 mm, origin so that voxel (i, j, k) sits at (90 - 2i, -126 + 2j, -72 + 2k) mm
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def _planted(seed=0):
    """z volume with known clusters; returns (z, tested) volumes.

    - A: positive 3x3x3 cube at i 3..5, j 4..6, k 3..5 (27 voxels), z = 4, peak 6 at (4, 5, 4)
    - B: negative 2x2x1 block at i 8..9, j 2..3, k 7 (4 voxels), z = -4, peak -5 at (9, 3, 7)
    - C: single positive voxel at (1, 12, 1), z = 3.5
    - D: two positive voxels touching only by a corner: (8, 10, 2) z=4.5 and (9, 11, 3) z=3.2
    Background |z| < 1. Untested: the slab i == 11.
    """
    rng = np.random.default_rng(seed)
    z = rng.uniform(-0.9, 0.9, size=SHAPE)
    z[3:6, 4:7, 3:6] = 4.0
    z[4, 5, 4] = 6.0
    z[8:10, 2:4, 7] = -4.0
    z[9, 3, 7] = -5.0
    z[1, 12, 1] = 3.5
    z[8, 10, 2] = 4.5
    z[9, 11, 3] = 3.2
    tested = np.ones(SHAPE, bool)
    tested[11] = False
    return z, tested


def make_result(seed=0, **overrides):
    z_vol, tested_vol = _planted(seed)
    tested = tested_vol.reshape(-1)
    z = z_vol.reshape(-1)[tested]
    n_tested = int(tested.sum())
    kwargs = dict(
        affine=AFFINE,
        shape=SHAPE,
        tested=tested,
        stat=2.0 * z,
        z=z,
        p=np.linspace(0.0, 1.0, n_tested),
        p_corrected=np.linspace(1.0, 0.0, n_tested),
        significant=np.abs(z) > 3,
        n_lesioned=np.arange(int(np.prod(SHAPE))) % 17,
        threshold=3.0,
        null_distribution=np.random.default_rng(seed).normal(2.5, 0.5, size=99),
        params={"score": "nihss", "method": "ttest", "covariates": ["age"], "alpha": 0.05,
                "correction": "fwe", "alternative": "two-sided", "n_permutations": 99,
                "random_state": np.int64(7), "min_lesioned": 0.05, "min_lesioned_count": 2,
                "n_jobs": 1, "lesion_volume": None},
        provenance={"n_subjects": np.int64(40), "subjects": [f"sub-{i:02d}" for i in range(40)],
                    "n_voxels_tested": n_tested, "n_unique_patterns": np.int32(321),
                    "runtime_s": np.float64(1.25), "created": "2026-01-01T00:00:00",
                    "numpy": np.__version__, "weird": float("nan")},
        extra_maps={"tfce": np.abs(z) * 10},
        observed=6.0,
        null_statistic="max_abs_z",
        excluded=[{"subject": "sub-99", "reason": "missing score 'nihss'"}],
    )
    kwargs.update(overrides)
    return VLSMResult.from_arrays(**kwargs)


def mm(i, j, k):
    return (90.0 - 2 * i, -126.0 + 2 * j, -72.0 + 2 * k)


# ------------------------------------------------------------------------ maps
def test_maps_on_grid_and_fill_values():
    res = make_result()
    z_vol, tested = _planted()
    for img in (res.stat, res.z, res.p, res.p_corrected, res.n_lesioned, res.significant,
                res.mask_img, res.extra_maps["tfce"]):
        assert isinstance(img, nib.Nifti1Image)
        assert img.shape == SHAPE
        np.testing.assert_array_equal(img.affine, AFFINE)
    z = res.z.get_fdata()
    np.testing.assert_array_equal(z[tested], z_vol[tested])
    assert np.all(z[~tested] == 0)
    assert np.all(res.stat.get_fdata()[~tested] == 0)
    np.testing.assert_array_equal(res.stat.get_fdata()[tested], 2 * z_vol[tested])
    assert np.all(res.p.get_fdata()[~tested] == 1)
    assert np.all(res.p_corrected.get_fdata()[~tested] == 1)
    sig = np.asarray(res.significant.dataobj)
    assert sig.dtype == np.uint8
    np.testing.assert_array_equal(sig.astype(bool), tested & (np.abs(z_vol) > 3))
    np.testing.assert_array_equal(np.asarray(res.mask_img.dataobj).astype(bool), tested)
    np.testing.assert_array_equal(np.asarray(res.n_lesioned.dataobj).reshape(-1),
                                  np.arange(np.prod(SHAPE)) % 17)
    assert res.n_tested == tested.sum() == 11 * 14 * 10
    assert res.n_significant == 27 + 4 + 1 + 2
    assert res.voxel_volume_mm3 == 8.0
    assert res.params["random_state"] == 7 and type(res.params["random_state"]) is int
    assert res.provenance["weird"] is None
    json.dumps(res.params), json.dumps(res.provenance)  # JSON-safe


def test_result_is_frozen_and_null_read_only():
    res = make_result()
    with pytest.raises(Exception, match="cannot assign"):
        res.threshold = 1.0
    with pytest.raises(ValueError):
        res.null_distribution[0] = 1.0


def test_thresholded_map_zeroes_non_significant():
    res = make_result()
    z_vol, tested = _planted()
    thr = res.thresholded("z").get_fdata()
    expected = np.where(tested & (np.abs(z_vol) > 3), z_vol, 0.0)
    np.testing.assert_array_equal(thr, expected)
    with pytest.raises(ValueError, match="'which' parameter"):
        res.thresholded("nope")


@pytest.mark.parametrize(
    "override, exc, match",
    [
        ({"stat": np.zeros(5)}, ValueError, "'stat' must be a 1D array of length 1540"),
        ({"tested": np.ones(7, bool)}, ValueError, "'tested' must be a 1D array of length 1680"),
        ({"p": np.full(1540, 1.5)}, ValueError, "'p' must lie in"),
        ({"z": np.full(1540, np.nan)}, AnalysisError, "'z' has 1540 NaN"),
        ({"affine": np.eye(3)}, ValueError, "'affine' must be a finite"),
        ({"n_lesioned": np.full(1680, 0.5)}, ValueError, "'n_lesioned' must hold integer"),
        ({"extra_maps": {"tfce": np.zeros(3)}}, ValueError, "extra_maps\\['tfce'\\]"),
    ],
)
def test_from_arrays_rejects_bad_input(override, exc, match):
    with pytest.raises(exc, match=match):
        make_result(**override)


def test_to_dataframe_rows_and_coordinates():
    res = make_result()
    z_vol, tested = _planted()
    df = res.to_dataframe()
    assert len(df) == tested.sum()
    assert list(df.columns[:6]) == ["i", "j", "k", "x_mm", "y_mm", "z_mm"]
    row = df[(df.i == 4) & (df.j == 5) & (df.k == 4)].iloc[0]
    assert (row.x_mm, row.y_mm, row.z_mm) == mm(4, 5, 4) == (82.0, -116.0, -64.0)
    assert row.z == 6.0 and row.stat == 12.0 and row.tfce == 60.0 and bool(row.significant)
    first = df.iloc[0]
    assert (first.i, first.j, first.k) == (0, 0, 0)
    assert (first.x_mm, first.y_mm, first.z_mm) == (90.0, -126.0, -72.0)
    sig = res.to_dataframe(significant_only=True)
    assert len(sig) == 34 and sig["significant"].all()
    assert set(map(tuple, sig[["i", "j", "k"]].to_numpy())) == set(
        zip(*np.nonzero(tested & (np.abs(z_vol) > 3))))


# ------------------------------------------------------------------------ clusters
def _scipy_clusters(mask, connectivity):
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    labels, n = ndimage.label(mask, structure=structure)
    return sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_cluster_sizes_match_scipy_label(connectivity):
    res = make_result()
    z_vol, tested = _planted()
    sig = tested & (np.abs(z_vol) > 3)
    expected = sorted(_scipy_clusters(sig & (z_vol > 0), connectivity)
                      + _scipy_clusters(sig & (z_vol < 0), connectivity), reverse=True)
    table = res.clusters(connectivity=connectivity, atlas=None)
    assert table["n_voxels"].tolist() == expected
    assert table["cluster"].tolist() == list(range(1, len(expected) + 1))
    np.testing.assert_array_equal(table["volume_mm3"], np.array(expected) * 8.0)


def test_cluster_peaks_known_answers():
    res = make_result()
    table = res.clusters(atlas=None)  # 26-connectivity: D is one cluster of 2
    assert table["n_voxels"].tolist() == [27, 4, 2, 1]
    a, b, d, c = (table.iloc[r] for r in range(4))
    assert a.sign == 1 and a.volume_mm3 == 216.0
    assert (a.x_mm, a.y_mm, a.z_mm) == (82.0, -116.0, -64.0)
    assert a.peak_z == 6.0 and a.peak_stat == 12.0
    assert b.sign == -1 and (b.x_mm, b.y_mm, b.z_mm) == mm(9, 3, 7) == (72.0, -120.0, -58.0)
    assert b.peak_z == -5.0 and b.peak_stat == -10.0
    assert d.sign == 1 and (d.x_mm, d.y_mm, d.z_mm) == mm(8, 10, 2) and d.peak_z == 4.5
    assert c.n_voxels == 1 and (c.x_mm, c.y_mm, c.z_mm) == mm(1, 12, 1) and c.peak_z == 3.5
    # peak p values are those of the peak voxel
    df = res.to_dataframe()
    peak_row = df[(df.i == 4) & (df.j == 5) & (df.k == 4)].iloc[0]
    assert a.peak_p == peak_row.p and a.peak_p_corrected == peak_row.p_corrected


def test_cluster_connectivity_and_min_size():
    res = make_result()
    t6 = res.clusters(connectivity=6, atlas=None)
    assert t6["n_voxels"].tolist() == [27, 4, 1, 1, 1]  # D splits into two singletons
    big = res.clusters(min_size_mm3=16.0, atlas=None)  # 2 voxels = 16 mm^3 kept, 1 voxel dropped
    assert big["n_voxels"].tolist() == [27, 4, 2]
    assert res.clusters(min_size_mm3=1000, atlas=None).empty


def test_cluster_threshold_and_alternative():
    res = make_result()
    # |z| >= 4.2: A's peak (6), B's peak (-5) and D's first voxel (4.5)
    t = res.clusters(threshold=4.2, atlas=None)
    assert sorted(t["peak_z"].tolist()) == [-5.0, 4.5, 6.0]
    assert t["n_voxels"].tolist() == [1, 1, 1]
    greater = make_result(params={"alternative": "greater"}).clusters(threshold=4.2, atlas=None)
    assert sorted(greater["peak_z"].tolist()) == [4.5, 6.0]
    less = make_result(params={"alternative": "less"}).clusters(threshold=4.2, atlas=None)
    assert less["peak_z"].tolist() == [-5.0]
    with pytest.raises(ValueError, match="'connectivity' parameter"):
        res.clusters(connectivity=4, atlas=None)
    with pytest.raises(ValueError, match="'atlas' parameter"):
        res.clusters(atlas="aal")


def test_no_significant_voxel_gives_empty_table():
    n = 11 * 14 * 10
    res = make_result(significant=np.zeros(n, bool))
    table = res.clusters(atlas=None)
    assert table.empty and "peak_z" in table.columns
    assert "No voxel is significant" in str(res.summary())


@pytest.fixture
def real_fetcher(monkeypatch):
    """The real lsm.datasets fetcher with an empty atlas cache (skip if not there)."""
    import lsm.datasets as datasets
    if not hasattr(datasets, "fetch_arterial_atlas"):
        pytest.skip("lsm.datasets.fetch_arterial_atlas not available")
    monkeypatch.setattr(results_mod._AtlasLookup, "_cache", {})
    return datasets.fetch_arterial_atlas


def _fake_atlas_module(monkeypatch, fail=False):
    """Install a fake lsm.datasets whose 1 mm atlas labels x > 80 mm as 3, else 7."""
    calls = []

    def fetch_arterial_atlas(level=1, resolution=1, data_dir=None):
        calls.append((level, resolution, data_dir))
        if fail:
            raise DataFetchError("atlas not found in /nowhere")
        aff = np.array([[1.0, 0, 0, 60], [0, 1.0, 0, -130], [0, 0, 1.0, -75], [0, 0, 0, 1]])
        x = 60 + np.arange(40)  # 60..99 mm
        data = (np.where(x > 80, 3, 7)[:, None, None] * np.ones((40, 40, 40))).astype(np.int16)
        if level == 2:
            data = np.where(data == 3, 1, 2).astype(np.int16)
            labels = pd.DataFrame({"index": [1, 2], "abbrev": ["ACAL", "PCAL"],
                                   "name": ["ACA left", "PCA left"]})
        else:
            labels = pd.DataFrame({"index": [3, 7], "abbrev": ["MLSL", "PCAL"],
                                   "name": ["medial lenticulostriate left", "PCA left"],
                                   "level2_index": [1, 2], "level2_abbrev": ["ACAL", "PCAL"],
                                   "hemisphere": ["L", "L"]})
        return types.SimpleNamespace(img=nib.Nifti1Image(data, aff), labels=labels)

    fake = types.ModuleType("lsm.datasets")
    fake.fetch_arterial_atlas = fetch_arterial_atlas
    monkeypatch.setitem(sys.modules, "lsm.datasets", fake)
    monkeypatch.setattr(results_mod._AtlasLookup, "_cache", {})
    return calls


def test_cluster_territories_with_fake_atlas(monkeypatch):
    calls = _fake_atlas_module(monkeypatch)
    table = make_result().clusters(data_dir="somewhere")
    assert {c[0] for c in calls} == {1, 2} and calls[0][2] == "somewhere"
    a = table.iloc[0]
    # A spans i = 3, 4, 5 -> x = 84, 82, 80: two thirds at x > 80 (label 3), one third label 7
    assert a.territory_level1 == "MLSL" and a.territory_level1_name == "medial lenticulostriate left"
    assert a.territory_level2 == "ACAL"
    assert a.territories_level1 == "MLSL 66.7%, PCAL 33.3%"
    assert a.territories_level2 == "ACAL 66.7%, PCAL 33.3%"
    b = table.iloc[1]  # B at i 8..9 -> x = 74, 72: label 7 only
    assert b.territory_level1 == "PCAL" and b.territories_level1 == "PCAL 100.0%"
    c = table.iloc[3]  # C at i = 1 -> x = 88 > 80
    assert c.territory_level1 == "MLSL"


def test_cluster_peak_outside_atlas(monkeypatch):
    _fake_atlas_module(monkeypatch)
    # the fake atlas spans y in [-130, -91] mm; shift the grid so that voxel j = 13 lies at
    # y = -60 + 26 = -34 mm, outside it
    _, tested = _planted()
    vol = np.zeros(SHAPE)
    vol[2, 13, 0] = 5.0
    affine = AFFINE.copy()
    affine[1, 3] = -60.0
    z = vol[tested]
    row = make_result(affine=affine, z=z, stat=z, significant=z > 3).clusters().iloc[0]
    assert row.y_mm == -34.0
    assert row.territory_level1 == "outside" and row.territories_level1 == "outside 100.0%"


def test_cluster_atlas_unavailable_logs_warning(monkeypatch, caplog):
    _fake_atlas_module(monkeypatch, fail=True)
    with caplog.at_level(logging.WARNING, logger="lsm"):
        table = make_result().clusters()
    assert "Arterial atlas unavailable" in caplog.text and "/nowhere" in caplog.text
    for col in ("territory_level1", "territory_level2", "territories_level1"):
        assert (table[col] == "unavailable").all()
    assert table["n_voxels"].tolist() == [27, 4, 2, 1]


@pytest.mark.shared_data
def test_cluster_territory_real_atlas(shared_data_dir, real_fetcher):
    # 2 mm MNI grid (FSL 91x109x91), blob around MNI (-40, -10, 20)
    shape = (91, 109, 91)
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
    ijk = np.rint(np.linalg.solve(affine, [-40, -10, 20, 1])[:3]).astype(int)
    vol = np.zeros(shape)
    i, j, k = ijk
    vol[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = 4.0
    vol[i, j, k] = 5.0
    tested = np.zeros(shape, bool)
    tested[i - 5:i + 6, j - 5:j + 6, k - 5:k + 6] = True
    z = vol[tested]
    res = make_result(affine=affine, shape=shape, tested=tested.reshape(-1), z=z, stat=z,
                      p=np.ones(z.size), p_corrected=np.ones(z.size), significant=z > 3,
                      n_lesioned=np.zeros(np.prod(shape), int), extra_maps=None)
    row = res.clusters(data_dir=shared_data_dir).iloc[0]
    # independent lookup straight from the shared atlas files
    folder = shared_data_dir / "arterial_atlas"
    atlas1 = nib.load(folder / "atlas-Arterial_level-1_res-1mm_dseg.nii.gz")
    atlas2 = nib.load(folder / "atlas-Arterial_level-2_res-1mm_dseg.nii.gz")
    lab1 = pd.read_csv(folder / "labels_level-1.tsv", sep="\t")
    lab2 = pd.read_csv(folder / "labels_level-2.tsv", sep="\t")

    def lookup(img, labels, xyz):
        a = np.rint(np.linalg.solve(img.affine, [*xyz, 1])[:3]).astype(int)
        value = int(np.asanyarray(img.dataobj)[tuple(a)])
        return labels.set_index("index").loc[value, "abbrev"]

    peak = (row.x_mm, row.y_mm, row.z_mm)
    assert peak == (-40.0, -10.0, 20.0)
    assert row.territory_level1 == lookup(atlas1, lab1, peak)
    assert row.territory_level2 == lookup(atlas2, lab2, peak) == "MCAL"


# ------------------------------------------------------------------------ save / load
def _assert_same(a, b):
    for name in ("stat", "z", "p", "p_corrected", "n_lesioned", "significant", "mask_img"):
        x, y = np.asarray(getattr(a, name).dataobj), np.asarray(getattr(b, name).dataobj)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
        np.testing.assert_array_equal(getattr(a, name).affine, getattr(b, name).affine)
    assert a.extra_maps.keys() == b.extra_maps.keys()
    for name in a.extra_maps:
        np.testing.assert_array_equal(a.extra_maps[name].dataobj, b.extra_maps[name].dataobj)
    assert a.threshold == b.threshold
    assert a.params == b.params and a.provenance == b.provenance
    assert a.observed == b.observed and a.null_statistic == b.null_statistic
    if a.null_distribution is None:
        assert b.null_distribution is None
    else:
        assert a.null_distribution.dtype == b.null_distribution.dtype
        np.testing.assert_array_equal(a.null_distribution, b.null_distribution)


def test_save_load_round_trip(tmp_path):
    # an affine not representable in float32 must still round-trip exactly
    affine = AFFINE.copy()
    affine[0, 3] = 90.1234567891234
    res = make_result(affine=affine)
    out = res.save(tmp_path / "res", atlas=None)
    names = sorted(os.listdir(out))
    assert "dataset_description.json" in names and "vlsm.json" in names
    assert "vlsm_stat-z_statmap.nii.gz" in names and "vlsm_stat-z_statmap.json" in names
    assert "vlsm_stat-tfce_statmap.nii.gz" in names and "vlsm_null.tsv" in names
    assert "vlsm_clusters.json" in names and "vlsm_null.json" in names
    sidecar = json.loads((out / "vlsm_clusters.json").read_text())
    assert set(sidecar) == set(res.clusters(atlas=None).columns)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "lsm"
    loaded = VLSMResult.load(out)
    _assert_same(res, loaded)
    assert "vlsm_excluded.tsv" in names and "vlsm_excluded.json" in names
    pd.testing.assert_frame_equal(loaded.excluded, res.excluded)
    assert list(loaded.excluded["subject"]) == ["sub-99"]
    # the map files are plain NIfTI readable by nibabel on their own
    z = nib.load(out / "vlsm_stat-z_statmap.nii.gz").get_fdata()
    np.testing.assert_array_equal(z, res.z.get_fdata())
    clusters = pd.read_csv(out / "vlsm_clusters.tsv", sep="\t")
    pd.testing.assert_frame_equal(clusters, res.clusters(atlas=None), check_dtype=False)
    pd.testing.assert_frame_equal(loaded.clusters(atlas=None), res.clusters(atlas=None))


def test_save_load_without_null_and_integer_null(tmp_path):
    res = make_result(null_distribution=None, observed=None, threshold=None, extra_maps=None)
    _assert_same(res, VLSMResult.load(res.save(tmp_path / "a", atlas=None)))
    res = make_result(null_distribution=np.array([3, 0, 12, 7], dtype=np.int64),
                      observed=np.array([27.0, 4.0]))
    loaded = VLSMResult.load(res.save(tmp_path / "b", atlas=None))
    assert loaded.null_distribution.dtype == np.int64
    np.testing.assert_array_equal(loaded.observed, [27.0, 4.0])
    np.testing.assert_array_equal(loaded.null_distribution, [3, 0, 12, 7])


def _strict_json(path):
    """json.loads that refuses the non-standard NaN/Infinity constants."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_non_finite_observed_threshold_and_null_round_trip(tmp_path):
    # perfect separation: the observed max |z| is +inf, and so are some null maxima
    null = np.array([2.5, np.inf, 3.1, np.inf, 1.9])
    res = make_result(observed=np.inf, threshold=np.inf, null_distribution=null)
    out = res.save(tmp_path / "a", atlas=None)
    for sidecar in out.glob("*.json"):
        _strict_json(sidecar)  # standard JSON throughout
    meta = _strict_json(out / "vlsm.json")
    assert meta["observed"] == "inf" and meta["threshold"] == "inf"
    loaded = VLSMResult.load(out)
    assert loaded.observed == np.inf and loaded.threshold == np.inf
    np.testing.assert_array_equal(loaded.null_distribution, null)
    # arrays (cfwer, one value per side) with -inf and nan too
    res = make_result(observed=np.array([np.inf, -np.inf, np.nan, 4.0]))
    loaded = VLSMResult.load(res.save(tmp_path / "b", atlas=None))
    np.testing.assert_array_equal(loaded.observed, [np.inf, -np.inf, np.nan, 4.0])
    assert _strict_json(tmp_path / "b" / "vlsm.json")["observed"] == ["inf", "-inf", "nan", 4.0]


def test_save_with_fake_atlas_writes_territories(tmp_path, monkeypatch):
    _fake_atlas_module(monkeypatch)
    out = make_result().save(tmp_path / "res")
    clusters = pd.read_csv(out / "vlsm_clusters.tsv", sep="\t")
    assert clusters.loc[0, "territories_level1"] == "MLSL 66.7%, PCAL 33.3%"


def test_save_refuses_overwrite_then_overwrites(tmp_path):
    target = tmp_path / "res"
    make_result(seed=0).save(target, atlas=None)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        make_result(seed=1).save(target, atlas=None)
    assert VLSMResult.load(target).z.get_fdata()[0, 0, 0] == _planted(0)[0][0, 0, 0]
    make_result(seed=1).save(target, overwrite=True, atlas=None)
    assert VLSMResult.load(target).z.get_fdata()[0, 0, 0] == _planted(1)[0][0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def _failing_writer(monkeypatch, after):
    real = results_mod._write_nifti
    count = {"n": 0}

    def writer(img, path):
        count["n"] += 1
        if count["n"] > after:
            raise OSError("disk full (simulated)")
        real(img, path)

    monkeypatch.setattr(results_mod, "_write_nifti", writer)
    return count


def test_crash_mid_save_leaves_nothing(tmp_path, monkeypatch):
    count = _failing_writer(monkeypatch, after=3)
    with pytest.raises(OSError, match="disk full"):
        make_result().save(tmp_path / "res", atlas=None)
    assert count["n"] == 4  # three maps were written before the crash
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_overwrite_keeps_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "res"
    old = make_result(seed=0)
    old.save(target, atlas=None)
    _failing_writer(monkeypatch, after=2)
    with pytest.raises(OSError, match="disk full"):
        make_result(seed=1).save(target, overwrite=True, atlas=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    monkeypatch.undo()
    _assert_same(old, VLSMResult.load(target))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder written by VLSMResult.save"):
        VLSMResult.load(tmp_path)
    out = make_result().save(tmp_path / "res", atlas=None)
    meta = json.loads((out / "vlsm.json").read_text())
    meta["FormatVersion"] = 99
    (out / "vlsm.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99.*Upgrade lsm"):
        VLSMResult.load(out)
    # damaged files: the error names the file
    (out / "vlsm.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"vlsm\.json' is not valid JSON"):
        VLSMResult.load(out)
    del meta["affine"]
    meta["FormatVersion"] = 1
    (out / "vlsm.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"vlsm\.json' lacks \['affine'\]"):
        VLSMResult.load(out)
    out = make_result().save(tmp_path / "res2", atlas=None)
    (out / "vlsm_null.tsv").write_text("null\n1.5\noops\n")
    with pytest.raises(ValueError, match=r"vlsm_null\.tsv': could not convert .*'oops'"):
        VLSMResult.load(out)


def test_save_refuses_extra_map_file_collision(tmp_path):
    n = 11 * 14 * 10
    res = make_result(extra_maps={"stat": np.zeros(n)})  # the core map's file name
    with pytest.raises(ValueError, match="'stat' would be saved as .*rename it"):
        res.save(tmp_path / "res", atlas=None)
    res = make_result(extra_maps={"neg_log10_p": np.zeros(n), "neglog10p": np.ones(n)})
    with pytest.raises(ValueError, match="'neglog10p' would be saved as .*rename it"):
        res.save(tmp_path / "res", atlas=None)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ text / html
def test_summary_and_repr():
    res = make_result()
    text = res.summary()
    assert isinstance(text, str) and repr(text) == str(text)
    for needle in ("VLSM Results", "nihss", "ttest", "fwe", "Voxels tested:", "1540",
                   "Significant voxels:", "34", "sub-99: missing score 'nihss'", "age"):
        assert needle in text
    # strongest voxel first: A's peak at (82, -116, -64), z = 6
    lines = text.splitlines()
    first = lines[lines.index(next(ln for ln in lines if ln.startswith("Strongest"))) + 3]
    assert first.split()[:5] == ["82.0", "-116.0", "-64.0", "12", "6.000"]
    assert "n_significant=34" in repr(res)


def test_repr_html_is_well_formed():
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.tags = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (self.stack, tag)
            self.stack.pop()

    out = make_result()._repr_html_()
    parser = Parser()
    parser.feed(out)
    assert parser.stack == []
    assert parser.tags.count("table") == 2
    assert "Significant voxels" in out and "VLSMResult" in out


@pytest.mark.parametrize("origin", [(14.3, -27.3, -20.3), (11.7, -25.3, -18.2)])
def test_atlas_lookup_equals_nilearn_nearest_resampling(origin):
    from nilearn.image import resample_to_img

    rng = np.random.default_rng(3)
    # a 1 mm label atlas with random blocky labels
    labels = rng.integers(0, 6, size=(8, 9, 7)).repeat(4, 0).repeat(4, 1).repeat(4, 2)
    atlas_aff = np.array([[1.0, 0, 0, -20], [0, 1.0, 0, -25], [0, 0, 1.0, -18], [0, 0, 0, 1]])
    atlas = nib.Nifti1Image(labels.astype(np.int16), atlas_aff)
    table = pd.DataFrame({"index": np.arange(1, 6), "abbrev": list("ABCDE")})
    lut = results_mod._AtlasLookup(atlas, table)
    # an LAS 3 mm grid, offset so no voxel centre falls half-way between atlas voxels; the
    # second origin puts centres 0.3 mm beyond the first/last atlas voxel centres
    grid_aff = np.array([[-3.0, 0, 0, origin[0]], [0, 3.0, 0, origin[1]],
                         [0, 0, 3.0, origin[2]], [0, 0, 0, 1]])
    grid_shape = (13, 12, 10)
    target = nib.Nifti1Image(np.zeros(grid_shape, np.int16), grid_aff)
    expected = np.asarray(resample_to_img(atlas, target, interpolation="nearest",
                                          force_resample=True, copy_header=True).dataobj)
    ijk = np.indices(grid_shape).reshape(3, -1).T
    world = nib.affines.apply_affine(grid_aff, ijk)
    got = lut.labels_at(world).reshape(grid_shape)
    assert expected.any() and (expected == 0).any()  # the grid overhangs the atlas box
    # nilearn (scipy) treats points beyond the outer atlas voxel centres as outside; lsm's
    # one rule (lsm._images.voxel_of, shared with the cohort regridding) gives a point the
    # label of the atlas voxel that contains it, up to half a voxel beyond those centres.
    cont = nib.affines.apply_affine(np.linalg.inv(atlas_aff), world)
    in_centre_box = np.all((cont >= 0) & (cont <= np.array(labels.shape) - 1), axis=1).reshape(grid_shape)
    np.testing.assert_array_equal(got[in_centre_box], expected[in_centre_box])
    margin = ~in_centre_box & np.all((cont >= -0.5) & (cont < np.array(labels.shape) - 0.5),
                                     axis=1).reshape(grid_shape)
    nearest = np.clip(np.floor(cont + 0.5).astype(int), 0, np.array(labels.shape) - 1)
    np.testing.assert_array_equal(got[margin], labels[tuple(nearest.T)].reshape(grid_shape)[margin])
    assert (got[~in_centre_box & ~margin] == 0).all()


@pytest.mark.shared_data
def test_atlas_lookup_on_soop_grid_matches_published_resampling(shared_data_dir, real_fetcher):
    """On the SOOP lesion grid, the lookup equals the atlas the SOOP authors resampled."""
    soop = nib.load(shared_data_dir / "soop" / "atlas" / "ArterialAtlas136.nii.gz")
    lut = results_mod._AtlasLookup.get(1, shared_data_dir)
    ijk = np.indices(soop.shape)[:, ::3, ::3, ::3].reshape(3, -1).T  # ~150k voxels
    got = lut.labels_at(nib.affines.apply_affine(soop.affine, ijk))
    expected = np.asanyarray(soop.dataobj)[tuple(ijk.T)]
    assert np.unique(expected).size > 20
    np.testing.assert_array_equal(got, expected)


def test_cluster_territories_unavailable_with_real_fetcher(tmp_path, monkeypatch, caplog,
                                                            real_fetcher):
    monkeypatch.delenv("LSM_DATA_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="lsm"):
        table = make_result().clusters(data_dir=tmp_path)  # an empty folder: no atlas
    assert "Arterial atlas unavailable" in caplog.text
    assert (table["territory_level2"] == "unavailable").all() and len(table) == 4


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), connectivity=st.sampled_from([6, 18, 26]),
       density=st.floats(0.05, 0.6))
def test_clusters_property_against_scipy_label(seed, connectivity, density):
    """Random signed maps: clusters partition the significant voxels exactly as ndimage.label."""
    rng = np.random.default_rng(seed)
    shape = (6, 5, 4)
    z_vol = rng.choice([-3.0, -2.0, 2.0, 3.0], size=shape)  # ties on purpose
    sig_vol = rng.random(shape) < density
    z = z_vol.reshape(-1)
    res = VLSMResult.from_arrays(
        affine=np.eye(4), shape=shape, tested=np.ones(z.size, bool), stat=z, z=z,
        p=np.full(z.size, 0.5), p_corrected=np.full(z.size, 0.5),
        significant=sig_vol.reshape(-1), n_lesioned=np.zeros(z.size, int), threshold=None,
        null_distribution=None, params={}, provenance={})
    table = res.clusters(connectivity=connectivity, atlas=None)
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    expected = []
    for sign, mask in ((1, sig_vol & (z_vol > 0)), (-1, sig_vol & (z_vol < 0))):
        labels, n = ndimage.label(mask, structure=structure)
        for c in range(1, n + 1):
            member = labels == c
            peak = sign * np.max(sign * z_vol[member])
            # the reported peak is the first voxel (C order) reaching the extreme value
            first = np.argwhere(member & (z_vol == peak))[0]
            expected.append((int(member.sum()), sign, peak, tuple(float(v) for v in first)))
    got = [(r.n_voxels, r.sign, r.peak_z, (r.x_mm, r.y_mm, r.z_mm)) for r in table.itertuples()]
    assert sorted(got) == sorted(expected)
    assert table["n_voxels"].sum() == sig_vol.sum()
    assert list(table["n_voxels"]) == sorted(table["n_voxels"], reverse=True)


@pytest.mark.parametrize("provenance", [
    {"versions": {"lsm": "0.0.1.dev7", "numpy": "1.0"}},  # as lsm.vlsm records it
    {"lsm_version": "0.0.1.dev7", "versions": {"numpy": "1.0"}},  # the result contract's key
])
def test_dataset_description_records_the_version_that_made_the_result(tmp_path, provenance):
    import lsm

    assert lsm.__version__ != "0.0.1.dev7"
    res = make_result(provenance=provenance)
    out = res.save(tmp_path / "res", atlas=None)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Version"] == "0.0.1.dev7"
    # a result loaded and saved again by this version still names the version that made it
    again = VLSMResult.load(out).save(tmp_path / "again", atlas=None)
    desc = json.loads((again / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Version"] == "0.0.1.dev7"


def test_dataset_description_without_a_recorded_version_names_the_running_one(tmp_path):
    import lsm

    out = make_result(provenance={}).save(tmp_path / "res", atlas=None)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Version"] == lsm.__version__


def test_vlsm_result_follows_the_result_contract():
    from lsm._result import AnalysisResult, Summary

    res = make_result()
    assert isinstance(res, AnalysisResult) and isinstance(res.summary(), Summary)
    assert list(res.excluded.columns) == ["subject", "reason"]
    page = res.to_html(atlas=None)
    assert page.startswith("<!DOCTYPE html>") and "sub-99" in page
    import matplotlib

    matplotlib.use("Agg")
    fig = res.plot(kind="null")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes[0].patches) > 0
    with pytest.raises(ValueError, match="'kind' parameter"):
        res.plot(kind="histogram")
