"""Digital 3D Brain MRI Arterial Territories Atlas (Liu et al. 2023).

Layout of ``<data_dir>/arterial_atlas/`` (the project's ``shared/data`` layout)::

    atlas-Arterial_level-1_res-1mm_dseg.nii.gz   182x218x182, RAS, int32, 32 labels
    atlas-Arterial_level-1_res-2mm_dseg.nii.gz   91x109x91 (every second voxel)
    atlas-Arterial_level-2_res-{1,2}mm_dseg.nii.gz  10 labels (ACA/MCA/PCA/VB/LV x L/R)
    labels_level-1.tsv, labels_level-2.tsv       corrected label tables

How these files derive from the upstream release (:func:`install_arterial_atlas`
performs exactly these steps and checks the result against the manifest):

1. NITRC project "arterialatlas", release ArterialAtlas_v2_MNI152, file
   ``Atlas_MNI152.zip``, folder ``Atlas_182_MNI152/``: ``ArterialAtlas.nii`` (level 1)
   and ``ArterialAtlas_level2.nii`` (level 2), FSL MNI152 182x218x182 grid stored LAS.
2. Values cast to int32 (they are whole numbers stored as float) and the image
   reoriented to RAS (``nibabel.as_closest_canonical``: a flip of the x axis, affine
   origin 90 -> -91 mm). Voxel-to-world mapping is unchanged.
3. 2 mm versions: every second voxel along each axis (``data[::2, ::2, ::2]``, voxel
   size 2 mm, same origin); this is what ANTs ``ResampleImage ... 2x2x2 0 1``
   (nearest neighbour) produces on this grid.
4. Label tables from ``ArterialAtlasLables.txt`` with the upstream errors fixed: the
   side letter of each abbreviation follows the name (right-side labels 10/12/14/16
   repeat the left abbreviations upstream; the GitHub copy also swaps 31/32), the
   level-2 abbreviation follows the level-2 intensity (labels 17/18 have PCAR/PCAL
   swapped upstream), and two typos in names are fixed ("perfurators", "anteior").

NITRC serves the release only after a (free) login, so there is no anonymous URL to
download it from: download ``Atlas_MNI152.zip`` and ``ArterialAtlaslables.txt`` by hand
and run :func:`install_arterial_atlas`, or point ``LSM_DATA``/``LSM_DATA_URL`` at a
folder/mirror that already holds the derived files.
"""

import hashlib
import logging
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import atomic_output_dir
from .._validation import check_option
from ..exceptions import DataFetchError, HashMismatchError
from ._fetch import URL_ENV, dataset_files, fetch_dataset, file_sha256, get_data_dir

__all__ = ["ArterialAtlas", "fetch_arterial_atlas", "install_arterial_atlas", "array_sha256"]

logger = logging.getLogger("lsm")

DATASET = "arterial_atlas"
LICENCE = "CC BY-SA 4.0"
CITATION = (
    "Liu C-F, Hsu J, Xu X, et al. Digital 3D Brain MRI Arterial Territories Atlas. "
    "Sci Data 10:74 (2023). doi:10.1038/s41597-022-01923-0"
)
_LEVEL2_NAMES = {
    "ACA": "anterior cerebral artery",
    "MCA": "middle cerebral artery",
    "PCA": "posterior cerebral artery",
    "VB": "vertebro-basilar",
    "LV": "lateral ventricle",
}
_NAME_FIXES = {"perfurators": "perforators", "anteior": "anterior"}
_COLUMNS = ["index", "abbrev", "name", "level2_index", "level2_abbrev", "hemisphere",
            "bilateral", "major_territory"]


