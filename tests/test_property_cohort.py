"""Property-based tests of cohort loading (hypothesis).

Random small cohorts with random (often broken) masks and malformed phenotype tables:
every case must end in a :class:`~lsm.cohort.Cohort` or a named lsm error
(:class:`~lsm.exceptions.LSMError` subclass), never an unhandled exception, and a
returned cohort must account for every input subject (kept or listed in ``excluded``).
The oracles below are written from the Cohort contract in CONTRIBUTING.md, not from
the loader's code.
"""

import datetime as dt
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lsm.cohort import load_cohort, normalize_id
from lsm.exceptions import (
    CohortError,
    DroppedSubjectsWarning,
    LesionImageError,
    LSMError,
    PhenotypeError,
)

SHAPE = (4, 5, 3)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = [-3.0, -4.0, -2.0]
# The same lattice stored left-right flipped (LAS): voxel i of the flipped array is voxel
# SHAPE[0] - 1 - i of the RAS one, at the same world position.
AFFINE_LAS = AFFINE.copy()
AFFINE_LAS[0, 0] = -2.0
AFFINE_LAS[0, 3] = AFFINE[0, 3] + 2.0 * (SHAPE[0] - 1)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: kind -> valid? (without ``threshold``)
MASK_KINDS = {
    "binary_uint8": True,
    "binary_float32": True,
    "binary_int16": True,
    "full": True,
    "singleton_4d": True,
    "las": True,
    "empty": False,
    "nonbinary": False,
    "scaled_0_255": False,
    "nan": False,
    "inf": False,
    "4d": False,
    "2d": False,
    "complex": False,
    "corrupt": False,
}


def _random_bits(rng, p=0.3):
    bits = rng.random(SHAPE) < p
    if not bits.any():
        bits[tuple(rng.integers(0, s) for s in SHAPE)] = True
    return bits


def make_mask(kind, rng):
    """(image or raw bytes, expected bool mask on the RAS grid or None when invalid)."""
    bits = _random_bits(rng)
    if kind == "binary_uint8":
        return nib.Nifti1Image(bits.astype(np.uint8), AFFINE), bits
    if kind == "binary_float32":
        return nib.Nifti1Image(bits.astype(np.float32), AFFINE), bits
    if kind == "binary_int16":
        return nib.Nifti1Image(bits.astype(np.int16), AFFINE), bits
    if kind == "full":
        full = np.ones(SHAPE, bool)
        return nib.Nifti1Image(full.astype(np.uint8), AFFINE), full
    if kind == "singleton_4d":
        return nib.Nifti1Image(bits.astype(np.uint8)[..., None], AFFINE), bits
    if kind == "las":
        return nib.Nifti1Image(bits[::-1].astype(np.uint8), AFFINE_LAS), bits
    if kind == "empty":
        return nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE), None
    if kind == "nonbinary":
        data = bits.astype(np.float32)
        data[np.unravel_index(np.flatnonzero(bits)[0], SHAPE)] = 0.5
        return nib.Nifti1Image(data, AFFINE), None
    if kind == "scaled_0_255":
        return nib.Nifti1Image((bits * 255).astype(np.uint8), AFFINE), None
    if kind in ("nan", "inf"):
        data = bits.astype(np.float32)
        data[0, 0, 0] = np.nan if kind == "nan" else np.inf
        return nib.Nifti1Image(data, AFFINE), None
    if kind == "4d":
        return nib.Nifti1Image(np.stack([bits, bits], axis=-1).astype(np.uint8), AFFINE), None
    if kind == "2d":
        return nib.Nifti1Image(bits[:, :, 0].astype(np.uint8), AFFINE), None
    if kind == "complex":
        return nib.Nifti1Image(bits.astype(np.complex64), AFFINE), None
    if kind == "corrupt":
        return b"\x1f\x8b this is not a gzipped NIfTI file", None
    raise AssertionError(kind)


def _write_mask(folder, subject, img):
    path = Path(folder) / f"{subject}_lesion.nii.gz"
    if isinstance(img, bytes):
        path.write_bytes(img)
    else:
        nib.save(img, path)
    return path


def _id_variant(number, style):
    """Ways a subject ID is spelled in real phenotype tables (all mean sub-<number>)."""
    return {
        "int": number,
        "float": float(number),
        "text": str(number),
        "bids": f"sub-{number}",
        "padded": f"  sub-{number} ",
    }[style]


