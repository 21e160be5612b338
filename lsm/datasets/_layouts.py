"""Loaders for folders in the published layouts of three seed datasets.

Each loader finds the lesion masks and phenotype files of one published layout,
renames the dataset's column names to the data dictionary's canonical names (listed in
``Cohort.metadata["renamed"]``), and calls :func:`lsm.load_cohort`. The layouts are
documented in ``lsm/datasets/LAYOUTS.md``.
"""

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_option
from ..exceptions import CohortError, LSMWarning, PhenotypeError

__all__ = ["load_jhu_stroke", "load_atlas_r2", "load_isles24"]

logger = logging.getLogger("lsm")

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.I)
_SUB = re.compile(r"(?:^|[_/\\])(sub-[A-Za-z0-9]+)")
_SES = re.compile(r"(?:^|[_/\\])(ses-[A-Za-z0-9]+)")

# Dataset column name (compared case-insensitively, spaces/underscores ignored) ->
# canonical data-dictionary name.
JHU_RENAMES = {
    "participant_id": "participant_id", "subject": "participant_id", "subject_id": "participant_id",
    "id": "participant_id",
    "age": "age", "sex": "sex", "gender": "sex", "race": "race", "ethnicity": "ethnicity",
    "nihss": "nihss_admission", "nihss_admission": "nihss_admission", "admission_nihss": "nihss_admission",
    "mrs": "mrs", "mrs_score": "mrs",
    "lesion_type": "lesion_type", "stroke_type": "lesion_type",
    "hemisphere": "hemisphere", "lesion_hemisphere": "hemisphere", "lesion_side": "hemisphere",
    "vascular_territory": "vascular_territory",
}
ATLAS_R2_RENAMES = {
    "subject_id": "participant_id", "participant_id": "participant_id",
    "session": "session",
    "primary_stroke_hemisphere": "hemisphere",
    "primary_stroke_location": "primary_stroke_location",
    "secondary_stroke_hemisphere": "secondary_stroke_hemisphere",
    "secondary_stroke_location": "secondary_stroke_location",
    "lesion_volume": "lesion_volume_mm3",
    "scanner_strength": "scanner_strength", "scanner_brand": "scanner_brand",
    "image_resolution": "image_resolution", "days_post_stroke": "days_post_stroke",
    "chronicity": "chronicity_days",
}
ATLAS_R11_RENAMES = {
    "indi_subject_id": "participant_id", "indi_site_id": "site", "session": "session",
    "hemisphere": "hemisphere", "stroke_hemisphere": "hemisphere",
    "primary_stroke_location": "primary_stroke_location",
    "vascular_territory": "vascular_territory",
}
ISLES24_RENAMES = {
    "participant_id": "participant_id", "subject_id": "participant_id",
    "age": "age", "sex": "sex",
    "nihss_at_admission": "nihss_admission", "nihss_admission": "nihss_admission",
    "mrs_at_admission": "mrs_admission", "mrs_admission": "mrs_admission",
    "mrs_3_months": "mrs_3month", "mrs_3months": "mrs_3month", "mrs_3month": "mrs_3month",
    "mrs_at_3_months": "mrs_3month",
    "thrombolysis": "thrombolysis", "thrombectomy": "thrombectomy",
}
_HEMISPHERE_VALUES = {"l": "left", "left": "left", "r": "right", "right": "right",
                      "b": "bilateral", "bilateral": "bilateral", "both": "bilateral"}


# ----------------------------------------------------------------- helpers
def _snake(name):
    """'NIHSS at admission' -> 'nihss_at_admission'; '# Lesions LH' -> 'n_lesions_lh'."""
    text = str(name).strip().replace("#", "n ").replace("%", " pct ")
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return text or "column"


def _with_extra(renames, extra):
    """Merge the loader's renames with the user's (keys compared in snake_case)."""
    return {**renames, **{_snake(k): v for k, v in (extra or {}).items()}}


