"""Cohorts: lesion masks joined with a phenotype table on one common grid.

The cohort is the first stage of lsm's one-way data flow::

    load_cohort -> Cohort.lesion_matrix() -> lsm.stats engine -> results -> maps

A :class:`Cohort` holds each subject's lesion as the sorted flat (C-order) indices of its
lesioned voxels on the common grid, never all dense masks at once: 1,449 SOOP masks at
1 mm take about 270 MB.
"""

import glob
import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._images import (
    MaskProblem,
    check_affine,
    count_outside,
    grid_mapping,
    mni_grid,
    read_mask,
    regrid_indices,
    same_grid,
)
from ._validation import check_n_jobs, check_option
from .dictionary import _as_text, load_dictionary
from .exceptions import CohortError, DroppedSubjectsWarning, LesionImageError, PhenotypeError, ResamplingWarning
from .stats._parallel import parallel_map

__all__ = ["Cohort", "load_cohort", "read_phenotype", "normalize_id", "subject_from_filename"]

logger = logging.getLogger("lsm")

_SUB_ENTITY = re.compile(r"sub-([A-Za-z0-9]+)")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
COHORT_EXCLUDED_COLUMNS = ["subject", "source", "reason"]


# --------------------------------------------------------------------------- IDs
def normalize_id(value):
    """Normalise a subject ID to BIDS ``sub-<label>``.

    ``1000``, ``1000.0``, ``"1000.0"``, ``"1000"`` and ``"sub-1000"`` all give
    ``"sub-1000"``. Underscores, hyphens and spaces, which BIDS labels do not allow, are
    removed (``"Subject_001"`` gives ``"sub-Subject001"``); any other punctuation is an
    error rather than a guess.
    """
    text = _as_text(value)
    if text is None or text in ("", "n/a"):
        raise CohortError(f"Empty subject ID {value!r}: every row and mask needs an ID.")
    label = text[4:] if text.startswith("sub-") else text
    if re.fullmatch(r"\d+\.0*", label):
        label = label.split(".")[0]  # '10.0' as written by a float column is subject 10
    if re.search(r"[^A-Za-z0-9_\- ]", label):
        raise CohortError(
            f"Subject ID {value!r} has characters a BIDS label cannot hold; use letters and "
            "digits only (underscores, hyphens and spaces are removed)."
        )
    clean = re.sub(r"[^A-Za-z0-9]", "", label)
    if not clean:
        raise CohortError(f"Subject ID {value!r} has no letter or digit to form a BIDS label.")
    return f"sub-{clean}"


def subject_from_filename(path):
    """Find the ``sub-<label>`` entity anywhere in a file name.

    ``bwsrsub-1000_lesion.nii.gz`` -> ``sub-1000``;
    ``sub-stroke0001_ses-02_lesion-msk.nii.gz`` -> ``sub-stroke0001``.
    """
    match = _SUB_ENTITY.search(Path(path).name)
    if match is None:
        raise CohortError(
            f"Cannot find a BIDS 'sub-<label>' entity in the file name {str(path)!r}. Rename "
            "the file (e.g. sub-001_lesion.nii.gz) or pass lesions as a mapping "
            "{subject_id: path}."
        )
    return f"sub-{match.group(1)}"


def _natural_key(subject):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", subject)]


def _is_nifti(path):
    name = Path(path).name
    return name.endswith(_NIFTI_SUFFIXES) and not name.startswith(".")