@dataclass(frozen=True)
class ArterialAtlas:
    """The arterial territory atlas at one level and resolution.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        Integer label image (int32, 0 = background) on the RAS FSL MNI152 grid
        (182x218x182 at 1 mm, 91x109x91 at 2 mm, origin (-91, -126, -72) mm).
    labels : pandas.DataFrame
        One row per label: ``index`` (image value), ``abbrev``, ``name``,
        ``level2_index``, ``level2_abbrev`` (the level-2 territory containing it; equal
        to ``index``/``abbrev`` at level 2), ``hemisphere`` ('left'/'right'),
        ``bilateral`` (ACA, MCA, PCA, VB, LV) and ``major_territory``
        (Anterior, Posterior, Ventricle).
    filename : pathlib.Path
        The image file.
    description : str
    licence : str
        "CC BY-SA 4.0" with the citation to give.
    citation : str
    level, resolution : int
    """

    img: object
    labels: pd.DataFrame
    filename: Path
    description: str
    licence: str
    citation: str = CITATION
    level: int = 1
    resolution: int = 1
    label_file: Path = field(default=None)

    def __repr__(self):
        return (f"ArterialAtlas(level={self.level}, resolution={self.resolution} mm, "
                f"{len(self.labels)} labels, shape={self.img.shape})")


def _description(level, resolution):
    content = ("32 labels: 30 arterial territories and the 2 lateral ventricles" if level == 1 else
               "10 labels: ACA, MCA, PCA, vertebro-basilar and lateral ventricle, left and right")
    return (
        f"Digital 3D Brain MRI Arterial Territories Atlas, level {level} ({content}), "
        f"{resolution} mm, FSL MNI152 (MNI152NLin6Asym) grid, RAS. Built from the lesion "
        "distributions of 1,298 acute stroke patients (Johns Hopkins University). "
        "Note: the distributed level-2 image is not an exact relabelling of level 1 "
        "(318 boundary voxels differ at 1 mm)."
    )


def array_sha256(img):
    """sha256 of an image's grid and voxel values (int32, C order).

    Independent of file compression and header details, so a file derived from the
    upstream release can be checked against the manifest.
    """
    data = np.ascontiguousarray(np.asarray(img.dataobj), dtype="<i4")
    digest = hashlib.sha256()
    digest.update(repr(tuple(int(s) for s in data.shape)).encode())
    digest.update(np.round(np.asarray(img.affine, dtype=np.float64), 4).tobytes())
    digest.update(data.tobytes())
    return digest.hexdigest()


def _read_label_table(path, level):
    table = pd.read_csv(path, sep="\t", dtype={"abbrev": str})
    if level == 1:
        table = table.rename(columns={"level2_bilateral": "bilateral"})
        table["hemisphere"] = np.where(table["name"].str.endswith("left"), "left", "right")
    else:
        table["name"] = [
            f"{_LEVEL2_NAMES[b]} {'left' if a.endswith('L') else 'right'}"
            for a, b in zip(table["abbrev"], table["bilateral"])
        ]
        table["level2_index"] = table["index"]
        table["level2_abbrev"] = table["abbrev"]
        table["hemisphere"] = np.where(table["abbrev"].str.endswith("L"), "left", "right")
    table["index"] = table["index"].astype(np.int64)
    table["level2_index"] = table["level2_index"].astype(np.int64)
    return table[_COLUMNS]


def _atlas_paths(root, level, resolution):
    return (root / f"atlas-Arterial_level-{level}_res-{resolution}mm_dseg.nii.gz",
            root / f"labels_level-{level}.tsv")


def _no_source_error(root):
    return DataFetchError(
        f"The arterial atlas is not in {str(root)!r} and cannot be downloaded "
        "anonymously: NITRC (https://www.nitrc.org/projects/arterialatlas) serves it only "
        "after a free login. Download 'Atlas_MNI152.zip' (release ArterialAtlas_v2_MNI152) "
        "and 'ArterialAtlaslables.txt' from there, then run "
        "lsm.datasets.install_arterial_atlas('Atlas_MNI152.zip', "
        "labels='ArterialAtlaslables.txt'); or set LSM_DATA to a folder that holds "
        f"arterial_atlas/ (or {URL_ENV} to a mirror of it)."
    )