def _write_table(table, folder, fmt):
    """Write ``table`` as ``fmt``; return what load_cohort's ``phenotype`` gets."""
    if fmt == "dataframe":
        return table
    if fmt == "xlsx":
        path = Path(folder) / "participants.xlsx"
        table.to_excel(path, index=False)
        return path
    sep = "\t" if fmt.startswith("tsv") else ","
    encoding = fmt.split(":", 1)[1]
    path = Path(folder) / ("participants.tsv" if sep == "\t" else "participants.csv")
    text = table.to_csv(sep=sep, index=False, na_rep="n/a")
    path.write_bytes(text.encode(encoding))
    return path


TABLE_FORMATS = ["dataframe", "xlsx", "tsv:utf-8", "tsv:utf-8-sig", "csv:utf-8", "csv:utf-8-sig"]


@st.composite
def cohorts(draw):
    """A random small cohort: subject pool, which have masks / rows, mask kinds, scores."""
    n_pool = draw(st.integers(1, 7))
    numbers = draw(st.lists(st.integers(1, 9999), min_size=n_pool, max_size=n_pool, unique=True))
    with_mask = draw(st.lists(st.booleans(), min_size=n_pool, max_size=n_pool))
    with_row = draw(st.lists(st.booleans(), min_size=n_pool, max_size=n_pool))
    kinds = draw(st.lists(st.sampled_from(sorted(MASK_KINDS)), min_size=n_pool, max_size=n_pool))
    id_styles = draw(
        st.lists(st.sampled_from(["int", "float", "text", "bids", "padded"]), min_size=n_pool, max_size=n_pool)
    )
    scores = draw(
        st.lists(
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
            min_size=n_pool,
            max_size=n_pool,
        )
    )
    return {
        "numbers": numbers,
        "with_mask": with_mask,
        "with_row": with_row,
        "kinds": kinds,
        "id_styles": id_styles,
        "scores": scores,
        "seed": draw(st.integers(0, 2**16)),
        "fmt": draw(st.sampled_from(TABLE_FORMATS)),
        "lesions_as": draw(st.sampled_from(["folder", "mapping", "list"])),
        "grid_given": draw(st.booleans()),
        "on_invalid": draw(st.sampled_from(["drop", "raise"])),
    }


def _load(spec, folder):
    rng = np.random.default_rng(spec["seed"])
    mask_dir = Path(folder) / "masks"
    mask_dir.mkdir()
    masks, expected, sources = {}, {}, {}
    for number, has_mask, kind in zip(spec["numbers"], spec["with_mask"], spec["kinds"]):
        img, truth = make_mask(kind, rng)
        if not has_mask:
            continue
        subject = f"sub-{number}"
        expected[subject] = truth
        if spec["lesions_as"] == "mapping" and not isinstance(img, bytes):
            sources[str(number)] = img  # bare label as mapping key: normalised to sub-<n>
        else:
            sources[str(number)] = _write_mask(mask_dir, subject, img)
        masks[subject] = kind
    rows = [
        {"participant_id": _id_variant(n, style), "score": np.nan if s is None else s}
        for n, has_row, style, s in zip(spec["numbers"], spec["with_row"], spec["id_styles"], spec["scores"])
        if has_row
    ]
    table = pd.DataFrame(rows, columns=["participant_id", "score"])
    phenotype = _write_table(table, folder, spec["fmt"])
    if spec["lesions_as"] == "folder":
        lesions = mask_dir
    elif spec["lesions_as"] == "list":
        lesions = sorted(str(p) for p in sources.values() if isinstance(p, Path))
    else:
        lesions = sources
    pheno_ids = {normalize_id(r["participant_id"]) for r in rows}
    scores = {normalize_id(r["participant_id"]): r["score"] for r in rows}
    mask_ids = set(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        cohort = load_cohort(
            lesions,
            phenotype,
            target_img=nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE) if spec["grid_given"] else None,
            on_invalid=spec["on_invalid"],
        )
    return cohort, masks, expected, mask_ids, pheno_ids, scores


