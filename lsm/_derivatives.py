"""Writers for BIDS-derivatives-style output folders (command line and demo).

Every NIfTI map gets a JSON sidecar with a ``Description``, every TSV table a JSON sidecar
describing its columns, and every folder a ``dataset_description.json``. Writers refuse to
replace an existing file unless ``overwrite=True``; callers write into the temporary
folder of :func:`lsm._utils.atomic_output_dir`, so a failed command leaves nothing behind.
"""

import datetime as _dt
import json
import math
import numbers
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ._utils import RESULT_SUBDIR, atomic_write_text

__all__ = [
    "json_safe",
    "json_text",
    "dataset_description",
    "write_json",
    "write_nifti",
    "write_tsv",
    "move_result_files",
]


def json_safe(obj):
    """Recursively convert ``obj`` into something :func:`json.dumps` accepts.

    numpy scalars and arrays become Python numbers and lists, non-finite floats become
    ``None`` (JSON has no NaN), paths and timestamps become strings, sets become sorted
    lists and mappings get string keys.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [json_safe(v) for v in sorted(obj, key=str)]
    if isinstance(obj, pd.DataFrame):
        return json_safe(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return json_safe(obj.to_dict())
    if isinstance(obj, (Path, _dt.date, _dt.datetime, pd.Timestamp)):
        return str(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return str(obj)


def json_text(obj):
    """``obj`` as indented JSON text (through :func:`json_safe`): the one JSON writer of lsm."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"


def dataset_description(name, provenance=None, **extra):
    """A BIDS ``dataset_description.json`` dict for an lsm derivative folder.

    ``GeneratedBy.Version`` is the lsm version that made the result, read from
    ``provenance`` (``"lsm_version"``, else ``versions["lsm"]``) when given, else the
    running version.
    """
    from . import __version__

    provenance = provenance or {}
    made_by = provenance.get("lsm_version") or (provenance.get("versions") or {}).get("lsm")
    desc = {
        "Name": name,
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "lsm", "Version": made_by or __version__}],
    }
    desc.update(extra)
    return desc


def write_json(path, obj, overwrite=False):
    """Write ``obj`` as indented JSON (numpy values and NaN made JSON-safe)."""
    return atomic_write_text(path, json_text(obj), overwrite=overwrite)


def _sidecar(path):
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".tsv"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    raise ValueError(f"No sidecar name for {str(path)!r}")


def write_nifti(img, path, description, overwrite=False, **sidecar):
    """Save ``img`` to ``path`` with a JSON sidecar holding ``description`` (+ ``sidecar``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        from .exceptions import OutputExistsError

        raise OutputExistsError(f"Output {str(path)!r} already exists.")
    nib.save(img, str(path))
    write_json(_sidecar(path), {"Description": description, **sidecar}, overwrite=overwrite)
    return path


def write_tsv(table, path, descriptions=None, index=True, overwrite=False, **meta):
    """Write a DataFrame as a BIDS TSV (``n/a`` for missing) with a column sidecar.

    Parameters
    ----------
    table : DataFrame
        Written with its index as the first column when ``index`` is True (an unnamed
        index is called ``participant_id``).
    path : str or Path
    descriptions : dict of str to str, optional
        Column -> description, written into the JSON sidecar (``{"col": {"Description": ...}}``).
    index : bool
    overwrite : bool
    **meta
        Extra top-level keys of the sidecar (e.g. the analysis parameters).
    """
    table = pd.DataFrame(table)
    if index:
        table = table.reset_index(names=table.index.name or "participant_id")
    # BIDS: a missing value is "n/a", never an empty cell (e.g. a "not tested" reason of "")
    text_columns = table.select_dtypes(include=["object", "string"]).columns
    for col in text_columns:
        table[col] = table[col].mask(table[col].astype(str).str.strip() == "")
    text = table.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    atomic_write_text(path, text, overwrite=overwrite)
    descriptions = {"participant_id": "Subject identifier (BIDS sub-<label>).", **(descriptions or {})}
    sidecar = {col: {"Description": descriptions[col]} for col in table.columns if col in descriptions}
    sidecar.update(meta)
    write_json(_sidecar(path), sidecar, overwrite=overwrite)
    return Path(path)


def move_result_files(result, folder, **save_kwargs):
    """Save a :class:`~lsm.VLSMResult` so that its files land directly in ``folder``.

    :meth:`VLSMResult.save` writes a folder of its own, atomically; here it writes a
    subfolder of ``folder`` whose files are then moved up, so that ``VLSMResult.load(folder)``
    reads the result back and other outputs can sit beside it.
    """
    folder = Path(folder)
    sub = folder / RESULT_SUBDIR
    result.save(sub, **save_kwargs)
    for item in sorted(sub.iterdir()):
        target = folder / item.name
        if target.exists():
            raise FileExistsError(f"Output {str(target)!r} already exists.")
        shutil.move(str(item), str(target))
    sub.rmdir()
    return folder
