"""Arterial-territory lesion load, lesion descriptors and lesion frequency maps.

Everything here works from the cohort's sparse lesion matrix (subjects x grid voxels):

* :func:`territory_load` counts each subject's lesioned voxels per territory of a label
  atlas with one sparse product, ``lesion_matrix @ one_hot(territory of each voxel)``;
* :func:`lesion_descriptors` adds volume, connected components, hemisphere, centroid and
  dominant territory per subject;
* :func:`overlap_map` is the per-voxel count (or fraction) of lesioned subjects;
* :func:`territory_summary` tabulates how lesions spread over territories and hemispheres
  (the table behind Fig. 2b of Liu et al. 2023) and :func:`plot_territory_summary` draws it.

The default atlas is the Liu et al. (2023) Digital 3D Brain MRI Arterial Territories Atlas
(level 1: 32 territories; level 2: 10), fetched by :func:`lsm.datasets.fetch_arterial_atlas`.

Grid alignment
--------------
Lesion grid and atlas grid need not be the same. Each lesion voxel centre is mapped to the
atlas voxel containing it. When the two grids share a lattice (same voxel size, axes only
permuted or flipped, integer offsets: e.g. SOOP's 157 x 189 x 136 LAS masks are a sub-box of
the atlas's 182 x 218 x 182 RAS grid) this mapping is one-to-one and exact: no voxel is lost
or invented, and no warning is given. When each lesion voxel size is a whole multiple of the
atlas's on that lattice (a cohort resampled to the 2 mm MNI grid against the 1 mm atlas),
every lesion voxel centre is an atlas voxel centre and the whole lesion voxel takes the
label at its centre: a lesion voxel straddling territories counts in one of them only, so
the loads are approximate, and a :class:`~lsm.exceptions.ResamplingWarning` says so.
Otherwise the atlas is sampled at the nearest voxel, also with a
:class:`~lsm.exceptions.ResamplingWarning`. For exact loads, use a cohort on the atlas's
voxel size. Lesion voxels that fall on atlas background (label 0) or outside the atlas's
field of view are counted in the ``outside_ml`` column.
"""

import functools
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, sparse

from ._images import grid_mapping
from ._validation import check_option
from .exceptions import AnalysisError, AtlasError, LSMWarning, PhenotypeError, ResamplingWarning, SpaceError

__all__ = [
    "territory_load",
    "lesion_descriptors",
    "overlap_map",
    "territory_summary",
    "plot_territory_summary",
    "TerritorySummary",
]

logger = logging.getLogger("lsm")

OUTSIDE_COLUMN = "outside_ml"
VOLUME_COLUMN = "lesion_volume_ml"
_MEASURES = ("territory_fraction", "lesion_fraction", "ml")
_CHUNK_NNZ = 2_000_000  # lesion voxels handled at once: bounds temporary memory
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_DOCS = {
    "cohort": """cohort : Cohort
        Lesion masks on a common grid (see :func:`lsm.load_cohort`); must be in MNI space.""",
    "atlas": """atlas : "arterial", object with ``img`` and ``labels``, tuple ``(img, labels)`` or path
        Default ``"arterial"``.
        ``"arterial"``: the Liu et al. (2023) arterial atlas at 1 mm from
        :func:`lsm.datasets.fetch_arterial_atlas` (its level-1 image; level 2 is derived from
        it through the ``level2_index`` grouping of its label table). Any other integer
        label image works with a label table: a DataFrame with ``index`` and ``abbrev``
        columns (optional ``level2_index``, ``level2_abbrev``, ``hemisphere``), a path to
        such a TSV/CSV (or to a pipe-separated ``index|abbrev|name|level2`` text table as
        distributed with the arterial atlas), a dict ``{label value: abbreviation}`` or a
        Series. An image path alone is accepted when a table with the same stem
        (``.tsv``, ``.csv`` or ``.txt``) sits beside it. ``None`` (no atlas) is an error:
        this function needs labels.""",
    "level": """level : {1, 2}
        Territory level. 1: the atlas labels as they are (32 arterial territories). 2: labels
        grouped by the table's ``level2_index`` column (10 arterial territories: ACA, MCA,
        PCA, vertebro-basilar and lateral ventricle, left and right). The level-2 values are
        exactly the sums of the level-1 territories of each group (numerators and
        territory volumes alike); the separately distributed level-2 image, which differs
        from this grouping at 318 boundary voxels, is not used.""",
    "n_jobs": """n_jobs : int
        Number of parallel workers (joblib); -1 uses every core. Results do not depend
        on it.""",
}


def _fill_doc(func):
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__ % _DOCS
    return func


def _warn(message, category):
    """Warn at the first frame outside the lsm package (the user's line)."""
    import sys

    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


# ---------------------------------------------------------------- label tables
_INDEX_COLUMNS = ("index", "label_index", "value", "id")
_ABBREV_COLUMNS = ("abbrev", "abbreviation", "label", "name")
_PIPE_COLUMNS = ("index", "abbrev", "name", "level2_index")
_RESERVED = (OUTSIDE_COLUMN, VOLUME_COLUMN)


def _is_int_like(value):
    try:
        number = float(str(value).strip())
    except ValueError:
        return False
    return np.isfinite(number) and number == int(number)


def _read_label_file(path):
    path = Path(path)
    if not path.is_file():
        raise AtlasError(f"Label table {str(path)!r} does not exist.")
    lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if not lines:
        raise AtlasError(f"Label table {str(path)!r} is empty.")
    if "|" in lines[0]:
        sep = "|"
    elif path.suffix.lower() == ".csv":
        sep = ","
    else:
        sep = "\t"
    raw = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
    raw = raw.apply(lambda col: col.str.strip())
    if _is_int_like(raw.iloc[0, 0]):  # no header row
        names = list(_PIPE_COLUMNS[: raw.shape[1]]) + [f"column_{i}" for i in range(len(_PIPE_COLUMNS), raw.shape[1])]
        raw.columns = names
        return raw
    raw.columns = [str(c) for c in raw.iloc[0]]
    return raw.iloc[1:].reset_index(drop=True)