@SETTINGS
@given(spec=cohorts())
def test_random_cohorts_end_in_a_cohort_or_a_named_error(spec):
    """Random masks (empty, full, non-binary, NaN, 4D...) and random joins."""
    with tempfile.TemporaryDirectory() as folder:
        if spec["lesions_as"] == "list":
            assume(any(spec["with_mask"]))
        try:
            cohort, masks, expected, mask_ids, pheno_ids, scores = _load(spec, folder)
        except LSMError as exc:
            _check_error(spec, exc)
            return
    # ---- a cohort came back: every input subject is accounted for, exactly once
    kept = set(cohort.subjects)
    dropped = list(cohort.excluded["subject"])
    assert len(dropped) == len(set(dropped)), f"subject dropped twice: {dropped}"
    assert kept.isdisjoint(dropped)
    assert kept | set(dropped) == mask_ids | pheno_ids
    assert kept == {s for s in mask_ids & pheno_ids if MASK_KINDS[masks[s]]}
    reasons = dict(zip(cohort.excluded["subject"], cohort.excluded["reason"]))
    for subject in mask_ids - pheno_ids:
        assert "without a phenotype row" in reasons[subject]
    for subject in pheno_ids - mask_ids:
        assert "without a lesion mask" in reasons[subject]
    for subject in mask_ids & pheno_ids:
        if not MASK_KINDS[masks[subject]]:
            assert spec["on_invalid"] == "drop"
            assert reasons[subject].startswith("invalid lesion mask"), reasons[subject]
    # ---- kept subjects carry their own mask and score
    flip = cohort.affine[0, 0] < 0  # the grid of a LAS first mask when target_img=None
    for subject in cohort.subjects:
        truth = expected[subject]
        if flip:
            truth = truth[::-1]
        np.testing.assert_array_equal(cohort.lesion_mask(subject), truth, err_msg=subject)
        assert cohort.lesion_voxel_counts[subject] == truth.sum()
        want = scores[subject]
        got = cohort.phenotype.loc[subject, "score"]
        if pd.isna(want):
            assert pd.isna(got)
        else:
            # text formats round-trip floats through repr; Excel stores doubles
            assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-12)
    mat = cohort.lesion_matrix()
    assert mat.shape == (len(cohort), int(np.prod(cohort.shape)))
    np.testing.assert_array_equal(np.asarray(mat.sum(axis=1)).ravel(), cohort.lesion_voxel_counts.to_numpy())
    # ---- select() keeps accounting complete
    if cohort.phenotype["score"].notna().any():
        sel = cohort.select("score")
        assert set(sel.subjects) | set(sel.excluded["subject"]) == mask_ids | pheno_ids
        assert sel.phenotype["score"].notna().all()
    else:
        with pytest.raises(CohortError):
            cohort.select("score")