def _collect_lesion_sources(lesions):
    """Return {subject: path or image} from a folder, glob, list or mapping."""
    if isinstance(lesions, Mapping):
        items = [(normalize_id(k), v, str(k)) for k, v in lesions.items()]
    else:
        if isinstance(lesions, (str, Path)):
            text = str(lesions)
            if any(ch in text for ch in "*?["):
                paths = sorted(glob.glob(text, recursive=True))
                what = f"the pattern {text!r}"
            else:
                folder = Path(lesions)
                if not folder.exists():
                    raise CohortError(f"Lesion folder {text!r} does not exist.")
                if folder.is_file():
                    paths = [folder]
                else:
                    paths = sorted(p for p in folder.rglob("*") if p.is_file())
                what = f"the folder {text!r}"
            paths = [p for p in paths if _is_nifti(p)]
            if not paths:
                raise CohortError(f"No NIfTI file (.nii or .nii.gz) matches {what}.")
        else:
            paths = list(lesions)
            if not paths:
                raise CohortError("The list of lesion files is empty.")
            for p in paths:
                if not isinstance(p, (str, os.PathLike)):
                    raise CohortError(
                        f"A list of lesions must hold file paths, but item {paths.index(p)} is a "
                        f"{type(p).__name__}. For images in memory pass a mapping "
                        "{subject_id: image}, which also says whose mask each image is."
                    )
        items = [(subject_from_filename(p), str(p), str(p)) for p in paths]
    sources, origin = {}, {}
    for subject, src, raw in items:
        if subject in sources:
            raise CohortError(
                f"Duplicate subject {subject}: both {origin[subject]!r} and {raw!r} map to it. "
                "Keep one mask per subject (e.g. one session) or pass an explicit mapping."
            )
        sources[subject] = src
        origin[subject] = raw
    return sources