def fetch_arterial_atlas(level=1, resolution=1, data_dir=None, url=None):
    """Load the Digital 3D Brain MRI Arterial Territories Atlas.

    Parameters
    ----------
    level : {1, 2}
        1: 30 arterial territories + 2 ventricles (32 labels); 2: ACA, MCA, PCA,
        vertebro-basilar and ventricle territories per hemisphere (10 labels).
    resolution : {1, 2}
        Voxel size in mm (FSL MNI152 grid: 182x218x182 or 91x109x91).
    data_dir : str or Path or None
        Data directory (default: ``LSM_DATA``, else ``~/lsm_data``); the atlas is read
        from ``<data_dir>/arterial_atlas/``.
    url : str or None
        Mirror laid out like ``shared/data`` to download missing files from
        (default: ``LSM_DATA_URL``). There is no anonymous upstream URL; see
        :func:`install_arterial_atlas`.

    Returns
    -------
    ArterialAtlas
        ``.img``, ``.labels``, ``.filename``, ``.description``, ``.licence``.

    Notes
    -----
    Licence CC BY-SA 4.0; cite Liu C-F et al., Sci Data 10:74 (2023). The label tables
    are corrected versions of the upstream table (the corrections are listed in the
    docstring of the ``lsm.datasets._atlas`` module).
    """
    import nibabel as nib

    check_option("level", level, (1, 2))
    check_option("resolution", resolution, (1, 2))
    root = get_data_dir(data_dir) / DATASET
    img_path, label_path = _atlas_paths(root, level, resolution)
    if not (img_path.is_file() and label_path.is_file()):
        if url is None and not os.environ.get(URL_ENV):
            raise _no_source_error(root)
        fetch_dataset(DATASET, data_dir=data_dir, url=url)
    img = nib.load(img_path)
    data = np.asarray(img.dataobj)
    if data.dtype.kind not in "iu":
        data = np.rint(data)
    img = nib.Nifti1Image(data.astype(np.int32), img.affine, img.header)
    img.set_data_dtype(np.int32)
    labels = _read_label_table(label_path, level)
    return ArterialAtlas(
        img=img,
        labels=labels,
        filename=img_path,
        description=_description(level, resolution),
        licence=f"{LICENCE}. Cite: {CITATION}",
        level=level,
        resolution=resolution,
        label_file=label_path,
    )


# --------------------------------------------------------------------------- install

def _parse_upstream_labels(path):
    """Rows of the upstream ArterialAtlasLables.txt as a corrected level-1 table."""
    rows = []
    started = False
    for line in Path(path).read_text(encoding="utf-8-sig", errors="replace").splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if not started:
            started = len(cells) > 1 and cells[1].lower().startswith("level1_intensity")
            continue
        if len(cells) < 7 or not cells[1].isdigit():
            continue
        name = cells[0]
        for bad, good in _NAME_FIXES.items():
            name = name.replace(bad, good)
        side = "L" if name.endswith("left") else "R"
        bilateral = cells[5]
        rows.append({
            "index": int(cells[1]),
            "abbrev": cells[2][:-1] + side,
            "name": name,
            "level2_index": int(cells[3]),
            "level2_abbrev": bilateral + side,
            "level2_bilateral": bilateral,
            "major_territory": cells[6],
        })
    if len(rows) != 32:
        raise DataFetchError(
            f"{str(path)!r} does not look like the arterial atlas label table "
            f"(ArterialAtlasLables.txt): found {len(rows)} label rows, expected 32."
        )
    return pd.DataFrame(rows).sort_values("index", kind="stable")


def _tsv_text(table):
    lines = ["\t".join(table.columns)]
    lines += ["\t".join(str(v) for v in row) for row in table.itertuples(index=False)]
    return "\r\n".join(lines) + "\r\n"


def _level2_table(level1):
    t = level1.drop_duplicates("level2_index").sort_values("level2_index")
    return pd.DataFrame({
        "index": t["level2_index"].to_numpy(),
        "abbrev": t["level2_abbrev"].to_numpy(),
        "bilateral": t["level2_bilateral"].to_numpy(),
        "major_territory": t["major_territory"].to_numpy(),
    })


def _find(root, patterns, what):
    hits = []
    for pattern in patterns:
        hits += [p for p in root.rglob("*") if p.is_file() and re.fullmatch(pattern, p.name, re.I)]
    # Prefer the FSL-compatible 182 grid folder of the release.
    hits.sort(key=lambda p: ("182" not in p.parent.name, len(p.parts)))
    if not hits:
        raise DataFetchError(f"No {what} found in {str(root)!r}.")
    return hits[0]


def _to_ras_int(img, source):
    import nibabel as nib

    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        raise DataFetchError(f"{str(source)!r} is {data.ndim}D; the atlas image is 3D.")
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        raise DataFetchError(f"{str(source)!r} holds non-integer values; it is not a label image.")
    out = nib.Nifti1Image(rounded.astype(np.int32), img.affine)
    out = nib.as_closest_canonical(out)
    return nib.Nifti1Image(np.asarray(out.dataobj).astype(np.int32), out.affine)