def _check_error(spec, exc):
    """A named error is acceptable only when the inputs warrant it."""
    message = str(exc)
    joined = [
        n for n, m, r in zip(spec["numbers"], spec["with_mask"], spec["with_row"]) if m and r
    ]
    valid_joined = [
        n
        for n, m, r, k in zip(spec["numbers"], spec["with_mask"], spec["with_row"], spec["kinds"])
        if m and r and MASK_KINDS[k]
    ]
    if isinstance(exc, CohortError) and "No subject has both" in message:
        assert not joined
    elif isinstance(exc, LesionImageError):
        if spec["on_invalid"] == "raise" and len(valid_joined) < len(joined):
            assert "sub-" in message  # names the subject
        elif not valid_joined:
            assert "invalid" in message.lower() or "readable 3d image" in message.lower(), message
        else:
            raise AssertionError(f"LesionImageError although {len(valid_joined)} valid mask(s) joined: {message}")
    elif isinstance(exc, CohortError) and "No NIfTI file" in message:
        assert not any(spec["with_mask"])
    elif isinstance(exc, PhenotypeError):
        # an empty table written to a text file has no rows; otherwise unexpected
        raise AssertionError(f"unexpected PhenotypeError for a well-formed table: {exc}")
    else:
        raise AssertionError(f"unexpected {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ malformed tables
def _valid_masks(folder, numbers, seed=0):
    rng = np.random.default_rng(seed)
    mask_dir = Path(folder) / "masks"
    mask_dir.mkdir(exist_ok=True)
    truth = {}
    for n in numbers:
        bits = _random_bits(rng)
        nib.save(nib.Nifti1Image(bits.astype(np.uint8), AFFINE), mask_dir / f"sub-{n}_lesion.nii.gz")
        truth[f"sub-{n}"] = bits
    return mask_dir


numbers_st = st.lists(st.integers(1, 9999), min_size=2, max_size=6, unique=True)


@SETTINGS
@given(numbers=numbers_st, data=st.data(), fmt=st.sampled_from(TABLE_FORMATS))
def test_duplicate_ids_are_refused_naming_the_subject(numbers, data, fmt):
    """``1000``, ``1000.0``, ``"sub-1000"`` name one subject: two such rows are an error."""
    dup = data.draw(st.sampled_from(numbers))
    spellings = ["int", "float", "text", "bids", "padded"]
    styles = data.draw(st.lists(st.sampled_from(spellings), min_size=2, max_size=2))
    rows = [{"participant_id": f"sub-{n}", "nihss": 3} for n in numbers]
    rows.append({"participant_id": _id_variant(dup, styles[0]), "nihss": 4})
    rows[numbers.index(dup)]["participant_id"] = _id_variant(dup, styles[1])
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        phenotype = _write_table(pd.DataFrame(rows), folder, fmt)
        with pytest.raises(PhenotypeError, match=f"Duplicate subject IDs.*sub-{dup}\\b"):
            load_cohort(masks, phenotype)


@SETTINGS
@given(
    numbers=numbers_st,
    fmt=st.sampled_from(TABLE_FORMATS),
    id_name=st.sampled_from(["subject", "ID", "participant", "Participant_ID"]),
)
def test_missing_id_column_names_the_column(numbers, fmt, id_name):
    rows = [{id_name: n, "nihss": 3} for n in numbers]
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        phenotype = _write_table(pd.DataFrame(rows), folder, fmt)
        with pytest.raises(PhenotypeError, match="'participant_id' is not in .*id_column="):
            load_cohort(masks, phenotype)
        # ... and pointing id_column at it works, with every subject kept
        cohort = load_cohort(masks, phenotype, id_column=id_name)
        assert set(cohort.subjects) == {f"sub-{n}" for n in numbers}
        assert len(cohort.excluded) == 0


# A cell of a score column as people type it: numbers, numbers as text, missing codes,
# junk text, Excel-mangled dates.
_BAD_TEXT = st.sampled_from(["abc", "3-5", "12a", "?", ">10", "1,5"])
_CELLS = st.one_of(
    st.integers(0, 42).map(lambda v: ("ok", v)),
    st.integers(0, 42).map(lambda v: ("ok", str(v))),
    st.integers(0, 42).map(lambda v: ("ok", float(v))),
    st.sampled_from(["n/a", "NA", ""]).map(lambda v: ("missing", v)),
    _BAD_TEXT.map(lambda v: ("bad", v)),
    st.floats(0.1, 41.9).filter(lambda v: not float(v).is_integer()).map(lambda v: ("bad", v)),
    st.integers(43, 500).map(lambda v: ("bad", v)),
    st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)).map(
        lambda d: ("bad", dt.datetime(d.year, d.month, d.day))
    ),
)


@SETTINGS
@given(numbers=numbers_st, data=st.data(), fmt=st.sampled_from(["dataframe", "xlsx", "tsv:utf-8", "csv:utf-8-sig"]))
def test_mixed_types_in_a_dictionary_column(numbers, data, fmt):
    """NIHSS (integer 0-42 in the bundled dictionary) with mixed cell types.

    Without ``coerce`` any bad cell is an error naming the subject and column; with
    ``coerce=True`` bad cells become missing, each listed in ``Cohort.coerced``, and
    ``select("nihss")`` lists those subjects in ``dropped``.
    """
    cells = data.draw(st.lists(_CELLS, min_size=len(numbers), max_size=len(numbers)))
    if fmt != "dataframe" and fmt != "xlsx":
        # text files hold text: a datetime is written as Excel/pandas would print it
        cells = [(k, str(v) if isinstance(v, dt.datetime) else v) for k, v in cells]
    table = pd.DataFrame({"participant_id": numbers, "nihss": [v for _, v in cells]}, dtype=object)
    bad = {f"sub-{n}" for n, (k, _) in zip(numbers, cells) if k == "bad"}
    missing = {f"sub-{n}" for n, (k, _) in zip(numbers, cells) if k == "missing"}
    good = {f"sub-{n}": float(v) for n, (k, v) in zip(numbers, cells) if k == "ok"}
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        phenotype = _write_table(table, folder, fmt)
        if bad:
            with pytest.raises(PhenotypeError) as info:
                load_cohort(masks, phenotype)
            msg = str(info.value)
            assert "'nihss'" in msg and "coerce=True" in msg
            assert sorted(bad)[0] in msg or len(bad) > 10
        cohort = load_cohort(masks, phenotype, coerce=True)
    assert set(cohort.subjects) == {f"sub-{n}" for n in numbers}
    assert set(cohort.coerced["subject"]) == bad
    assert (cohort.coerced["column"] == "nihss").all()
    nihss = cohort.phenotype["nihss"]
    assert nihss.dtype == np.float64
    for subject in bad | missing:
        assert np.isnan(nihss[subject])
    for subject, value in good.items():
        assert nihss[subject] == value
    if good:
        sel = cohort.select("nihss")
        assert set(sel.subjects) == set(good)
        gone = sel.excluded.set_index("subject")["reason"]
        assert set(gone.index) == bad | missing
        assert gone.str.contains("missing value in column 'nihss'").all()
    else:
        with pytest.raises(CohortError, match="nihss"):
            cohort.select("nihss")