def _label_table_frame(table):
    """Any accepted label-table form -> (DataFrame, description of the source)."""
    if isinstance(table, (str, Path)):
        return _read_label_file(table), repr(str(table))
    if isinstance(table, pd.Series):
        return pd.DataFrame({"index": table.index, "abbrev": table.to_numpy()}), "the label Series"
    if isinstance(table, Mapping):
        items = list(table.items())
        if all(_is_int_like(k) for k, _ in items):
            pairs = items
        elif all(_is_int_like(v) for _, v in items):
            pairs = [(v, k) for k, v in items]
        else:
            raise AtlasError(
                "A label dict must map integer label values to abbreviations, e.g. {1: 'ACAL'}; "
                f"got keys like {[k for k, _ in items[:3]]}."
            )
        return pd.DataFrame(pairs, columns=["index", "abbrev"]), "the label dict"
    if isinstance(table, pd.DataFrame):
        frame = table.copy()
        if not any(c in frame.columns for c in _INDEX_COLUMNS) and pd.api.types.is_integer_dtype(frame.index):
            frame = frame.rename_axis("index").reset_index()
        return frame, "the label DataFrame"
    raise TypeError(
        "labels must be a DataFrame, a path to a TSV/CSV/text table, a dict or a Series; "
        f"got {type(table).__name__}."
    )


def _read_label_table(table):
    """Validated label table: DataFrame indexed by integer label value, with ``abbrev``.

    Other columns (``name``, ``level2_index``, ``level2_abbrev``, ``hemisphere``...) are kept.
    Label 0 is background: a row for it is ignored.
    """
    frame, source = _label_table_frame(table)
    index_col = next((c for c in _INDEX_COLUMNS if c in frame.columns), None)
    abbrev_col = next((c for c in _ABBREV_COLUMNS if c in frame.columns), None)
    if index_col is None or abbrev_col is None:
        raise AtlasError(
            f"Label table {source} needs an integer label column (one of {list(_INDEX_COLUMNS)}) "
            f"and an abbreviation column (one of {list(_ABBREV_COLUMNS)}); it has columns "
            f"{[str(c) for c in frame.columns]}."
        )
    values = frame[index_col]
    bad = [v for v in values if not _is_int_like(v) or float(str(v)) < 0]
    if bad:
        raise AtlasError(f"Label table {source}: label values must be non-negative integers; got {bad[:5]}.")
    frame = frame.drop(columns=[index_col]).assign(index=[int(float(str(v))) for v in values])
    if abbrev_col != "abbrev":
        frame["abbrev"] = frame[abbrev_col]
    frame = frame[frame["index"] != 0]
    dup_values = frame["index"][frame["index"].duplicated()].unique()
    if len(dup_values):
        dup = sorted(int(v) for v in dup_values)[:10]
        raise AtlasError(f"Label table {source} lists label value(s) {dup} more than once.")
    abbrev = frame["abbrev"].astype("string").str.strip()
    empty = frame["index"][abbrev.isna() | (abbrev == "")]
    if len(empty):
        raise AtlasError(f"Label table {source}: label value(s) {empty.tolist()[:10]} have no abbreviation.")
    frame = frame.assign(abbrev=abbrev.astype(str)).set_index("index").sort_index()
    reserved = [a for a in frame["abbrev"] if a in _RESERVED]
    if reserved:
        raise AtlasError(f"Label table {source}: abbreviation(s) {reserved} are reserved for lsm's own "
                         "columns; rename them.")
    frame["abbrev"] = _unique_names(frame["abbrev"], frame.index, source)
    return frame


def _unique_names(names, values, source):
    """Keep the first of duplicated abbreviations, rename later ones ``<abbrev>_<value>``."""
    names = pd.Series(list(names), index=list(values), dtype=object)
    dup = names.duplicated(keep="first")
    if dup.any():
        renamed = {int(v): f"{names[v]}_{v}" for v in names.index[dup]}
        _warn(
            f"Label table {source} repeats abbreviation(s) "
            f"{sorted(set(names[dup]))}; the later label(s) were renamed "
            + ", ".join(f"{v} -> {n!r}" for v, n in renamed.items())
            + ". Fix the table to choose the names yourself.",
            LSMWarning,
        )
        for v, n in renamed.items():
            names[v] = n
    return names.to_numpy()


# ------------------------------------------------------------------ label atlas
@dataclass(frozen=True)
class _LabelAtlas:
    """An integer label image with its validated label table."""

    data: np.ndarray  # int32 of shape (nx, ny, nz)
    affine: np.ndarray
    table: pd.DataFrame  # indexed by label value; column "abbrev"
    name: str

    @property
    def voxel_volume_ml(self):
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)


def _read_label_image(img):
    import nibabel as nib

    if isinstance(img, nib.spatialimages.SpatialImage):
        source = "the atlas image"
    else:
        source = repr(str(img))
        if not Path(img).is_file():
            raise AtlasError(f"Atlas image {source} does not exist.")
        img = nib.load(str(img))
    shape = img.shape[:3] if len(img.shape) == 4 and img.shape[3] == 1 else img.shape
    if len(shape) != 3:
        raise AtlasError(f"Atlas image {source} must be 3D; it has shape {img.shape}.")
    data = np.asarray(img.dataobj).reshape(shape)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise AtlasError(f"Atlas image {source} must hold integer labels; it has non-integer values.")
    elif data.dtype.kind not in "biu":
        raise AtlasError(f"Atlas image {source} has unsupported data type {data.dtype}.")
    if data.size and data.min() < 0:
        raise AtlasError(f"Atlas image {source} has negative label values; labels must be >= 0 (0 = background).")
    if data.size and data.max() > np.iinfo(np.int32).max:
        raise AtlasError(f"Atlas image {source} has label values beyond the int32 range.")
    return data.astype(np.int32, copy=False), np.asarray(img.affine, dtype=np.float64), source


def _sidecar_table(path):
    path = Path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    for suffix in (".tsv", ".csv", ".txt"):
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    raise AtlasError(
        f"No label table found beside the atlas image {str(path)!r} (looked for {stem}.tsv/.csv/.txt). "
        "Pass atlas=(image, labels) with labels a DataFrame, a table path or a dict."
    )


@functools.lru_cache(maxsize=2)
def _default_atlas(data_dir):
    """The level-1, 1 mm arterial atlas of ``data_dir``, read and checked once per process."""
    from .datasets import fetch_arterial_atlas

    fetched = fetch_arterial_atlas(level=1, resolution=1, data_dir=data_dir)
    atlas = _resolve_atlas((fetched.img, fetched.labels))
    atlas.data.flags.writeable = False
    return _LabelAtlas(atlas.data, atlas.affine, atlas.table, "arterial atlas (Liu et al. 2023), level 1, 1 mm")