def _canonical_columns(table, renames, extra=None):
    """Rename columns to canonical names; return (table, {original: new})."""
    renames = _with_extra(renames, extra)
    mapping = {}
    for col in table.columns:
        key = _snake(col)
        mapping[col] = renames.get(key, key)
    seen = {}
    for col, new in mapping.items():
        if new in seen:
            raise PhenotypeError(
                f"Columns {seen[new]!r} and {col!r} both map to {new!r}; pass rename= to "
                "tell them apart."
            )
        seen[new] = col
    renamed = {c: n for c, n in mapping.items() if c != n}
    return table.rename(columns=mapping), renamed


def _read_table(path):
    path = Path(path)
    suffix = "".join(path.suffixes[-1:]).lower()
    try:
        if suffix in (".xlsx", ".xls"):
            return pd.read_excel(path, dtype=object)
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise PhenotypeError(f"Cannot read the phenotype file {str(path)!r}: {exc}") from exc


def _subject_of(path, root):
    match = _SUB.search(Path(path).relative_to(root).as_posix())
    return match.group(1) if match else None


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "n/a", "NA", "N/A", "nan")


def _per_subject_tables(files, root, renames):
    """One row per subject from per-subject phenotype files (sessions merged).

    A column given in several files must agree; otherwise the error names the subject,
    the column and both files.
    """
    rows, origin, renamed_all = {}, {}, {}
    for path in sorted(files):
        subject = _subject_of(path, root)
        if subject is None:
            raise PhenotypeError(f"Cannot tell the subject of {str(path)!r}: no 'sub-<label>' in its path.")
        table, renamed = _canonical_columns(_read_table(path), renames)
        renamed_all.update(renamed)
        table = table.drop(columns=["participant_id"], errors="ignore")
        if len(table) != 1:
            raise PhenotypeError(
                f"The phenotype file {str(path)!r} of {subject} has {len(table)} rows; one "
                "row per file is expected."
            )
        row = rows.setdefault(subject, {})
        for col, value in table.iloc[0].items():
            if _is_missing(value):
                continue
            if col in row and str(row[col]) != str(value):
                raise PhenotypeError(
                    f"{subject}: column {col!r} is {row[col]!r} in {origin[(subject, col)]!r} "
                    f"but {value!r} in {str(path)!r}."
                )
            row[col] = value
            origin[(subject, col)] = str(path)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "participant_id"
    return frame.reset_index(), renamed_all


def _normalise_hemisphere(table):
    for col in ("hemisphere", "secondary_stroke_hemisphere"):
        if col in table.columns:
            table[col] = [
                _HEMISPHERE_VALUES.get(str(v).strip().lower(), v) if not _is_missing(v) else v
                for v in table[col]
            ]
    return table


def _unique_masks(paths, root, session, what):
    """{subject: path} with one mask per subject, choosing ``session`` if given."""
    by_subject = {}
    for path in paths:
        rel = Path(path).relative_to(root).as_posix()
        sub = _SUB.search(rel)
        if sub is None:
            continue
        ses = _SES.search(rel)
        if session is not None and (ses is None or ses.group(1) != _as_session(session)):
            continue
        by_subject.setdefault(sub.group(1), []).append(Path(path))
    if not by_subject:
        where = f" for {_as_session(session)}" if session is not None else ""
        raise CohortError(f"No {what} found under {str(root)!r}{where}; see lsm/datasets/LAYOUTS.md.")
    out = {}
    for subject, found in sorted(by_subject.items()):
        if len(found) > 1:
            sessions = sorted({m.group(1) for p in found if (m := _SES.search(p.as_posix()))})
            raise CohortError(
                f"{subject} has {len(found)} {what}s ({', '.join(p.name for p in found[:3])}); "
                + (f"pass session= (one of {sessions}) to choose one." if len(sessions) > 1 else
                   "keep one per subject or pass lesions= explicitly.")
            )
        out[subject] = str(found[0])
    return out