# --------------------------------------------------------------------- phenotype
def read_phenotype(phenotype, id_column="participant_id"):
    """Read a phenotype table as text, indexed by normalised subject ID.

    Parameters
    ----------
    phenotype : str, Path or DataFrame
        A ``.tsv``/``.txt`` (tab-separated, BIDS ``participants.tsv``), ``.csv`` or
        ``.xlsx``/``.xls`` file, or a DataFrame. A UTF-8 byte-order mark is ignored.
    id_column : str
        Column holding subject IDs.

    Returns
    -------
    DataFrame
        Raw values (not yet validated), index ``participant_id``.
    """
    if isinstance(phenotype, pd.DataFrame):
        table = phenotype.copy()
        where = "the phenotype DataFrame"
    else:
        path = Path(phenotype)
        where = f"the phenotype file {str(path)!r}"
        if not path.exists():
            raise PhenotypeError(f"Phenotype file {str(path)!r} does not exist.")
        suffix = "".join(path.suffixes[-1:]).lower()
        try:
            if suffix in (".tsv", ".txt"):
                table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
            elif suffix == ".csv":
                table = pd.read_csv(path, sep=",", dtype=str, keep_default_na=False, encoding="utf-8-sig")
            elif suffix in (".xlsx", ".xls", ".xlsm"):
                table = pd.read_excel(path, dtype=object, keep_default_na=False)
            else:
                raise PhenotypeError(
                    f"Unsupported phenotype file type {suffix!r} for {str(path)!r}; use .tsv, .csv or .xlsx."
                )
        except PhenotypeError:
            raise
        except Exception as exc:
            raise PhenotypeError(f"Cannot read {where}: {type(exc).__name__}: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    if id_column not in table.columns:
        if table.index.name == id_column:
            table = table.reset_index()
        else:
            raise PhenotypeError(
                f"The ID column {id_column!r} is not in {where}; its columns are "
                f"{list(table.columns)}. Pass id_column=<name of the column with subject IDs>."
            )
    raw_ids = table[id_column]
    ids = []
    for row, value in enumerate(raw_ids, start=1):
        try:
            ids.append(normalize_id(value))
        except CohortError as exc:
            raise PhenotypeError(f"Row {row} of {where}: {exc}") from None
    ids = pd.Index(ids, name="participant_id")
    if ids.has_duplicates:
        dup = sorted(set(ids[ids.duplicated()]), key=_natural_key)
        raw = {d: sorted({str(r) for r, i in zip(raw_ids, ids) if i == d}) for d in dup[:5]}
        raise PhenotypeError(
            f"Duplicate subject IDs in {where}: {', '.join(f'{d} (as {raw[d]})' for d in dup[:5])}"
            f"{' ...' if len(dup) > 5 else ''}. Keep one row per subject."
        )
    table = table.drop(columns=[id_column])
    table.index = ids
    return table


# ------------------------------------------------------------------------ masks
_MAPPING_CACHE = {}


def _mapping_for(src_affine, src_shape, dst_affine, dst_shape):
    key = (np.round(src_affine, 6).tobytes(), tuple(src_shape), np.round(dst_affine, 6).tobytes(), tuple(dst_shape))
    if key not in _MAPPING_CACHE:
        if len(_MAPPING_CACHE) > 8:
            _MAPPING_CACHE.clear()
        _MAPPING_CACHE[key] = grid_mapping(src_affine, src_shape, dst_affine, dst_shape)
    return _MAPPING_CACHE[key]


def _load_one(subject, source, threshold, affine, shape):
    """Worker: (subject, flat indices on the target grid or None, native volume ml, problem, note)."""
    try:
        mask, src_affine = read_mask(source, threshold=threshold)
    except MaskProblem as exc:
        return subject, None, np.nan, str(exc), None
    native_ml = float(np.count_nonzero(mask) * abs(np.linalg.det(src_affine[:3, :3])) / 1000.0)
    if same_grid(src_affine, mask.shape, affine, shape):
        return subject, np.flatnonzero(mask).astype(np.int32), native_ml, None, None
    lesioned = np.flatnonzero(mask)
    try:
        mapping = _mapping_for(src_affine, mask.shape, affine, shape)
        n_outside = count_outside(lesioned, src_affine, mask.shape, affine, shape)
    except (ValueError, np.linalg.LinAlgError) as exc:  # MemoryError propagates: not a drop reason
        return subject, None, native_ml, f"cannot be resampled to the common grid ({type(exc).__name__}: {exc})", None
    indices = regrid_indices(lesioned, mapping, mask.size)
    if indices.size == 0:
        problem = "no lesioned voxel left on the common grid (mask outside the target field of view?)"
        return subject, None, native_ml, problem, None
    note = None
    if n_outside:
        note = (f"{subject}: {n_outside} of {lesioned.size} lesioned voxels "
                f"({100.0 * n_outside / lesioned.size:.1f}%) lie outside the common grid and were cut off "
                "(lesion_volumes still counts them; pass a larger target_img to keep them)")
    return subject, indices, native_ml, None, note


def _grid_of(target):
    """(affine, shape) from a Nifti image, a path, or a voxel size in mm (MNI152 grid)."""
    import nibabel as nib

    if isinstance(target, (int, float, np.integer, np.floating)) and not isinstance(target, bool):
        return mni_grid(target)
    if isinstance(target, Cohort):
        return target.affine, target.shape
    img = target if isinstance(target, nib.spatialimages.SpatialImage) else nib.load(str(target))
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or (len(shape) > 3 and any(s != 1 for s in shape[3:])):
        raise LesionImageError(f"A 3D image is needed to define a grid; got shape {shape}.")
    try:
        affine = check_affine(img.affine)
    except MaskProblem as exc:
        raise LesionImageError(f"Cannot use this image as a grid: {exc}.") from None
    return affine, shape[:3]


def _run_parallel(func, args, n_jobs, verbose):
    """``[func(*a) for a in args]`` in order, serially or with joblib (a progress bar when verbose)."""
    return parallel_map(func, args, n_jobs=n_jobs, verbose=verbose, desc="Loading lesion masks", leave=True)


def load_cohort(
    lesions,
    phenotype,
    *,
    id_column="participant_id",
    target_img=None,
    dictionary=None,
    coerce=False,
    threshold=None,
    on_invalid="drop",
    space="MNI",
    n_jobs=1,
    verbose=0,
):
    """Join lesion masks with a phenotype table on one common grid.

    Parameters
    ----------
    lesions : str, Path, list of paths, or mapping
        A folder (searched recursively for ``.nii``/``.nii.gz``), a glob pattern, a list of
        files, or a mapping ``subject -> path or Nifti1Image``. Subject IDs come from the BIDS
        ``sub-<label>`` entity anywhere in a file name, or from the mapping keys.
    phenotype : str, Path or DataFrame
        TSV (BIDS ``participants.tsv``), CSV or XLSX file, or a DataFrame. ``n/a`` is missing.
    id_column : str
        Phenotype column with subject IDs. ``1000`` and ``sub-1000`` match.
    target_img : None, Nifti1Image, path or float
        Common grid. None: the grid of the first subject's mask. A float: the MNI152
        (FSL field of view) grid at that voxel size in mm. Masks on another grid are
        resampled with nearest-neighbour interpolation (exact when lattices coincide, e.g.
        a LAS mask on a RAS grid).
    dictionary : None, path or dict
        Data dictionary merged over the bundled one (see :mod:`lsm.dictionary`).
    coerce : bool
        Turn values that fail the dictionary into missing values (listed in
        ``Cohort.coerced``) instead of raising.
    threshold : None or float
        None: masks must hold only 0 and 1 (any dtype). A number: voxels ``> threshold``
        are lesioned (for probabilistic or 0/255 masks).
    on_invalid : {"drop", "raise"}
        What to do with an invalid mask (unreadable, not 3D, NaN, non-binary, empty):
        list it in ``excluded`` (with a warning) or raise :class:`~lsm.exceptions.LesionImageError`.
    space : {"MNI", "native"}
        ``"native"`` marks masks in each subject's own space (e.g. ISLES'24 CT); voxel-wise
        analyses refuse such a cohort.
    n_jobs : int
        Parallel mask reading with joblib.
    verbose : int
        Progress bar when > 0.

    Returns
    -------
    Cohort
    """
    check_option("on_invalid", on_invalid, ("drop", "raise"))
    check_option("space", space, ("MNI", "native"))
    check_n_jobs(n_jobs)
    sources = _collect_lesion_sources(lesions)
    table = read_phenotype(phenotype, id_column=id_column)
    dd = load_dictionary(dictionary)
    clean, coerced = dd.validate(table, coerce=coerce)

    dropped = []
    for subject in sorted(set(sources) - set(clean.index), key=_natural_key):
        dropped.append((subject, _source_name(sources[subject]), "lesion mask without a phenotype row"))
    for subject in sorted(set(clean.index) - set(sources), key=_natural_key):
        dropped.append((subject, "phenotype", "phenotype row without a lesion mask"))
    joined = sorted(set(sources) & set(clean.index), key=_natural_key)
    if not joined:
        raise CohortError(
            "No subject has both a lesion mask and a phenotype row. Mask IDs look like "
            f"{sorted(sources, key=_natural_key)[:3]}, phenotype IDs like {list(clean.index[:3])}; "
            f"check id_column={id_column!r} and the file names."
        )

    if target_img is None:
        # The grid of the first mask whose header is a readable 3D image; a broken mask is
        # reported (and dropped) by the checks below, not used as the grid.
        affine = shape = None
        for subject in joined:
            try:
                affine, shape = _grid_of(sources[subject])
                break
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any unreadable header: try the next
                logger.info("Not using %s's mask as the common grid: %s", subject, exc)
        if affine is None:
            raise LesionImageError(
                "No lesion mask is a readable 3D image to define the common grid (first: "
                f"{joined[0]}, {_source_name(sources[joined[0]])!r}). Check the files or pass target_img=."
            )
    else:
        affine, shape = _grid_of(target_img)

    logger.info("Loading %d lesion masks onto grid %s", len(joined), shape)
    results = _run_parallel(
        _load_one, [(s, sources[s], threshold, affine, shape) for s in joined], n_jobs, verbose
    )
    indices, volumes, cut_off = {}, {}, []
    for subject, idx, native_ml, problem, note in results:
        if note is not None:
            cut_off.append(note)
        if problem is not None:
            if on_invalid == "raise":
                raise LesionImageError(
                    f"Invalid lesion mask for {subject} ({_source_name(sources[subject])}): {problem}."
                )
            dropped.append((subject, _source_name(sources[subject]), f"invalid lesion mask: {problem}"))
            continue
        indices[subject] = idx
        volumes[subject] = native_ml
    if not indices:
        shown = "; ".join(f"{subject} ({source}): {reason}" for subject, source, reason in dropped[:5])
        more = f"; and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        raise LesionImageError(f"Every lesion mask is invalid: {shown}{more}.")
    kept = [s for s in joined if s in indices]
    dropped_df = pd.DataFrame(dropped, columns=COHORT_EXCLUDED_COLUMNS)
    if len(dropped_df):
        counts = dropped_df["reason"].str.replace(r":.*", "", regex=True).value_counts()
        warnings.warn(
            f"{len(dropped_df)} subject(s) excluded while joining masks and phenotype ("
            + "; ".join(f"{n} {r}" for r, n in counts.items())
            + "). See Cohort.excluded.",
            DroppedSubjectsWarning,
            stacklevel=2,
        )
    if cut_off:
        warnings.warn(
            f"{len(cut_off)} lesion mask(s) extend beyond the common grid and were cut off at its "
            f"edge (first: {cut_off[0]}). See Cohort.notes.",
            ResamplingWarning,
            stacklevel=2,
        )
    notes = cut_off + [
        f"{r['subject']}: column {r['column']!r} value {r['value']!r} {r['action']}" for _, r in coerced.iterrows()
    ]
    return Cohort(
        indices,
        clean.loc[kept],
        affine,
        shape,
        excluded=dropped_df,
        sources={s: _source_name(sources[s]) for s in kept},
        native_volumes_ml=volumes,
        space=space,
        coerced=coerced,
        notes=notes,
    )


def _source_name(source):
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__} in memory>"