def _resolve_atlas(atlas):
    """The ``atlas`` argument -> :class:`_LabelAtlas` (image labels checked against the table)."""
    import nibabel as nib

    if atlas is None:
        raise ValueError(
            "Invalid value for the 'atlas' parameter: this function needs territory labels, "
            "so an atlas ('arterial' for the Liu et al. 2023 arterial atlas, or a label image "
            "with its labels), but got None (no atlas)."
        )
    if isinstance(atlas, str) and atlas == "arterial":
        from .datasets import get_data_dir

        return _default_atlas(str(get_data_dir()))
    if isinstance(atlas, _LabelAtlas):
        return atlas
    elif hasattr(atlas, "img") and hasattr(atlas, "labels"):
        img, table, name = atlas.img, atlas.labels, getattr(atlas, "name", "custom atlas")
    elif isinstance(atlas, (tuple, list)) and len(atlas) == 2:
        img, table = atlas
        name = str(img) if isinstance(img, (str, Path)) else "custom atlas"
    elif isinstance(atlas, (str, Path)):
        img, table, name = atlas, _sidecar_table(atlas), str(atlas)
    elif isinstance(atlas, nib.spatialimages.SpatialImage):
        raise AtlasError("An atlas image needs its label table: pass atlas=(image, labels).")
    else:
        raise TypeError(
            "atlas must be 'arterial', an object with .img and .labels, a tuple (image, labels) or an "
            f"image path with a label table beside it; got {type(atlas).__name__}."
        )
    data, affine, source = _read_label_image(img)
    table = _read_label_table(table)
    present = np.flatnonzero(np.bincount(data.ravel()))
    missing = sorted(set(present[present > 0].tolist()) - set(table.index.tolist()))
    if missing:
        raise AtlasError(
            f"Atlas image {source} holds label value(s) {missing[:10]} that its label table lacks; "
            "add rows for them to the table (or set those voxels to 0)."
        )
    return _LabelAtlas(data=data, affine=affine, table=table, name=str(name))


# ------------------------------------------------------------------ territories
_HEMI_ALIASES = {"l": "left", "left": "left", "lh": "left", "r": "right", "right": "right", "rh": "right"}


@dataclass(frozen=True)
class _Territories:
    """Output territories of an atlas at one level.

    ``lut[label value]`` is the territory's column (0..K-1); background and unknown values
    map to K, the "outside" column.
    """

    names: list
    lut: np.ndarray
    hemisphere: list  # "left"/"right"/other per territory, or None when the table has none
    bilateral: list  # level 2: the group's side-less name from the table, or None
    level: int

    @property
    def n(self):
        return len(self.names)


def _strip_side(name, hemisphere):
    """The territory name without its side letter ("MCA" for "MCAL" on the left)."""
    side = {"left": "L", "right": "R"}.get(hemisphere)
    if side and len(name) > 1 and name[-1].upper() == side:
        return name[:-1]
    return name


def _territories(atlas, level):
    table = atlas.table
    lut = np.zeros(max(int(atlas.data.max()), int(table.index.max()) if len(table) else 0) + 1, dtype=np.int64)
    hemi = None
    if "hemisphere" in table.columns:
        hemi = [_HEMI_ALIASES.get(str(h).strip().lower(), str(h).strip().lower()) for h in table["hemisphere"]]
    if level == 1:
        names = list(table["abbrev"])
        lut[:] = len(names)
        lut[table.index.to_numpy()] = np.arange(len(names))
        return _Territories(names, lut, hemi, None, 1)
    if "level2_index" not in table.columns:
        raise AtlasError(
            f"The label table of {atlas.name} has no 'level2_index' column, so level=2 is undefined. "
            "Pass level=1, or add a level2_index (and level2_abbrev) column grouping the labels."
        )
    groups = table["level2_index"]
    if not all(_is_int_like(g) for g in groups):
        raise AtlasError(f"The 'level2_index' column of {atlas.name}'s label table must hold integers.")
    groups = np.array([int(float(str(g))) for g in groups])
    order = np.unique(groups)
    # The side-less group name ("MCA"): level2_bilateral (labels TSV) or bilateral (fetcher).
    bilateral_col = next((c for c in ("level2_bilateral", "bilateral") if c in table.columns), None)
    names, hemis, bilateral = [], [], []
    for g in order:
        members = groups == g
        if "level2_abbrev" in table.columns:
            abbrevs = sorted(set(table["level2_abbrev"][members].astype(str)))
            if len(abbrevs) != 1:
                raise AtlasError(
                    f"Level-2 group {g} of {atlas.name} has several level2_abbrev values {abbrevs}; "
                    "each group needs one name."
                )
            names.append(abbrevs[0])
        else:
            names.append(f"level2-{g}")
        if hemi is not None:
            sides = sorted({h for h, m in zip(hemi, members) if m})
            hemis.append(sides[0] if len(sides) == 1 else "bilateral")
        if bilateral_col is not None:
            bilateral.append(str(table[bilateral_col][members].iloc[0]))
    names = list(_unique_names(names, order, f"of {atlas.name} (level2_abbrev)"))
    lut[:] = len(names)
    lut[table.index.to_numpy()] = np.searchsorted(order, groups)
    return _Territories(names, lut, hemis if hemi is not None else None, bilateral or None, 2)


def _territory_hemispheres(atlas, terr):
    """Side of each territory: from the label table, else from its centroid's world x."""
    if terr.hemisphere is not None:
        return list(terr.hemisphere)
    cols = terr.lut[atlas.data.ravel()]
    x = _world_axis(atlas.affine, atlas.data.shape, 0).ravel()
    n = np.bincount(cols, minlength=terr.n + 1)[: terr.n]
    sx = np.bincount(cols, weights=x, minlength=terr.n + 1)[: terr.n]
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = sx / n
    return ["unknown" if np.isnan(c) else "left" if c < 0 else "right" if c > 0 else "midline" for c in cx]


# ---------------------------------------------------------------- grid mapping
def _world_axis(affine, shape, axis):
    """World coordinate ``axis`` (0=x) of every voxel centre, broadcast to ``shape``."""
    out = np.full(shape, affine[axis, 3])
    for a in range(3):
        view = [1, 1, 1]
        view[a] = shape[a]
        out = out + affine[axis, a] * np.arange(shape[a]).reshape(view)
    return out


def _lattice_map(vox2vox, tol=1e-4):
    """(linear part, offsets) when vox2vox maps voxel centres onto voxel centres.

    That is when its linear part is an integer-scaled signed permutation matrix (one
    nonzero integer per row and per column: the lesion voxel size is a whole multiple of
    the atlas's along each axis) and its translation is integer; None otherwise. Scale
    factors all +-1 mean the grids share a lattice (one-to-one); larger ones mean every
    lesion voxel centre is an atlas voxel centre.
    """
    lin, shift = vox2vox[:3, :3], vox2vox[:3, 3]
    rounded = np.rint(lin)
    if not np.allclose(lin, rounded, atol=tol) or not np.allclose(shift, np.rint(shift), atol=tol):
        return None
    nonzero = rounded != 0
    if not (np.array_equal(nonzero.sum(axis=0), np.ones(3)) and np.array_equal(nonzero.sum(axis=1), np.ones(3))):
        return None
    return rounded.astype(np.int64), np.rint(shift).astype(np.int64)