@SETTINGS
@given(
    numbers=numbers_st,
    data=st.data(),
)
def test_excel_dates_and_mixed_types_in_free_columns(numbers, data):
    """Columns outside the dictionary keep mixed cells as text, numbers as float.

    An Excel sheet with a date column and a column mixing numbers and text loads; the
    all-numeric column becomes float, the mixed one stays text, and a date is never
    silently turned into a number.
    """
    dates = data.draw(
        st.lists(st.dates(dt.date(1990, 1, 1), dt.date(2030, 1, 1)), min_size=len(numbers), max_size=len(numbers))
    )
    values = data.draw(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=len(numbers), max_size=len(numbers))
    )
    junk_at = data.draw(st.integers(0, len(numbers) - 1))
    mixed = [v if i != junk_at else "pending" for i, v in enumerate(values)]
    table = pd.DataFrame(
        {
            "participant_id": numbers,
            "onset": [dt.datetime(d.year, d.month, d.day) for d in dates],
            "lab": values,
            "lab_mixed": mixed,
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        path = _write_table(table, folder, "xlsx")
        cohort = load_cohort(masks, path)
    pheno = cohort.phenotype
    assert pheno["lab"].dtype == np.float64
    for n, v in zip(numbers, values):
        assert pheno.loc[f"sub-{n}", "lab"] == pytest.approx(v, rel=1e-12, abs=1e-12)
    assert not pd.api.types.is_numeric_dtype(pheno["lab_mixed"])
    assert pheno.loc[f"sub-{numbers[junk_at]}", "lab_mixed"] == "pending"
    assert not pd.api.types.is_numeric_dtype(pheno["onset"])
    for n, d in zip(numbers, dates):
        assert str(pheno.loc[f"sub-{n}", "onset"]).startswith(d.isoformat())


@SETTINGS
@given(
    numbers=numbers_st,
    sep=st.sampled_from(["\t", ","]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]),
    site=st.sampled_from(["Zürich", "Montréal", "Boston", "São Paulo", "Köln"]),
)
def test_encodings_and_bom(numbers, sep, encoding, site):
    """UTF-8 with or without BOM loads (the BOM never sticks to the first column name);
    another encoding either loads identically (pure ASCII) or is a PhenotypeError that
    names the file."""
    rows = [sep.join(["participant_id", "site", "nihss"])]
    rows += [sep.join([str(n), site, str(n % 43)]) for n in numbers]
    text = "\n".join(rows) + "\n"
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        path = Path(folder) / ("participants.tsv" if sep == "\t" else "participants.csv")
        path.write_bytes(text.encode(encoding))
        decodable = encoding.startswith("utf-8") or site.isascii()
        if encoding == "utf-16":
            decodable = False
        try:
            cohort = load_cohort(masks, path)
        except PhenotypeError as exc:
            assert not decodable, exc
            assert str(path) in str(exc)
            return
    assert decodable, f"{encoding} text with {site!r} was read without error"
    assert set(cohort.subjects) == {f"sub-{n}" for n in numbers}
    assert list(cohort.phenotype.columns) == ["site", "nihss"]
    assert (cohort.phenotype["site"] == site).all()
    for n in numbers:
        assert cohort.phenotype.loc[f"sub-{n}", "nihss"] == n % 43


@SETTINGS
@given(numbers=numbers_st, fmt=st.sampled_from(TABLE_FORMATS), blank=st.sampled_from(["", "n/a", None, "   ", "---"]))
def test_blank_subject_id_is_an_error_naming_the_row(numbers, fmt, blank):
    rows = [{"participant_id": n, "nihss": 1} for n in numbers]
    rows.insert(1, {"participant_id": blank, "nihss": 2})
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        phenotype = _write_table(pd.DataFrame(rows), folder, fmt)
        with pytest.raises(PhenotypeError, match="Row 2 of"):
            load_cohort(masks, phenotype)


@SETTINGS
@given(numbers=numbers_st, fmt=st.sampled_from(TABLE_FORMATS))
def test_header_only_table_is_a_cohort_error(numbers, fmt):
    with tempfile.TemporaryDirectory() as folder:
        masks = _valid_masks(folder, numbers)
        phenotype = _write_table(pd.DataFrame(columns=["participant_id", "nihss"]), folder, fmt)
        with pytest.raises(CohortError, match="No subject has both"):
            load_cohort(masks, phenotype)


@SETTINGS
@given(
    kinds=st.lists(st.sampled_from(sorted(MASK_KINDS)), min_size=1, max_size=5),
    threshold=st.sampled_from([0.0, 0.4, 0.5, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_threshold_binarises_nonbinary_masks(kinds, threshold, seed):
    """With ``threshold=t`` a voxel is lesioned when its value is > t; masks that are
    still invalid (NaN, 4D, empty after thresholding...) are dropped with a reason."""
    rng = np.random.default_rng(seed)
    images, expect = {}, {}
    for i, kind in enumerate(kinds):
        img, _ = make_mask(kind, rng)
        if isinstance(img, bytes):
            continue
        subject = f"sub-{i + 1}"
        images[subject] = img
        data = np.asarray(img.dataobj)
        if kind == "singleton_4d":
            data = data[..., 0]
        if kind == "las":
            data = data[::-1]
        ok = kind not in ("nan", "inf", "4d", "2d", "complex")
        expect[subject] = (np.real(data) > threshold) if ok and (np.real(data) > threshold).any() else None
    assume(images)
    table = pd.DataFrame({"participant_id": list(images), "nihss": 1})
    grid = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        try:
            cohort = load_cohort(images, table, threshold=threshold, target_img=grid)
        except LesionImageError as exc:
            assert all(v is None for v in expect.values()), exc
            return
    assert set(cohort.subjects) == {s for s, v in expect.items() if v is not None}
    assert set(cohort.excluded["subject"]) == {s for s, v in expect.items() if v is None}
    for subject in cohort.subjects:
        np.testing.assert_array_equal(cohort.lesion_mask(subject), expect[subject])


# ------------------------------------------------------- regressions found by the above
def test_float_text_ids_match_integer_ids(tmp_path):
    """A table exported with float IDs ("10.0", as pandas/Excel write a float column)
    must match sub-10, never sub-100 (which silently gave subject 10's score to
    subject 100's mask)."""
    for n in (10, 100):
        nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), AFFINE), tmp_path / f"sub-{n}_lesion.nii.gz")
    (tmp_path / "participants.tsv").write_text("participant_id\tscore\n10.0\t1\n20\t2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        cohort = load_cohort(tmp_path, tmp_path / "participants.tsv")
    assert cohort.subjects == ["sub-10"]
    assert cohort.phenotype.loc["sub-10", "score"] == 1.0
    assert set(cohort.excluded["subject"]) == {"sub-100", "sub-20"}


def test_2d_first_mask_without_target_img_is_listed(tmp_path):
    """The grid comes from the first subject's mask when target_img=None; a 2D first
    mask is not used as the grid (no bare ValueError from numpy): the next valid mask
    defines it and the 2D one is listed in ``excluded`` naming why."""
    nib.save(nib.Nifti1Image(np.ones(SHAPE[:2], np.uint8), AFFINE), tmp_path / "sub-1_lesion.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), AFFINE), tmp_path / "sub-2_lesion.nii.gz")
    table = pd.DataFrame({"participant_id": [1, 2], "score": [1.0, 2.0]})
    with pytest.warns(DroppedSubjectsWarning):
        cohort = load_cohort(tmp_path, table)
    assert cohort.subjects == ["sub-2"] and cohort.shape == SHAPE
    assert "2D" in cohort.excluded.set_index("subject").loc["sub-1", "reason"]
    with pytest.raises(LesionImageError, match="sub-1"):
        load_cohort(tmp_path, table, on_invalid="raise")
