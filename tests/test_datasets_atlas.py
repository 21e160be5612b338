"""fetch_arterial_atlas and install_arterial_atlas."""

import shutil
import zipfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from lsm.datasets import fetch_arterial_atlas, install_arterial_atlas
from lsm.datasets._atlas import _parse_upstream_labels, array_sha256
from lsm.datasets._fetch import file_sha256
from lsm.exceptions import DataFetchError, HashMismatchError


def test_missing_atlas_explains_nitrc_login(tmp_path, monkeypatch):
    monkeypatch.delenv("LSM_DATA_URL", raising=False)
    with pytest.raises(DataFetchError, match=r"NITRC.*login.*install_arterial_atlas"):
        fetch_arterial_atlas(data_dir=tmp_path)


@pytest.mark.parametrize("bad", [{"level": 3}, {"resolution": 1.5}])
def test_invalid_options(bad, tmp_path):
    with pytest.raises(ValueError, match="parameter"):
        fetch_arterial_atlas(data_dir=tmp_path, **bad)


def test_upstream_label_table_is_corrected(tmp_path):
    # A label file in the upstream format with its known errors (right-side abbrevs of
    # 10/12/14/16, PCAR/PCAL swapped for 17/18, 31/32 swapped in the GitHub copy).
    sides = ["left", "right"]
    lines = ["Digital 3D Brain MRI Arterial Territories Atlas\t\t\t\t\t\t", "",
             "aterial territories\tLevel1_intensity\tLevel1_lables\tLevel2_intensity\t"
             "Level2_labels\tlevel2_bilateral\tmajor_territories"]
    for i in range(1, 33):
        side = sides[(i + 1) % 2]
        abbrev = f"X{i}L" if i in (10, 12, 14, 16, 32) else f"X{i}{side[0].upper()}"
        lvl2 = "PCAR" if i == 17 else "Q"
        lines.append(f"territory {i} posterior choroidal thalamoperfurators {side}\t{i}\t{abbrev}\t"
                     f"{(i + 1) // 2}\t{lvl2}\tB{(i + 1) // 2}\tMajor")
    path = tmp_path / "labels.txt"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    table = _parse_upstream_labels(path)
    assert len(table) == 32
    right = table[table["index"] % 2 == 0]
    assert right["abbrev"].str.endswith("R").all()
    assert (table[table["index"] % 2 == 1]["abbrev"].str.endswith("L")).all()
    assert table.loc[table["index"] == 17, "level2_abbrev"].item() == "B9L"
    assert not table["name"].str.contains("perfurators").any()
    path.write_text("not a label table\n", encoding="utf-8")
    with pytest.raises(DataFetchError, match="found 0 label rows, expected 32"):
        _parse_upstream_labels(path)


@pytest.mark.parametrize("level,resolution,shape,n", [(1, 1, (182, 218, 182), 32), (1, 2, (91, 109, 91), 32),
                                                      (2, 1, (182, 218, 182), 10), (2, 2, (91, 109, 91), 10)])
def test_fetch_from_shared_data(shared_data_dir, level, resolution, shape, n):
    atlas = fetch_arterial_atlas(level, resolution, data_dir=shared_data_dir)
    assert atlas.img.shape == shape
    assert nib.aff2axcodes(atlas.img.affine) == ("R", "A", "S")
    assert np.allclose(atlas.img.affine[:3, 3], [-91, -126, -72])
    data = np.asarray(atlas.img.dataobj)
    assert data.dtype == np.int32
    assert set(np.unique(data)) == set(range(n + 1))
    assert list(atlas.labels["index"]) == list(range(1, n + 1))
    assert atlas.licence.startswith("CC BY-SA 4.0") and "Sci Data 10:74" in atlas.licence
    assert atlas.filename.name == f"atlas-Arterial_level-{level}_res-{resolution}mm_dseg.nii.gz"
    # Hemisphere labels agree with the image: every label's centroid lies on its side
    # (world x < 0 is left in RAS), computed independently of the label table.
    ijk = np.argwhere(data > 0)
    xyz = nib.affines.apply_affine(atlas.img.affine, ijk)
    values = data[tuple(ijk.T)]
    for row in atlas.labels.itertuples():
        x = xyz[values == row.index, 0].mean()
        assert (x < 0) == (row.hemisphere == "left"), (row.abbrev, x)
        assert row.abbrev.endswith("L" if row.hemisphere == "left" else "R")


def test_level1_to_level2_mapping_matches_images(shared_data_dir):
    one = fetch_arterial_atlas(1, 1, data_dir=shared_data_dir)
    two = fetch_arterial_atlas(2, 1, data_dir=shared_data_dir)
    d1, d2 = np.asarray(one.img.dataobj), np.asarray(two.img.dataobj)
    mapping = dict(zip(one.labels["index"], one.labels["level2_index"]))
    relabelled = np.vectorize(lambda v: mapping.get(v, 0))(np.arange(33))[d1]
    # The distributed level-2 image is a relabelling up to 318 boundary voxels.
    assert np.count_nonzero(relabelled != d2) == 318
    # The documented rule: 1,3->1; 2,4->2; 5..15 odd->3; 6..16 even->4; 17..24 odd->5,
    # even->6; 25..30 odd->7, even->8; 31->9; 32->10.
    rule = {1: 1, 3: 1, 2: 2, 4: 2, 31: 9, 32: 10}
    rule.update({i: 3 if i % 2 else 4 for i in range(5, 17)})
    rule.update({i: 5 if i % 2 else 6 for i in range(17, 25)})
    rule.update({i: 7 if i % 2 else 8 for i in range(25, 31)})
    assert mapping == rule
    names2 = dict(zip(two.labels["index"], two.labels["abbrev"]))
    for row in one.labels.itertuples():
        assert names2[row.level2_index] == row.level2_abbrev