def _voxel_size_text(affine):
    """Voxel size of an affine in mm as text: ``"2"``, or ``"1 x 1 x 1.5"`` when anisotropic."""
    from nibabel.affines import voxel_sizes

    sizes = [f"{v:g}" for v in voxel_sizes(np.asarray(affine, dtype=np.float64))]
    return sizes[0] if len(set(sizes)) == 1 else " x ".join(sizes)


def _atlas_labels_on_grid(atlas, affine, shape):
    """Atlas label at each voxel of the lesion grid, flat C order (0 off the atlas).

    Returns (labels, alignment) with alignment "exact" (shared lattice: one-to-one, no
    warning), "centre" (lesion voxel sizes whole multiples of the atlas's on its lattice:
    each lesion voxel centre is an atlas voxel centre, whose label the whole lesion voxel
    takes; a ResamplingWarning is emitted) or "nearest" (nearest-neighbour sampling; a
    ResamplingWarning is emitted). "centre" gives the labels the nearest-neighbour sampling
    would give. At most one warning per call, whatever the number of levels computed from
    the labels.
    """
    shape = tuple(int(s) for s in shape)
    ashape = atlas.data.shape
    vox2vox = np.linalg.solve(atlas.affine, np.asarray(affine, dtype=np.float64))
    lattice = _lattice_map(vox2vox)
    if lattice is None:
        _warn(
            f"The lesion grid {shape} and the grid {ashape} of {atlas.name} do not share a voxel "
            "lattice, so each lesion voxel takes the label of the atlas voxel nearest to its "
            "centre (nearest-neighbour). For exact counts, resample the cohort to the atlas grid "
            "(Cohort.resample) or use an atlas on the lesion lattice.",
            ResamplingWarning,
        )
        mapping = grid_mapping(atlas.affine, ashape, affine, shape)
        labels = np.zeros(mapping.size, dtype=np.int32)
        inside = mapping >= 0
        labels[inside] = atlas.data.ravel()[mapping[inside]]
        return labels, "nearest"
    lin, shift = lattice
    # Separable: atlas axis b = sign * (lesion axis a) + shift[b], with a = the one nonzero
    # of row b. Build the flat atlas index by broadcasting three 1-D pieces.
    strides = np.array([ashape[1] * ashape[2], ashape[2], 1], dtype=np.int64)
    flat = np.zeros((1, 1, 1), dtype=np.int64)
    valid = np.ones((1, 1, 1), dtype=bool)
    for b in range(3):
        a = int(np.flatnonzero(lin[b])[0])
        coord = lin[b, a] * np.arange(shape[a], dtype=np.int64) + shift[b]
        view = [1, 1, 1]
        view[a] = shape[a]
        ok = (coord >= 0) & (coord < ashape[b])
        flat = flat + (np.where(ok, coord, 0) * strides[b]).reshape(view)
        valid = valid & ok.reshape(view)
    flat, valid = np.broadcast_to(flat, shape).ravel(), np.broadcast_to(valid, shape).ravel()
    labels = np.where(valid, atlas.data.ravel()[flat], 0).astype(np.int32)
    scale = np.abs(lin).sum(axis=0)  # lesion voxel size / atlas voxel size, per lesion axis
    if np.all(scale == 1):
        return labels, "exact"
    if np.all(scale == scale[0]):
        factor = f"{scale[0]} times larger along each axis"
    else:
        factor = (f"{scale[0]}, {scale[1]} and {scale[2]} times larger along the lesion grid's i, j "
                  "and k axes")
    lesion_mm, atlas_mm = _voxel_size_text(affine), _voxel_size_text(atlas.affine)
    _warn(
        f"The lesion voxels ({lesion_mm} mm, grid {shape}) are {factor} than the {atlas_mm} mm "
        f"voxels of {atlas.name}, so each lesion voxel takes the atlas label at its centre and a "
        "lesion voxel straddling territories counts in one of them only: the territory loads "
        f"are approximate. For exact loads, use a cohort on the atlas's voxel size ({atlas_mm} mm; "
        "for example the masks as loaded, before Cohort.resample).",
        ResamplingWarning,
    )
    return labels, "centre"


# -------------------------------------------------------------- lesion matrix
class _LesionRows:
    """A cohort's sparse lesion matrix handed out in row blocks, never built whole.

    ``indptr`` is the CSR row pointer of the whole matrix (from the lesion sizes), so the
    blocks can be cut by number of lesion voxels; ``block(a, b)`` is
    ``cohort.lesion_matrix(subjects[a:b])`` as 0/1 CSR.
    """

    def __init__(self, cohort, subjects=None):
        self._cohort = cohort
        self.subjects = list(cohort.subjects if subjects is None else subjects)
        self.shape = tuple(int(s) for s in cohort.shape)
        self.n_voxels = int(np.prod(self.shape))
        sizes = [np.asarray(cohort.lesion_indices(s)).size for s in self.subjects]
        self.indptr = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def __len__(self):
        return len(self.subjects)

    def block(self, start, stop):
        X = self._cohort.lesion_matrix(subjects=self.subjects[start:stop])
        X = X.tocsr() if sparse.issparse(X) else sparse.csr_matrix(X)
        if X.shape[1] != self.n_voxels:
            raise AnalysisError(
                f"The cohort's lesion matrix has {X.shape[1]} columns but its grid {self.shape} has "
                f"{self.n_voxels} voxels."
            )
        if X.data.size and not np.all(X.data == 1):
            X.data = (X.data != 0).astype(np.uint8)
            X.eliminate_zeros()
        return X


def _check_cohort(cohort, what, subjects=None):
    if getattr(cohort, "space", "MNI") == "native":
        raise SpaceError(
            f"{what} needs lesions in a common standard space, but this cohort is in native space "
            "(e.g. ISLES'24 CT masks). Normalise the masks to MNI first."
        )
    return _LesionRows(cohort, subjects)