# ----------------------------------------------------------------------- Cohort
class _LesionImages(Mapping):
    """Lazy mapping subject -> Nifti1Image (built on access, never all at once)."""

    def __init__(self, cohort):
        self._cohort = cohort

    def __getitem__(self, subject):
        return self._cohort.lesion_img(subject)

    def __iter__(self):
        return iter(self._cohort.subjects)

    def __len__(self):
        return len(self._cohort.subjects)


class Cohort:
    """Lesion masks and phenotype of the subjects that have both, on one grid.

    Build one with :func:`load_cohort` or a loader in :mod:`lsm.datasets`.

    Attributes
    ----------
    subjects : list of str
        Subject IDs (``sub-<label>``), naturally sorted.
    phenotype : DataFrame
        Validated phenotype, indexed by subject (index name ``participant_id``).
    affine : ndarray of shape (4, 4)
    shape : tuple of 3 ints
    space : {"MNI", "native"}
    excluded : DataFrame
        ``subject``, ``source``, ``reason``: one row per excluded subject.
    coerced : DataFrame
        Phenotype values changed during validation (top-coded or coerced to missing).
    notes : list of str
    metadata : dict
        Free-form information set by loaders (dataset name, citation, truth maps...).
    """

    def __init__(
        self,
        lesion_indices,
        phenotype,
        affine,
        shape,
        *,
        excluded=None,
        sources=None,
        native_volumes_ml=None,
        space="MNI",
        coerced=None,
        notes=None,
        metadata=None,
    ):
        self.affine = np.asarray(affine, dtype=np.float64)
        self.shape = tuple(int(s) for s in shape)
        subjects = list(phenotype.index)
        missing = [s for s in subjects if s not in lesion_indices]
        if missing:
            raise CohortError(f"Subjects without lesion data: {missing[:5]}")
        self.subjects = subjects
        self._indices = {s: np.asarray(lesion_indices[s]) for s in subjects}
        self.phenotype = phenotype
        self.phenotype.index.name = "participant_id"
        self.excluded = (
            excluded.reset_index(drop=True) if excluded is not None
            else pd.DataFrame(columns=COHORT_EXCLUDED_COLUMNS)
        )
        self.sources = dict(sources or {})
        vox_ml = self.voxel_volume_ml
        native = native_volumes_ml or {}
        self._native_volumes = {s: native.get(s, self._indices[s].size * vox_ml) for s in subjects}
        self.space = space
        if coerced is None:
            coerced = pd.DataFrame(columns=["subject", "column", "value", "action"])
        self.coerced = coerced
        self.notes = list(notes or [])
        self.metadata = dict(metadata or {})

    # ----------------------------------------------------------- basic access
    def __len__(self):
        return len(self.subjects)

    def __contains__(self, subject):
        return subject in self._indices

    def __repr__(self):
        return (
            f"<Cohort: {len(self)} subjects, grid {self.shape} at {self.voxel_size} mm, "
            f"space {self.space}, {len(self.excluded)} excluded, "
            f"phenotype columns {list(self.phenotype.columns)}>"
        )

    @property
    def voxel_size(self):
        """Voxel edge lengths in mm (tuple of 3 floats)."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)).round(6))

    @property
    def voxel_volume_ml(self):
        """Volume of one grid voxel in ml."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    @property
    def n_voxels(self):
        """Number of voxels of the grid (the product of ``shape``)."""
        return int(np.prod(self.shape))

    @property
    def lesion_volumes(self):
        """Lesion volume in ml of each subject, measured on the mask's own grid."""
        return pd.Series(self._native_volumes, name="lesion_volume_ml", dtype="float64").loc[self.subjects]

    @property
    def lesion_voxel_counts(self):
        """Number of lesioned voxels of each subject on the cohort grid."""
        return pd.Series({s: self._indices[s].size for s in self.subjects}, name="n_voxels", dtype="int64")

    def _check_subject(self, subject):
        if subject not in self._indices:
            try:
                alt = normalize_id(subject)
            except CohortError:
                alt = None
            if alt in self._indices:
                return alt
            raise KeyError(f"Subject {subject!r} is not in this cohort.")
        return subject

    def lesion_indices(self, subject):
        """Sorted flat (C-order) indices of the subject's lesioned voxels on the grid."""
        return self._indices[self._check_subject(subject)]

    def lesion_mask(self, subject):
        """Boolean 3D array of the subject's lesion on the grid."""
        mask = np.zeros(self.n_voxels, dtype=bool)
        mask[self.lesion_indices(subject)] = True
        return mask.reshape(self.shape)

    def lesion_img(self, subject):
        """Return the subject's lesion as a uint8 Nifti1Image on the cohort grid."""
        import nibabel as nib

        return nib.Nifti1Image(self.lesion_mask(subject).astype(np.uint8), self.affine)

    @property
    def lesion_imgs(self):
        """Lazy mapping subject -> Nifti1Image."""
        return _LesionImages(self)

    def grid_img(self, dtype=np.uint8):
        """Return an all-zero image of the cohort grid, e.g. as ``target_img`` for resampling."""
        import nibabel as nib

        return nib.Nifti1Image(np.zeros(self.shape, dtype=dtype), self.affine)

    def lesion_matrix(self, subjects=None):
        """Sparse binary lesion matrix.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_subjects, prod(shape)), dtype uint8
            Row i is ``subjects[i]`` (default: ``self.subjects``); columns are flat C-order
            voxel indices of the grid.
        """
        subjects = self.subjects if subjects is None else [self._check_subject(s) for s in subjects]
        rows = [self._indices[s] for s in subjects]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([r.size for r in rows], out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)
        data = np.ones(indices.size, dtype=np.uint8)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.n_voxels))

    # ---------------------------------------------------------- derived cohorts
    @property
    def dropped(self):
        """Renamed ``excluded`` (lsm 0.2)."""
        raise AttributeError("Cohort.dropped was renamed Cohort.excluded (columns subject, source, reason).")

    def _subset(self, subjects, extra_dropped=()):
        dropped = self.excluded
        if extra_dropped:
            extra = pd.DataFrame(list(extra_dropped), columns=COHORT_EXCLUDED_COLUMNS)
            dropped = pd.concat([dropped, extra], ignore_index=True)
        return Cohort(
            {s: self._indices[s] for s in subjects},
            self.phenotype.loc[subjects],
            self.affine,
            self.shape,
            excluded=dropped,
            sources={s: self.sources.get(s) for s in subjects if s in self.sources},
            native_volumes_ml={s: self._native_volumes[s] for s in subjects},
            space=self.space,
            coerced=self.coerced,
            notes=self.notes,
            metadata=self.metadata,
        )

    def select(self, column=None, subjects=None):
        """Subjects with a non-missing value in ``column`` (and/or in a list of subjects).

        Parameters
        ----------
        column : str or list of str, optional
            Keep subjects whose value is non-missing in every named column.
        subjects : list of str, optional
            Keep only these subjects (IDs normalised as in :func:`~lsm.cohort.normalize_id`).

        Returns
        -------
        Cohort
            The excluded subjects are appended to ``excluded`` with their reason.
        """
        keep = list(self.subjects)
        extra = []
        if subjects is not None:
            wanted = {self._check_subject(s) for s in subjects}
            for s in keep:
                if s not in wanted:
                    extra.append((s, "select", "not in the requested subject list"))
            keep = [s for s in keep if s in wanted]
        columns = [] if column is None else [column] if isinstance(column, str) else list(column)
        for col in columns:
            if col not in self.phenotype.columns:
                raise PhenotypeError(
                    f"Column {col!r} is not in the phenotype; available columns: {list(self.phenotype.columns)}."
                )
            values = self.phenotype.loc[keep, col]
            miss = values.isna()
            extra.extend((s, "phenotype", f"missing value in column {col!r}") for s in values.index[miss])
            keep = list(values.index[~miss])
        if not keep:
            raise CohortError(f"No subject left after selecting column(s) {columns} / subjects {subjects}.")
        return self._subset(keep, extra)

    def resample(self, target):
        """Resample the cohort onto another grid (nearest neighbour, exact on a shared lattice).

        Parameters
        ----------
        target : Nifti1Image, path, Cohort or float
            A float is a voxel size in mm on the MNI152 (FSL field of view) grid: ``2`` gives
            the 91 x 109 x 91 grid of the 2 mm arterial atlas.

        Notes
        -----
        Downsampling takes, for each coarse voxel, the fine voxel at its centre, so very
        small lesions can vanish; such subjects are kept (their lesion volume stays the one
        measured on their own mask) and named in ``notes``.
        """
        affine, shape = _grid_of(target)
        if same_grid(self.affine, self.shape, affine, shape):
            return self
        mapping = grid_mapping(self.affine, self.shape, affine, shape)
        indices = {s: regrid_indices(self._indices[s], mapping, self.n_voxels) for s in self.subjects}
        vanished = [s for s in self.subjects if indices[s].size == 0]
        notes = list(self.notes)
        if vanished:
            notes.append(
                f"{len(vanished)} lesion(s) have no voxel on the {shape} grid after resampling: "
                + ", ".join(vanished[:20])
                + (" ..." if len(vanished) > 20 else "")
            )
        return Cohort(
            indices,
            self.phenotype,
            affine,
            shape,
            excluded=self.excluded,
            sources=self.sources,
            native_volumes_ml=self._native_volumes,
            space=self.space,
            coerced=self.coerced,
            notes=notes,
            metadata=self.metadata,
        )

    # ---------------------------------------------------------------- summaries
    def describe(self):
        """Summarise the cohort in text: subjects, grid, lesion volumes, phenotype columns, exclusions."""
        vol = self.lesion_volumes
        lines = [
            f"Cohort of {len(self)} subjects ({self.space} space)",
            f"  grid: {self.shape} voxels of {self.voxel_size} mm",
            f"  lesion volume (ml): median {vol.median():.4g}, IQR {vol.quantile(0.25):.4g}-"
            f"{vol.quantile(0.75):.4g}, range {vol.min():.4g}-{vol.max():.4g}",
            "  phenotype:",
        ]
        for col in self.phenotype.columns:
            values = self.phenotype[col]
            n = int(values.notna().sum())
            if pd.api.types.is_numeric_dtype(values):
                detail = f"mean {values.mean():.2f}, range {values.min():g}-{values.max():g}" if n else ""
            else:
                top = values.value_counts().head(4)
                detail = ", ".join(f"{k}: {v}" for k, v in top.items())
            lines.append(f"    {col}: {n} non-missing; {detail}")
        if len(self.excluded):
            lines.append(f"  excluded: {len(self.excluded)}")
            reasons = self.excluded["reason"].str.replace(r":.*", "", regex=True).value_counts()
            lines.extend(f"    {n} x {r}" for r, n in reasons.items())
        if len(self.coerced):
            lines.append(f"  phenotype values changed during validation: {len(self.coerced)} (see Cohort.coerced)")
        return "\n".join(lines)

    def _repr_html_(self):
        from html import escape

        return "<pre>" + escape(self.describe()) + "</pre>"