def _half_resolution(img):
    import nibabel as nib

    affine = img.affine.copy()
    affine[:3, :3] = affine[:3, :3] * 2
    return nib.Nifti1Image(np.ascontiguousarray(np.asarray(img.dataobj)[::2, ::2, ::2]), affine)


def install_arterial_atlas(source, labels=None, data_dir=None, overwrite=False):
    """Derive ``<data_dir>/arterial_atlas/`` from the NITRC release and check it.

    Parameters
    ----------
    source : str or Path
        ``Atlas_MNI152.zip`` (release ArterialAtlas_v2_MNI152) or the folder it was
        extracted to; ``ArterialAtlas.nii[.gz]`` and ``ArterialAtlas_level2.nii[.gz]``
        are taken from its ``Atlas_182_MNI152`` folder.
    labels : str or Path or None
        ``ArterialAtlaslables.txt`` (release VascularAtlasLabel_updated); default: the
        label table found in ``source``.
    data_dir : str or Path or None
        See :func:`lsm.datasets.get_data_dir`.
    overwrite : bool
        Replace an existing ``arterial_atlas`` folder.

    Returns
    -------
    Path
        The installed folder.

    Raises
    ------
    HashMismatchError
        When a derived image's voxels or grid differ from the reference release
        (a different atlas version, or the older ``Atlas_182`` folder whose origin is 0).
    """
    import nibabel as nib

    source = Path(source).expanduser()
    target = get_data_dir(data_dir) / DATASET
    manifest = dataset_files(DATASET, required_only=False)
    with tempfile.TemporaryDirectory(prefix="lsm-atlas-") as tmp:
        src_root = source
        if source.is_file() and zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zf:
                zf.extractall(tmp)
            src_root = Path(tmp)
        elif not source.is_dir():
            raise DataFetchError(f"{str(source)!r} is neither a zip file nor a folder.")
        level1_src = _find(src_root, [r"ArterialAtlas\.nii(\.gz)?"], "ArterialAtlas.nii")
        level2_src = _find(src_root, [r"ArterialAtlas_level2\.nii(\.gz)?"], "ArterialAtlas_level2.nii")
        label_src = Path(labels) if labels is not None else _find(
            src_root, [r"ArterialAtlasLa(b|bl)(le|e)s\.txt"], "ArterialAtlasLables.txt")
        level1_table = _parse_upstream_labels(label_src)

        derived = {}
        for level, src in ((1, level1_src), (2, level2_src)):
            one = _to_ras_int(nib.load(src), src)
            derived[f"atlas-Arterial_level-{level}_res-1mm_dseg.nii.gz"] = one
            derived[f"atlas-Arterial_level-{level}_res-2mm_dseg.nii.gz"] = _half_resolution(one)
        for name, img in derived.items():
            expected = manifest[name]["array_sha256"]
            if array_sha256(img) != expected:
                raise HashMismatchError(
                    f"The atlas image derived as {name!r} from {str(source)!r} differs from "
                    "the reference ArterialAtlas_v2 MNI152 release (voxel values or grid). "
                    "Use Atlas_MNI152.zip (folder Atlas_182_MNI152) from NITRC release "
                    "ArterialAtlas_v2_MNI152; the older Atlas_182 folder has a wrong origin."
                )
        texts = {
            "labels_level-1.tsv": _tsv_text(level1_table),
            "labels_level-2.tsv": _tsv_text(_level2_table(level1_table)),
        }
        with atomic_output_dir(target, overwrite=overwrite) as out:
            for name, img in derived.items():
                img.set_data_dtype(np.int32)
                nib.save(img, out / name)
            for name, text in texts.items():
                (out / name).write_bytes(text.encode("utf-8"))
                if file_sha256(out / name) != manifest[name]["sha256"]:
                    raise HashMismatchError(
                        f"The label table derived as {name!r} from {str(label_src)!r} differs "
                        "from the reference table; is it the ArterialAtlas_v2 label file?"
                    )
    logger.info("Installed the arterial atlas in %s", target)
    return target