def _row_chunks(indptr, n_jobs, max_nnz=_CHUNK_NNZ):
    """Contiguous row ranges holding at most ``max_nnz`` lesion voxels (>= n_jobs chunks)."""
    n_rows = len(indptr) - 1
    if n_rows == 0:
        return []
    total = int(indptr[-1])
    n_chunks = max(int(n_jobs), int(np.ceil(total / max_nnz)), 1)
    targets = np.linspace(0, total, n_chunks + 1)[1:-1]
    cuts = np.unique(np.concatenate([[0], np.searchsorted(indptr[1:], targets, side="left") + 1, [n_rows]]))
    cuts = np.clip(cuts, 0, n_rows)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _effective_n_jobs(n_jobs):
    from .stats._parallel import effective_n_jobs

    return effective_n_jobs(n_jobs)


def _map_chunks(func, rows, n_jobs):
    """``[func(block) for block in row blocks of the lesion matrix]``, serially or with joblib.

    Blocks hold at most ``_CHUNK_NNZ`` lesion voxels (and there are at least n_jobs of
    them); they are built one by one as workers take them, which bounds memory. Workers
    are threads: the sparse products and ndimage.label release the GIL.
    """
    n_jobs = _effective_n_jobs(n_jobs)
    chunks = _row_chunks(rows.indptr, n_jobs)
    if n_jobs == 1 or len(chunks) < 2:
        return [func(rows.block(a, b)) for a, b in chunks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(func)(rows.block(a, b)) for a, b in chunks)


def _one_hot(columns, n_columns):
    """Sparse (n_voxels, n_columns) matrix with a single 1 per row, at ``columns[row]``."""
    n = columns.size
    return sparse.csr_matrix(
        (np.ones(n, dtype=np.int32), columns.astype(np.int32), np.arange(n + 1, dtype=np.int32)),
        shape=(n, n_columns),
    )


def _territory_counts(rows, voxel_columns, n_columns, n_jobs):
    """Lesioned-voxel counts per (subject, column): ``X @ one_hot(voxel_columns)``."""
    H = _one_hot(voxel_columns, n_columns)
    parts = _map_chunks(lambda block: (block @ H).toarray(), rows, n_jobs)
    if not parts:
        return np.zeros((0, n_columns), dtype=np.int64)
    return np.vstack(parts).astype(np.int64)


@dataclass
class _Loads:
    """Counts of lesioned voxels per territory (level), with everything needed for a measure."""

    territories: _Territories
    counts: np.ndarray  # (n_subjects, K + 1); last column: outside
    atlas_counts: np.ndarray  # (K,) voxels of each territory in the atlas's own grid
    lesion_voxel_ml: float
    atlas_voxel_ml: float
    alignment: str


def _compute_loads(rows, affine, shape, atlas, levels, n_jobs):
    """{level: _Loads} for one atlas; the grid mapping is computed once.

    The first level costs one sparse product; a coarser level requested with it (2 after
    1) sums the level-1 columns of each group instead of a second product.
    """
    on_grid, alignment = _atlas_labels_on_grid(atlas, affine, shape)
    lesion_voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])) / 1000.0)
    values = atlas.table.index.to_numpy()
    out, base = {}, None
    for level in sorted(levels):
        terr = _territories(atlas, level)
        if base is None:
            counts = _territory_counts(rows, terr.lut[on_grid], terr.n + 1, n_jobs)
            atlas_counts = np.bincount(terr.lut[atlas.data.ravel()], minlength=terr.n + 1)
        else:
            group = np.zeros((base.territories.n + 1, terr.n + 1), dtype=np.int64)
            group[base.territories.n, terr.n] = 1  # outside stays outside
            group[base.territories.lut[values], terr.lut[values]] = 1
            counts = base.counts @ group
            atlas_counts = np.append(base.atlas_counts, 0) @ group
        out[level] = _Loads(terr, counts, atlas_counts[: terr.n], lesion_voxel_ml, atlas.voxel_volume_ml, alignment)
        if base is None:
            base = out[level]
    return out


def _measure_values(loads, measure):
    k = loads.territories.n
    counts = loads.counts[:, :k].astype(np.float64)
    n_voxels = loads.counts.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if measure == "ml":
            return counts * loads.lesion_voxel_ml
        if measure == "lesion_fraction":
            return counts / n_voxels[:, None]
        # Same voxel volume on a shared lattice: the ratio is exactly 1.
        return counts / loads.atlas_counts[None, :] * (loads.lesion_voxel_ml / loads.atlas_voxel_ml)


# ------------------------------------------------------------------ public API
@_fill_doc
def territory_load(cohort, *, atlas="arterial", level=1, measure="territory_fraction", n_jobs=1):
    """Lesion load of each subject in each (arterial) territory.

    Parameters
    ----------
    %(cohort)s
    %(atlas)s
    %(level)s
    measure : {"territory_fraction", "lesion_fraction", "ml"}
        ``"territory_fraction"``: lesioned volume in the territory / volume of the territory,
        the latter measured in the atlas's own grid (so a territory cut by the lesion
        grid's field of view still counts in full). ``"lesion_fraction"``: lesioned volume
        in the territory / lesion volume. ``"ml"``: lesioned volume in the territory in ml.
    %(n_jobs)s

    Returns
    -------
    DataFrame of shape (n_subjects, n_territories + 2)
        Indexed by subject (``participant_id``), one column per territory (the label
        table's abbreviations, in label order), then ``outside_ml`` (lesioned ml on atlas
        background or beyond its field of view, whatever the measure) and
        ``lesion_volume_ml`` (lesioned ml on the cohort grid). ``df.attrs`` records
        ``measure``, ``level``, ``atlas``, ``alignment`` (``"exact"``, ``"centre"`` or ``"nearest"``)
        and ``territory_volume_ml`` (dict: territory -> ml in the atlas grid). A territory
        of zero volume gives NaN for ``"territory_fraction"``.

    Warns
    -----
    ResamplingWarning
        Whenever the lesion grid does not share the atlas's lattice, so the loads are
        approximate: alignment ``"centre"`` (lesion voxels a whole multiple of the atlas's
        on its lattice, e.g. a 2 mm cohort on the 1 mm atlas: each lesion voxel takes the
        label at its centre) or ``"nearest"`` (nearest-neighbour sampling). A shared lattice
        (alignment ``"exact"``) loses and invents no voxel and gives no warning; for exact
        loads, use a cohort on the atlas's voxel size.

    Notes
    -----
    All numerators come from one sparse product ``lesion_matrix @ H`` where ``H`` (voxels
    x territories) has a single 1 per voxel, at the voxel's territory.
    """
    check_option("level", level, (1, 2))
    check_option("measure", measure, _MEASURES)
    rows = _check_cohort(cohort, "territory_load")
    if atlas is None or isinstance(atlas, str):
        from .registration._spaces import warn_mixed_spaces

        warn_mixed_spaces(cohort, "the arterial atlas")
    atlas = _resolve_atlas(atlas)
    loads = _compute_loads(rows, cohort.affine, cohort.shape, atlas, (level,), n_jobs)[level]
    k = loads.territories.n
    frame = pd.DataFrame(
        _measure_values(loads, measure),
        index=pd.Index(list(cohort.subjects), name="participant_id"),
        columns=list(loads.territories.names),
    )
    frame[OUTSIDE_COLUMN] = loads.counts[:, k] * loads.lesion_voxel_ml
    frame[VOLUME_COLUMN] = loads.counts.sum(axis=1) * loads.lesion_voxel_ml
    frame.columns.name = "territory"
    frame.attrs.update(
        {
            "measure": measure,
            "level": level,
            "atlas": atlas.name,
            "alignment": loads.alignment,
            "territory_volume_ml": dict(zip(loads.territories.names,
                                            (loads.atlas_counts * loads.atlas_voxel_ml).tolist())),
        }
    )
    logger.info("Territory loads (%s, level %d) of %d subjects on %s", measure, level, len(frame), atlas.name)
    return frame