def _fake_nitrc_release(shared_data_dir, tmp_path, flip_level2=True):
    """Atlas_MNI152.zip as NITRC distributes it (LAS, float), from the shared files."""
    src = shared_data_dir / "arterial_atlas"
    up = tmp_path / "release" / "Atlas_182_MNI152"
    up.mkdir(parents=True)
    orig = nib.load(src / "ArterialAtlas_original-header_1mm.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(orig.dataobj).astype(np.float32), orig.affine),
             up / "ArterialAtlas.nii")
    level2 = np.asarray(nib.load(src / "atlas-Arterial_level-2_res-1mm_dseg.nii.gz").dataobj)
    if flip_level2:
        level2 = level2[::-1]
    nib.save(nib.Nifti1Image(level2.astype(np.float32), orig.affine), up / "ArterialAtlas_level2.nii")
    shutil.copy(src / "ArterialAtlasLables_original.txt", tmp_path / "ArterialAtlaslables.txt")
    archive = tmp_path / "Atlas_MNI152.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in up.iterdir():
            zf.write(f, f"Atlas_182_MNI152/{f.name}")
    return archive


def test_install_from_release_reproduces_shared_files(shared_data_dir, tmp_path):
    archive = _fake_nitrc_release(shared_data_dir, tmp_path)
    out = install_arterial_atlas(archive, labels=tmp_path / "ArterialAtlaslables.txt",
                                 data_dir=tmp_path / "data")
    ref = shared_data_dir / "arterial_atlas"
    for name in ("labels_level-1.tsv", "labels_level-2.tsv"):
        assert file_sha256(out / name) == file_sha256(ref / name)
    for level in (1, 2):
        for res in (1, 2):
            name = f"atlas-Arterial_level-{level}_res-{res}mm_dseg.nii.gz"
            mine, theirs = nib.load(out / name), nib.load(ref / name)
            assert np.array_equal(np.asarray(mine.dataobj), np.asarray(theirs.dataobj))
            assert np.allclose(mine.affine, theirs.affine)
            assert array_sha256(mine) == array_sha256(theirs)
    atlas = fetch_arterial_atlas(1, 2, data_dir=tmp_path / "data")
    pd.testing.assert_frame_equal(atlas.labels, fetch_arterial_atlas(1, 2, data_dir=shared_data_dir).labels)
    # An existing install is not overwritten silently.
    with pytest.raises(FileExistsError, match="overwrite"):
        install_arterial_atlas(archive, labels=tmp_path / "ArterialAtlaslables.txt",
                               data_dir=tmp_path / "data")


def test_install_rejects_a_different_atlas(shared_data_dir, tmp_path):
    # Level 2 left in RAS order (i.e. the wrong orientation): voxel hash mismatch.
    archive = _fake_nitrc_release(shared_data_dir, tmp_path, flip_level2=False)
    with pytest.raises(HashMismatchError, match="level-2.*differs from the reference"):
        install_arterial_atlas(archive, labels=tmp_path / "ArterialAtlaslables.txt",
                               data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "arterial_atlas").exists()


def test_install_from_extracted_folder(shared_data_dir, tmp_path):
    _fake_nitrc_release(shared_data_dir, tmp_path)
    # Labels found inside the folder when not given.
    shutil.copy(tmp_path / "ArterialAtlaslables.txt", tmp_path / "release" / "ArterialAtlasLables.txt")
    out = install_arterial_atlas(tmp_path / "release", data_dir=tmp_path / "data")
    ref = shared_data_dir / "arterial_atlas"
    assert file_sha256(out / "labels_level-2.tsv") == file_sha256(ref / "labels_level-2.tsv")
    # An installed folder passes verify=True: derived images are checked voxel-wise.
    from lsm.datasets import fetch_dataset

    assert fetch_dataset("arterial_atlas", data_dir=tmp_path / "data", verify=True) == out


def test_fetch_atlas_from_mirror(shared_data_dir, http_root, tmp_path, monkeypatch):
    www, url, _ = http_root
    shutil.copytree(shared_data_dir / "arterial_atlas", www / "arterial_atlas")
    monkeypatch.setenv("LSM_DATA_URL", url)
    atlas = fetch_arterial_atlas(2, 2, data_dir=tmp_path / "cache")
    assert atlas.filename.parent == tmp_path / "cache" / "arterial_atlas"
    ref = fetch_arterial_atlas(2, 2, data_dir=shared_data_dir)
    np.testing.assert_array_equal(np.asarray(atlas.img.dataobj), np.asarray(ref.img.dataobj))
    assert not (tmp_path / "cache" / "arterial_atlas" / "LICENSE").exists()