def _as_session(session):
    text = str(session)
    return text if text.startswith("ses-") else f"ses-{text}"


def _join(lesions, phenotype, kwargs, metadata, renamed):
    """load_cohort with the loader's warnings pointing at the user's call."""
    from ..cohort import load_cohort

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = load_cohort(lesions, phenotype, **kwargs)
    for w in caught:
        if issubclass(w.category, LSMWarning):  # ours: point at the user's call
            warnings.warn(w.message, w.category, stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    cohort.metadata.update(metadata)
    cohort.metadata["renamed"] = dict(renamed)
    return cohort


def _glob_nifti(folder, pattern):
    return [p for p in Path(folder).rglob(pattern) if p.is_file() and _NIFTI.search(p.name)]


# --------------------------------------------------------------------- JHU
def load_jhu_stroke(root, *, derivatives=None, lesion_pattern="*lesion*", session=None,
                    phenotype=None, rename=None, **kwargs):
    """Load the JHU acute stroke dataset (ICPSR 38464) from its BIDS folder.

    Parameters
    ----------
    root : str or Path
        The dataset root (holding ``participants.tsv`` and/or ``phenotype/``, and
        ``derivatives/``).
    derivatives : str or None
        Sub-folder of ``derivatives/`` with the MNI-space masks. None: every
        ``derivatives/*`` folder whose name contains "MNI" (e.g.
        ``DWI-MNI-IntensityNormalized``).
    lesion_pattern : str
        Glob for the mask files inside it (case-sensitive; default ``"*lesion*"``);
        other images there (DWI, ADC, b0) are ignored.
    session : str or None
        Session to use when a subject has several (``"ses-1"`` or ``"1"``).
    phenotype : str, Path, DataFrame or None
        Override the phenotype: None reads ``participants.tsv`` and the per-subject
        files under ``phenotype/sub-*/`` (TSV, CSV or XLSX, one row each) and merges them.
    rename : dict or None
        Extra ``{dataset column: canonical name}`` renames (see ``JHU_RENAMES``).
    **kwargs
        Passed to :func:`lsm.load_cohort`.

    Returns
    -------
    Cohort
        MNI space. Renamed columns are listed in ``metadata["renamed"]``
        (e.g. ``NIHSS -> nihss_admission``, ``mRS -> mrs``, ``Gender -> sex``).
    """
    root = Path(root)
    deriv_root = root / "derivatives"
    if derivatives is not None:
        folders = [deriv_root / derivatives]
    else:
        folders = sorted(p for p in deriv_root.glob("*") if p.is_dir() and "mni" in p.name.lower())
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        raise CohortError(
            f"No MNI derivatives folder in {str(deriv_root)!r} (expected e.g. "
            "derivatives/DWI-MNI-IntensityNormalized/); pass derivatives=<folder name>."
        )
    paths = [p for f in folders for p in _glob_nifti(f, lesion_pattern)]
    lesions = _unique_masks(paths, root, session, "MNI lesion mask")

    renamed = {}
    if phenotype is None:
        tables = []
        participants = root / "participants.tsv"
        if participants.is_file():
            table, renamed = _canonical_columns(_read_table(participants), JHU_RENAMES, rename)
            tables.append(table)
        per_subject = [p for p in (root / "phenotype").rglob("*")
                       if p.is_file() and p.suffix.lower() in (".tsv", ".csv", ".xlsx")]
        if per_subject:
            table, more = _per_subject_tables(per_subject, root / "phenotype", _with_extra(JHU_RENAMES, rename))
            renamed.update(more)
            tables.append(table)
        if not tables:
            raise PhenotypeError(
                f"No phenotype in {str(root)!r}: expected participants.tsv and/or "
                "phenotype/sub-*/ files. Pass phenotype= explicitly."
            )
        phenotype = _merge_tables(tables)
    elif isinstance(phenotype, pd.DataFrame):
        phenotype, renamed = _canonical_columns(phenotype, JHU_RENAMES, rename)
    else:
        phenotype, renamed = _canonical_columns(_read_table(phenotype), JHU_RENAMES, rename)
    phenotype = _normalise_hemisphere(phenotype)
    meta = {"dataset": "JHU acute stroke (ICPSR 38464)",
            "citation": "Liu C-F, et al. A large public dataset of annotated clinical MRIs and "
                        "metadata of patients with acute stroke. Sci Data 10:548 (2023). "
                        "doi:10.1038/s41597-023-02457-9"}
    kwargs.setdefault("space", "MNI")
    return _join(lesions, phenotype, kwargs, meta, renamed)


def _merge_tables(tables):
    """Outer-join tables on participant_id; a value given twice must agree."""
    from ..cohort import normalize_id

    merged = None
    for table in tables:
        if "participant_id" not in table.columns:
            raise PhenotypeError("A phenotype table has no participant_id column; pass rename=.")
        table = table.copy()
        table["participant_id"] = [normalize_id(v) for v in table["participant_id"]]
        table = table.set_index("participant_id")
        if merged is None:
            merged = table
            continue
        for col in table.columns:
            if col not in merged.columns:
                continue
            both = merged[col].reindex(table.index)
            for subject, a, b in zip(table.index, both, table[col]):
                if not _is_missing(a) and not _is_missing(b) and str(a) != str(b):
                    raise PhenotypeError(
                        f"{subject}: column {col!r} is {a!r} in participants.tsv but {b!r} "
                        "in its phenotype/ file."
                    )
        merged = merged.combine_first(table)
    return merged.reset_index()


# ------------------------------------------------------------------- ATLAS
def load_atlas_r2(root, release="2.0", *, metadata=None, session=None, rename=None, **kwargs):
    """Load ATLAS (Anatomical Tracings of Lesions After Stroke), MNI-standardised masks.

    Parameters
    ----------
    root : str or Path
        Release 2.0: the folder holding ``Training/`` (or the ``Training`` folder
        itself) with ``R*/sub-*/ses-*/anat/*_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz``.
        Release 1.1: the folder holding ``Site*/<id>/t0*/<id>_LesionSmooth*_stx.nii.gz``.
    release : {"2.0", "1.1"}
    metadata : str, Path or None
        The metadata spreadsheet (XLSX or CSV). None: the single ``*MetaData*``/
        ``*Meta-Data*`` file found under ``root``.
    session : str or None
        2.0: BIDS session (``"ses-1"``); 1.1: timepoint folder (``"t01"``, default
        the first per subject).
    rename : dict or None
        Extra column renames (see ``ATLAS_R2_RENAMES`` / ``ATLAS_R11_RENAMES``).
    **kwargs
        Passed to :func:`lsm.load_cohort`.

    Returns
    -------
    Cohort
        MNI space (MNI152NLin2009aSym for 2.0, MNI-152 "stx" for 1.1). R1.1 masks of
        one scan split over several files (``_LesionSmooth_1_stx``, ``_2_``...) are
        combined (union).
    """
    check_option("release", str(release), ("2.0", "1.1"))
    root = Path(root)
    meta_file = Path(metadata) if metadata is not None else _find_metadata(root)
    table = _read_table(meta_file)
    if str(release) == "2.0":
        paths = _glob_nifti(root, "*_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii*")
        lesions = _unique_masks(paths, root, session, "ATLAS 2.0 lesion mask")
        phenotype, renamed = _canonical_columns(table, ATLAS_R2_RENAMES, rename)
        if "participant_id" in phenotype.columns:
            phenotype = _one_row_per_subject(
                phenotype, {s: _SES.search(p).group(1) for s, p in lesions.items() if _SES.search(p)})
        dataset = "ATLAS R2.0"
        cite = ("Liew S-L, et al. A large, curated, open-source stroke neuroimaging dataset to "
                "improve lesion segmentation algorithms. Sci Data 9:320 (2022).")
    else:
        lesions, timepoints = _atlas_r11_masks(root, session)
        phenotype, renamed = _canonical_columns(table, ATLAS_R11_RENAMES, rename)
        width = max(len(s) - 4 for s in lesions)
        phenotype["participant_id"] = [_pad_id(v, width) for v in phenotype["participant_id"]]
        phenotype = _one_row_per_subject(phenotype, timepoints)
        dataset = "ATLAS R1.1"
        cite = ("Liew S-L, et al. A large, open source dataset of stroke anatomical brain images "
                "and manual lesion segmentations. Sci Data 5:180011 (2018).")
    if "participant_id" not in phenotype.columns:
        raise PhenotypeError(
            f"The metadata file {str(meta_file)!r} has no subject column (expected "
            f"{'Subject ID' if str(release) == '2.0' else 'INDI Subject ID'}); pass rename=."
        )
    phenotype = _normalise_hemisphere(phenotype)
    kwargs.setdefault("space", "MNI")
    return _join(lesions, phenotype, kwargs, {"dataset": dataset, "citation": cite,
                                              "metadata_file": str(meta_file)}, renamed)


def _one_row_per_subject(phenotype, sessions):
    """Keep one metadata row per subject: the row of the session whose mask was loaded.

    "ses-1" and "1", "t01" and "t1" match. A subject without a loaded mask keeps its first
    row, so the join lists it in ``excluded``.
    """
    if "session" not in phenotype.columns:
        return phenotype
    from ..cohort import normalize_id

    ids = pd.Series([normalize_id(v) for v in phenotype["participant_id"]], index=phenotype.index)
    repeated = ids.duplicated(keep=False)
    if not repeated.any():
        return phenotype

    def same(a, b):
        norm = [re.sub(r"^(ses-|t)0*", "", str(x).strip().lower()) for x in (a, b)]
        return norm[0] == norm[1]

    first = ~ids.duplicated(keep="first")
    keep = [not rep or (same(sessions[pid], ses) if pid in sessions else is_first)
            for pid, rep, ses, is_first in zip(ids, repeated, phenotype["session"], first)]
    return phenotype[keep]


def _find_metadata(root):
    found = sorted(p for p in root.rglob("*") if p.is_file() and re.search(r"meta-?data", p.name, re.I)
                   and p.suffix.lower() in (".xlsx", ".csv", ".tsv"))
    if len(found) != 1:
        raise PhenotypeError(
            f"Expected one metadata spreadsheet (*MetaData*.xlsx/csv) under {str(root)!r}, found "
            f"{len(found)}{': ' + ', '.join(p.name for p in found) if found else ''}. Pass metadata=."
        )
    return found[0]


def _pad_id(value, width):
    from ..cohort import normalize_id

    text = str(value).strip()
    if text.replace(".0", "", 1).isdigit():
        text = f"{int(float(text)):0{width}d}"
    return normalize_id(text)


def _atlas_r11_masks(root, session):
    """R1.1 standard-space masks: ({sub-<id>: path or combined image}, {sub-<id>: timepoint})."""
    import nibabel as nib

    pattern = re.compile(r"^(\d+)_LesionSmooth(?:_\d+)?_stx\.nii(\.gz)?$", re.I)
    groups = {}
    for path in root.rglob("*_stx.nii*"):
        match = pattern.match(path.name)
        if match:
            groups.setdefault((match.group(1), path.parent.name), []).append(path)
    if not groups:
        raise CohortError(f"No ATLAS R1.1 mask (<id>_LesionSmooth*_stx.nii.gz) under {str(root)!r}.")
    chosen = {}
    for (sid, timepoint), files in sorted(groups.items()):
        if session is not None and timepoint != str(session):
            continue
        chosen.setdefault(sid, (timepoint, sorted(files)))  # first timepoint by default
    if not chosen:
        raise CohortError(f"No ATLAS R1.1 mask for timepoint {session!r} under {str(root)!r}.")
    out = {}
    for sid, (_, files) in chosen.items():
        if len(files) == 1:
            out[f"sub-{sid}"] = str(files[0])
            continue
        first = nib.load(files[0])
        union = np.zeros(first.shape[:3], dtype=bool)
        for f in files:
            img = nib.load(f)
            if img.shape[:3] != union.shape or not np.allclose(img.affine, first.affine, atol=1e-4):
                raise CohortError(f"The lesion files of sub-{sid} are on different grids: {files[0]}, {f}.")
            union |= np.asarray(img.dataobj).reshape(union.shape) > 0
        out[f"sub-{sid}"] = nib.Nifti1Image(union.astype(np.uint8), first.affine)
    return out, {f"sub-{sid}": timepoint for sid, (timepoint, _) in chosen.items()}


# ---------------------------------------------------------------- ISLES'24
def _centred(path):
    """Load the image at ``path`` lazily, with its array centre moved to world (0, 0, 0).

    Native CT grids sit anywhere in scanner coordinates; on a common storage grid a
    mask far from the first subject's field of view would lose every voxel. Centring
    keeps voxel size and orientation (so the native volume is unchanged) and makes all
    grids overlap.
    """
    import nibabel as nib

    img = nib.load(path)
    affine = np.array(img.affine, dtype=np.float64)
    centre = (np.array(img.shape[:3], dtype=np.float64) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return nib.Nifti1Image(img.dataobj, affine, img.header)


def _covering_grid(images):
    """Build a grid with the first image's voxel axes whose field of view holds every image.

    Returned as a data-less image (a zero-stride array) usable as ``target_img``.
    """
    import nibabel as nib

    linear = np.asarray(images[0].affine, dtype=np.float64)[:3, :3]
    to_voxels = np.linalg.inv(linear)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for img in images:
        shape = np.array(img.shape[:3], dtype=np.float64)
        corners = np.array(np.meshgrid(*[[0.0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
        aff = np.asarray(img.affine, dtype=np.float64)
        world = aff[:3, :3] @ corners + aff[:3, 3:4]
        vox = to_voxels @ world
        lo = np.minimum(lo, vox.min(axis=1))
        hi = np.maximum(hi, vox.max(axis=1))
    lo, hi = np.floor(lo + 1e-6), np.ceil(hi - 1e-6)
    shape = tuple(int(n) for n in hi - lo + 1)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = linear @ lo
    return nib.Nifti1Image(np.broadcast_to(np.uint8(0), shape), affine)


def load_isles24(root, *, mni_lesions=None, rename=None, register=False, registration_image="ncct",
                 registration_dir=None, registration_kwargs=None, **kwargs):
    """Load ISLES'24 follow-up infarct masks with the per-subject clinical tables.

    Parameters
    ----------
    root : str or Path
        The training folder holding ``derivatives/sub-*/ses-02/*_lesion-msk.nii.gz`` and
        ``phenotype/sub-*/ses-0*/*.xlsx``.
    mni_lesions : None, folder, glob, list or mapping
        MNI-registered masks of the same subjects (you register them; ISLES'24 ships
        none). When given they replace the native masks and the cohort is in MNI space.
    rename : dict or None
        Extra column renames (see ``ISLES24_RENAMES``).
    register : bool
        Register each subject's scan and follow-up mask to MNI with
        :func:`lsm.registration.register_lesions` (needs ``pip install "lsm[registration]"``) and return
        an MNI cohort on the arterial atlas's grid. The result is cached (resumable) in
        ``registration_dir``; its QC table is ``cohort.metadata["registration_qc"]`` and
        subjects whose registration failed are listed in ``cohort.excluded``.
    registration_image : {"ncct", "dwi", "adc"}
        The scan registered: the admission NCCT (``raw_data/.../*_ncct``) or the follow-up
        DWI/ADC in NCCT space (``derivatives/.../*_space-ncct_dwi|adc``).
    registration_dir : str, Path or None
        Cache folder (default ``<root>/derivatives/lsm-registration_<image>``).
    registration_kwargs : dict or None
        More arguments of :func:`lsm.registration.register_lesions` (``n_jobs``, ``random_state``, ``resolution``...).
    **kwargs
        Passed to :func:`lsm.load_cohort`.

    Returns
    -------
    Cohort
        Columns ``age``, ``sex``, ``nihss_admission``, ``mrs_admission``, ``mrs_3month``
        (renamed from "Age", "Sex", "NIHSS at admission", "mRS at admission",
        "mRS 3 months") plus the other clinical columns in snake_case. Without
        ``mni_lesions`` the cohort has ``space="native"``: the masks are in each
        subject's own CT space (they are only put on a common array grid for storage),
        so lesion volumes are valid but voxel-wise analyses raise
        :class:`~lsm.exceptions.SpaceError`.
    """
    root = Path(root)
    paths = _glob_nifti(root / "derivatives", "*lesion-msk.nii*")
    paths = [p for p in paths if _SES.search(p.as_posix()) and _SES.search(p.as_posix()).group(1) == "ses-02"]
    native = _unique_masks(paths, root, None, "ISLES'24 ses-02 lesion mask (*_lesion-msk.nii.gz)")
    files = [p for p in (root / "phenotype").rglob("*")
             if p.is_file() and p.suffix.lower() in (".xlsx", ".csv", ".tsv")]
    if not files:
        raise PhenotypeError(
            f"No phenotype files under {str(root / 'phenotype')!r} (expected phenotype/sub-*/ses-0*/*.xlsx).")
    phenotype, renamed = _per_subject_tables(files, root / "phenotype", _with_extra(ISLES24_RENAMES, rename))
    meta = {"dataset": "ISLES'24",
            "citation": "Riedel EO, de la Rosa E, et al. ISLES'24 - A Real-World Longitudinal "
                        "Multimodal Stroke Dataset. arXiv:2408.11142 (2024).",
            "licence": "CC BY-NC-SA 4.0"}
    if register:
        if mni_lesions is not None:
            raise CohortError("Pass either register=True or mni_lesions=, not both.")
        from ..registration._isles import register_isles24

        reg = register_isles24(root, native, image=registration_image, output=registration_dir,
                               **dict(registration_kwargs or {}))
        kwargs["space"] = "MNI"
        meta.update({"template_space": reg.template_space, "registration_qc": reg.qc,
                     "registration_excluded": reg.excluded, "lesion_files": dict(native)})
        cohort = _join(dict(reg.lesions), phenotype, kwargs, meta, renamed)
        if len(reg.excluded):
            extra = pd.DataFrame({"subject": reg.excluded["subject"], "source": "registration",
                                  "reason": reg.excluded["reason"]})
            cohort.excluded = pd.concat([cohort.excluded, extra], ignore_index=True)
        return cohort
    if mni_lesions is None:
        kwargs["space"] = "native"
        meta["space_note"] = (
            "ISLES'24 masks are in each subject's non-contrast CT space (space-ncct), not a "
            "standard space: voxels do not correspond across subjects. Each mask is centred "
            "on a common array grid (the first mask's voxel axes, large enough to hold every "
            "mask) only so it can be stored (volumes are computed in the subject's own "
            "voxels). Register the masks to MNI and pass mni_lesions= for voxel-wise or "
            "atlas-based analyses."
        )
        meta["lesion_files"] = dict(native)
        lesions = {subject: _centred(path) for subject, path in native.items()}
        if kwargs.get("target_img") is None and lesions:
            # storage grid: the first mask's voxel axes, large enough for every centred mask
            kwargs["target_img"] = _covering_grid(list(lesions.values()))
    else:
        kwargs.setdefault("space", "MNI")
        lesions = mni_lesions
    return _join(lesions, phenotype, kwargs, meta, renamed)