def _lesion_moments(rows, affine, shape, n_jobs):
    """Per subject: voxel count, world-coordinate sums (x, y, z) and left weight.

    One sparse product ``X @ V`` with V (voxels x 4) holding each voxel centre's world x,
    y, z and its left weight: 1 at x < 0, 0.5 on the midline (x = 0), 0 at x > 0.
    Returns an array of shape (n_subjects, 5): n, sum_x, sum_y, sum_z, left.
    """
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    V = np.empty((int(np.prod(shape)), 4))
    for axis in range(3):
        V[:, axis] = _world_axis(affine, shape, axis).ravel()
    tol = 1e-6 * float(np.abs(affine[:3, :3]).max())
    V[:, 3] = (V[:, 0] < -tol) + 0.5 * (np.abs(V[:, 0]) <= tol)
    parts = _map_chunks(lambda block: block @ V, rows, n_jobs)
    out = np.zeros((len(rows), 5))
    out[:, 0] = np.diff(rows.indptr)
    if parts:
        out[:, 1:] = np.vstack(parts)
    return out


_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _count_components(indices, shape, min_size):
    """Number of 26-connected components with at least ``min_size`` voxels."""
    if indices.size == 0:
        return 0
    ijk = np.unravel_index(indices, shape)
    lo = [int(c.min()) for c in ijk]
    local = tuple(c - low for c, low in zip(ijk, lo))
    box = np.zeros([int(c.max()) + 1 for c in local], dtype=bool)
    box[local] = True
    labelled, n = ndimage.label(box, structure=_STRUCTURE_26)
    if min_size <= 1:
        return int(n)
    sizes = np.bincount(labelled[local], minlength=n + 1)[1:]
    return int(np.count_nonzero(sizes >= min_size))


def _components(rows, shape, min_size, n_jobs):
    def block_components(block):
        return [
            _count_components(block.indices[block.indptr[r] : block.indptr[r + 1]], shape, min_size)
            for r in range(block.shape[0])
        ]

    # Threads: ndimage.label runs its labelling loop without the GIL, and threads need no
    # copy of the lesion blocks (processes were slower for SOOP).
    parts = _map_chunks(block_components, rows, n_jobs)
    return np.array([n for part in parts for n in part], dtype=np.int64)


def _hemisphere_labels(left_fraction, n_voxels, threshold):
    """``"left"``, ``"right"`` or ``"bilateral"`` per lesion (object array).

    None (missing) for an empty lesion (no voxel on the cohort grid), which has no side.
    """
    with np.errstate(invalid="ignore"):
        sides = np.where(
            left_fraction >= threshold, "left", np.where(1.0 - left_fraction >= threshold, "right", "bilateral")
        ).astype(object)
    sides[np.asarray(n_voxels) == 0] = None
    return sides


def _check_threshold(hemisphere_threshold):
    if not 0.5 < float(hemisphere_threshold) <= 1.0:
        raise ValueError(
            f"hemisphere_threshold must be in (0.5, 1], the share of the lesion volume on one side "
            f"for a 'left'/'right' lesion; got {hemisphere_threshold!r}."
        )


def _dominant(loads):
    """Name and lesion share of each subject's territory holding most of its lesion.

    ``"outside"`` (share 1) when no lesion voxel lies in a territory; None (missing, share
    NaN) for an empty lesion (no voxel on the cohort grid).
    """
    k = loads.territories.n
    inside = loads.counts[:, :k]
    best = inside.argmax(axis=1) if k else np.zeros(len(inside), dtype=np.int64)
    top = inside.max(axis=1) if k else np.zeros(len(inside))
    n = loads.counts.sum(axis=1)
    names = np.array(loads.territories.names + ["outside"], dtype=object)
    has = top > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(has, top, n) / n
    dominant = names[np.where(has, best, k)]
    dominant[n == 0] = None
    share[n == 0] = np.nan
    return dominant, share


@_fill_doc
def lesion_descriptors(cohort, *, atlas="arterial", min_component_size=1, hemisphere_threshold=0.95, n_jobs=1):
    """Volume, connected components, hemisphere, centroid and dominant territory per lesion.

    Parameters
    ----------
    %(cohort)s
    %(atlas)s
        Level 2 (the ``dominant_level2`` columns) is reported when the table has a
        ``level2_index`` grouping, as the arterial atlas does.
    min_component_size : int
        Connected components (26-connectivity: voxels touching by a face, an edge or a
        corner belong together) smaller than this many voxels are not counted.
    hemisphere_threshold : float in (0.5, 1]
        Hemisphere rule. Each lesion voxel is placed by the world x of its centre: left
        if ``x < 0``, right if ``x > 0``; voxels on the midline (``x == 0``) count half
        to each side. A lesion is ``"left"`` when at least ``hemisphere_threshold`` of its
        volume is left, ``"right"`` when at least that share is right, else
        ``"bilateral"``. The default 0.95 tolerates a sliver across the midline. An empty
        lesion has no side (missing).
    %(n_jobs)s

    Returns
    -------
    DataFrame of shape (n_subjects, n_descriptors)
        Indexed by subject, with columns

        - ``volume_ml`` (float), ``n_voxels`` (int): lesion size on the cohort grid;
        - ``n_components`` (int): 26-connected components of >= ``min_component_size`` voxels;
        - ``hemisphere`` (string: ``"left"``, ``"right"``, ``"bilateral"``),
          ``left_fraction``, ``right_fraction``: the rule above;
        - ``centroid_x``, ``centroid_y``, ``centroid_z``: mean world coordinate (MNI mm) of
          the lesion voxels;
        - ``dominant_level1`` (string), ``dominant_level1_fraction``: the territory holding
          the most lesioned voxels (ties: the first in label order) and the share of the
          lesion in it; ``"outside"`` (share 1) when no lesion voxel lies in any territory;
        - ``dominant_level2``, ``dominant_level2_fraction``: the same at level 2 (when the
          atlas defines it).

        An empty lesion (no voxel on the cohort grid: :meth:`Cohort.resample` keeps
        subjects whose small lesion vanishes on a coarser grid) has ``n_voxels`` 0,
        ``n_components`` 0, a missing (``pd.NA``) ``hemisphere`` and ``dominant_level*``,
        and NaN fractions and centroid.
    """
    _check_threshold(hemisphere_threshold)
    if not isinstance(min_component_size, (int, np.integer)) or min_component_size < 1:
        raise ValueError(f"min_component_size must be a positive integer (voxels); got {min_component_size!r}.")
    rows = _check_cohort(cohort, "lesion_descriptors")
    atlas = _resolve_atlas(atlas)
    levels = (1, 2) if "level2_index" in atlas.table.columns else (1,)
    loads = _compute_loads(rows, cohort.affine, cohort.shape, atlas, levels, n_jobs)
    mom = _lesion_moments(rows, cohort.affine, cohort.shape, n_jobs)
    n = mom[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        left = mom[:, 4] / n
        centroid = mom[:, 1:4] / n[:, None]
    frame = pd.DataFrame(
        {
            "volume_ml": n * cohort.voxel_volume_ml,
            "n_voxels": n.astype(np.int64),
            "n_components": _components(rows, cohort.shape, int(min_component_size), n_jobs),
            "hemisphere": pd.array(_hemisphere_labels(left, n, hemisphere_threshold), dtype="string"),
            "left_fraction": left,
            "right_fraction": 1.0 - left,
            "centroid_x": centroid[:, 0],
            "centroid_y": centroid[:, 1],
            "centroid_z": centroid[:, 2],
        },
        index=pd.Index(list(cohort.subjects), name="participant_id"),
    )
    for level in levels:
        names, share = _dominant(loads[level])
        frame[f"dominant_level{level}"] = pd.array(names, dtype="string")
        frame[f"dominant_level{level}_fraction"] = share
    frame.attrs.update(
        {
            "atlas": atlas.name,
            "alignment": loads[1].alignment,
            "min_component_size": int(min_component_size),
            "hemisphere_threshold": float(hemisphere_threshold),
            "connectivity": 26,
        }
    )
    return frame


def _overlap_img(rows, affine, normalize, label):
    import nibabel as nib

    counts = np.zeros(rows.n_voxels, dtype=np.int64)
    for start, stop in _row_chunks(rows.indptr, 1):
        counts += np.bincount(rows.block(start, stop).indices, minlength=rows.n_voxels)
    n = len(rows)
    if normalize:
        data = (counts / max(n, 1)).astype(np.float32)
        what = "fraction"
    else:
        data = counts.astype(np.int32)
        what = "count"
    img = nib.Nifti1Image(data.reshape(rows.shape), affine)
    img.header["descrip"] = f"lsm overlap {what}, n={n} {label}"[:79].encode()
    return img


@_fill_doc
def overlap_map(cohort, *, normalize=True, by=None, max_groups=20):
    """Lesion frequency map: per voxel, how many (or which fraction of) subjects are lesioned.

    Parameters
    ----------
    %(cohort)s
    normalize : bool
        True: the fraction of subjects lesioned at each voxel (float32 in [0, 1]).
        False: the number of subjects (int32).
    by : str, optional
        A phenotype column: one map per distinct non-missing value (each normalised by its
        own group size); subjects with a missing value are left out.
    max_groups : int
        Refuse ``by`` columns with more distinct values than this (bin a continuous column
        first, e.g. with :func:`pandas.cut`).

    Returns
    -------
    Nifti1Image on the cohort grid, or dict of value -> Nifti1Image when ``by`` is given
        (values in sorted order).
    """
    if by is None:
        return _overlap_img(_check_cohort(cohort, "overlap_map"), cohort.affine, normalize, "subjects")
    if by not in cohort.phenotype.columns:
        raise PhenotypeError(
            f"Column {by!r} (the 'by' parameter) is not in the phenotype; available columns: "
            f"{list(cohort.phenotype.columns)}."
        )
    values = cohort.phenotype[by].reindex(list(cohort.subjects))
    levels = sorted(values.dropna().unique().tolist())
    if not levels:
        raise AnalysisError(f"Column {by!r} has no non-missing value, so the overlap cannot be split by it.")
    if len(levels) > max_groups:
        raise AnalysisError(
            f"Column {by!r} has {len(levels)} distinct values (more than max_groups={max_groups}); "
            "bin it first (e.g. pandas.cut) or raise max_groups."
        )
    n_missing = int(values.isna().sum())
    if n_missing:
        logger.info("overlap_map: %d subject(s) with missing %r left out", n_missing, by)
    return {
        level: _overlap_img(
            _check_cohort(cohort, "overlap_map", values.index[(values == level).to_numpy(dtype=bool, na_value=False)]),
            cohort.affine, normalize, f"{by}={level}",
        )
        for level in levels
    }


# ------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class TerritorySummary:
    """How a cohort's lesions distribute over territories and hemispheres.

    Attributes
    ----------
    table : DataFrame
        One row per territory (index: its abbreviation), columns ``territory`` (name
        without side, e.g. ``MCA``), ``hemisphere``, ``n_involved`` / ``percent_involved``
        (subjects with at least one lesioned voxel in it), ``n_dominant`` /
        ``percent_dominant`` (subjects whose lesion lies mostly in it), ``lesioned_ml``
        (lesioned ml summed over subjects) and ``median_ml_involved`` (median lesioned ml
        among the involved subjects). Percentages are of all ``n_subjects``.
    hemispheres : Series
        Number of ``left``, ``right`` and ``bilateral`` lesions (rule of
        :func:`lesion_descriptors`); empty lesions, which have no side, are not counted,
        so the three add up to ``n_subjects - n_empty``.
    n_subjects : int
        Subjects in the cohort, empty lesions included.
    n_outside_only : int
        Subjects with lesion voxels none of which lies in a territory (empty lesions are
        not counted).
    level : int
    atlas : str
    n_empty : int
        Subjects whose lesion has no voxel on the cohort grid (e.g. a small lesion that
        vanished in :meth:`Cohort.resample`); they involve and dominate no territory.
    """

    table: pd.DataFrame
    hemispheres: pd.Series
    n_subjects: int
    n_outside_only: int
    level: int
    atlas: str
    n_empty: int = 0

    def to_dataframe(self):
        """The per-territory table (a copy)."""
        return self.table.copy()

    def plot(self, **kwargs):
        """Grouped bar chart; see :func:`plot_territory_summary`."""
        return plot_territory_summary(self, **kwargs)

    def _headline(self):
        hem = ", ".join(f"{k} {v}" for k, v in self.hemispheres.items())
        return (
            f"Territory summary (level {self.level}, {self.atlas}): {self.n_subjects} subjects; "
            f"lesions {hem}; {self.n_outside_only} entirely outside the atlas"
            + (f"; {self.n_empty} empty (no voxel on the cohort grid)" if self.n_empty else "")
        )

    def __str__(self):
        return self._headline() + "\n" + self.table.to_string(float_format=lambda v: f"{v:.1f}")

    def _repr_html_(self):
        from html import escape

        return f"<p>{escape(self._headline())}</p>" + self.table.to_html(float_format=lambda v: f"{v:.1f}")


@_fill_doc
def territory_summary(cohort, *, level=2, atlas="arterial", hemisphere_threshold=0.95, n_jobs=1):
    """Distribution of lesions across territories and hemispheres (table and plot).

    Parameters
    ----------
    %(cohort)s
    %(level)s
    %(atlas)s
    hemisphere_threshold : float in (0.5, 1]
        Rule for the left/right/bilateral lesion counts (see :func:`lesion_descriptors`).
    %(n_jobs)s

    Returns
    -------
    TerritorySummary
        ``.table`` per territory, ``.hemispheres`` lesion counts, ``.n_empty`` (lesions
        with no voxel on the cohort grid: left out of the hemisphere counts and of
        ``n_outside_only``), ``.plot()``.
        A territory's hemisphere comes from the label table's ``hemisphere`` column, else
        from the world x of its centroid in the atlas (``"unknown"`` for a territory with
        no voxel in the atlas image).
    """
    check_option("level", level, (1, 2))
    _check_threshold(hemisphere_threshold)
    rows = _check_cohort(cohort, "territory_summary")
    atlas = _resolve_atlas(atlas)
    loads = _compute_loads(rows, cohort.affine, cohort.shape, atlas, (level,), n_jobs)[level]
    terr = loads.territories
    k, n_subjects = terr.n, len(rows)
    lesioned = loads.counts[:, :k]
    involved = lesioned > 0
    dominant, _ = _dominant(loads)
    ml = lesioned * loads.lesion_voxel_ml
    median_ml = [float(np.median(ml[involved[:, j], j])) if involved[:, j].any() else np.nan for j in range(k)]
    n_dominant = [int(np.count_nonzero(dominant == name)) for name in terr.names]
    sides_of = _territory_hemispheres(atlas, terr)
    table = pd.DataFrame(
        {
            "territory": terr.bilateral or [_strip_side(n, h) for n, h in zip(terr.names, sides_of)],
            "hemisphere": sides_of,
            "n_involved": involved.sum(axis=0).astype(np.int64),
            "percent_involved": 100.0 * involved.sum(axis=0) / max(n_subjects, 1),
            "n_dominant": np.array(n_dominant, dtype=np.int64),
            "percent_dominant": 100.0 * np.array(n_dominant) / max(n_subjects, 1),
            "lesioned_ml": ml.sum(axis=0),
            "median_ml_involved": median_ml,
        },
        index=pd.Index(terr.names, name="abbrev"),
    )
    mom = _lesion_moments(rows, cohort.affine, cohort.shape, n_jobs)
    empty = mom[:, 0] == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        sides = _hemisphere_labels(mom[:, 4] / mom[:, 0], mom[:, 0], hemisphere_threshold)
    hemispheres = pd.Series(
        {h: int(np.count_nonzero(sides == h)) for h in ("left", "right", "bilateral")}, name="n_lesions"
    )
    return TerritorySummary(
        table=table,
        hemispheres=hemispheres,
        n_subjects=int(n_subjects),
        n_outside_only=int(np.count_nonzero(~involved.any(axis=1) & ~empty)),
        level=level,
        atlas=atlas.name,
        n_empty=int(np.count_nonzero(empty)),
    )


_PLOT_VALUES = ("percent_involved", "n_involved", "percent_dominant", "n_dominant", "lesioned_ml")
_SIDE_COLORS = {"left": "#1f77b4", "right": "#d62728", "bilateral": "#7f7f7f", "midline": "#7f7f7f"}


def plot_territory_summary(summary, *, value="percent_involved", ax=None):
    """Grouped bar chart of a :class:`TerritorySummary`: territories x hemispheres.

    Parameters
    ----------
    summary : TerritorySummary
    value : {"percent_involved", "n_involved", "percent_dominant", "n_dominant", "lesioned_ml"}
        The table column drawn.
    ax : matplotlib Axes, optional
        Where to draw (a new figure when None).

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_option("value", value, _PLOT_VALUES)
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.6 * summary.table["territory"].nunique() + 2), 3.5))
    table = summary.table
    territories = list(dict.fromkeys(table["territory"]))
    totals = table.groupby("hemisphere", sort=False)[value].sum()
    sides = [s for s in totals.index if s in ("left", "right") or totals[s] != 0]  # skip empty "unknown"
    sides.sort(key=lambda s: {"left": 0, "right": 1}.get(s, 2))
    width = 0.8 / max(len(sides), 1)
    x = np.arange(len(territories))
    for i, side in enumerate(sides):
        rows = table[table["hemisphere"] == side].groupby("territory", sort=False)[value].sum()
        heights = [float(rows.get(t, 0.0)) for t in territories]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=side, color=_SIDE_COLORS.get(side))
    ax.set_xticks(x)
    many = len(territories) > 8
    ax.set_xticklabels(territories, rotation=45 if many else 0, ha="right" if many else "center")
    ax.set_ylabel(value.replace("_", " "))
    hem = ", ".join(f"{k} {v}" for k, v in summary.hemispheres.items())
    if summary.n_empty:
        hem += f", empty {summary.n_empty}"
    ax.set_title(f"{summary.n_subjects} lesions ({hem}), level {summary.level}", fontsize="medium")
    ax.legend(title="hemisphere", frameon=False)
    return ax
