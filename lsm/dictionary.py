"""Data dictionary: BIDS-style column descriptions and phenotype validation.

A data dictionary maps a column name to a BIDS-style sidecar entry::

    {"Description": "...", "type": "integer", "Minimum": 0, "Maximum": 42,
     "Units": "...", "Levels": {...}, "MissingValues": ["n/a"], "TopCoded": {"89+": 89}}

``type`` is one of ``"integer"``, ``"number"``, ``"string"``, ``"categorical"`` or
``"boolean"``. The package ships the dictionaries in ``data_dictionary/`` (merged);
a user's dictionary (path to a JSON file, a folder of JSON files, or a dict) is merged
on top, so it can add columns or override the bundled entries.

Validation rules (:meth:`lsm.DataDictionary.validate`):

- missing codes (``MissingValues``, default ``"n/a"``, ``"NA"``, empty) become missing;
  BIDS ``"n/a"`` and an empty cell are missing whatever ``MissingValues`` lists;
- ``TopCoded`` strings (``"89+"``) are replaced by their value and listed in the notes;
- ``integer``/``number`` columns must parse as numbers within ``Minimum``/``Maximum``;
  integers must be whole numbers;
- ``categorical`` values must be one of the ``Levels`` keys;
- ``boolean`` accepts 0/1, true/false, yes/no (any case);
- columns absent from the dictionary are kept; they become numeric when every
  non-missing value parses as a number.

A value that fails is an error naming the subject, the column and the value, unless
``coerce=True``: the value then becomes missing and is listed in the returned report.
"""

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import DictionaryError, DictionaryWarning, PhenotypeError

__all__ = ["DataDictionary", "load_dictionary", "DEFAULT_MISSING"]

logger = logging.getLogger("lsm")

DEFAULT_MISSING = ("n/a", "N/A", "NA", "na", "NaN", "nan", "")
_TYPES = ("integer", "number", "string", "categorical", "boolean")
_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


def _bundled_dictionary_dir():
    """``lsm/data_dictionary`` when installed, else ``data_dictionary/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "data_dictionary"
    if any(installed.glob("*.json")):
        return installed
    return here.parent / "data_dictionary"


def _read_json_entries(path):
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DictionaryError(f"No JSON data dictionary found in {str(path)!r}.")
    entries = {}
    for file in files:
        try:
            content = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DictionaryError(f"Cannot read data dictionary {str(file)!r}: {exc}") from exc
        if not isinstance(content, dict):
            raise DictionaryError(f"Data dictionary {str(file)!r} must hold a JSON object.")
        entries.update(content)
    return entries


def _check_entry(column, entry):
    if not isinstance(entry, dict):
        raise DictionaryError(f"Data dictionary entry for column {column!r} must be an object.")
    kind = entry.get("type", "string")
    if kind not in _TYPES:
        raise DictionaryError(
            f"Data dictionary entry for column {column!r} has type {kind!r}; "
            f"allowed types are {', '.join(_TYPES)}."
        )
    if kind == "categorical" and not entry.get("Levels"):
        raise DictionaryError(f"Categorical column {column!r} needs 'Levels' in the dictionary.")
    return entry


class DataDictionary(Mapping):
    """Column descriptions used to validate a phenotype table.

    Parameters
    ----------
    entries : dict
        Column name -> BIDS-style entry (see module docstring).
    """

    def __init__(self, entries):
        self._entries = {str(k): _check_entry(k, v) for k, v in dict(entries).items()}

    def __getitem__(self, key):
        return self._entries[key]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"DataDictionary({len(self)} columns: {', '.join(list(self)[:8])}...)"

    def merged(self, other):
        """Return a new dictionary with ``other``'s entries taking precedence."""
        entries = dict(self._entries)
        entries.update(dict(other))
        return DataDictionary(entries)

    def to_dataframe(self):
        """One row per column: type, units, range, levels, source."""
        rows = []
        for name, e in self._entries.items():
            rows.append(
                {
                    "column": name,
                    "type": e.get("type", "string"),
                    "units": e.get("Units", ""),
                    "minimum": e.get("Minimum"),
                    "maximum": e.get("Maximum"),
                    "levels": ", ".join(map(str, e.get("Levels", {}))),
                    "source": ", ".join(e.get("Source", [])),
                    "description": e.get("Description", ""),
                }
            )
        return pd.DataFrame(rows).set_index("column")

    def validate(self, table, *, coerce=False, id_label="participant_id"):
        """Validate and convert every column of ``table``.

        Parameters
        ----------
        table : DataFrame
            Raw phenotype, values as read from the file (strings or numbers), indexed by
            subject ID.
        coerce : bool
            When True, invalid values become missing and are reported instead of raising.

        Returns
        -------
        clean : DataFrame
            Numeric columns as float64 (NaN missing), others as strings.
        report : DataFrame
            Columns ``subject``, ``column``, ``value``, ``action`` ("coerced to missing",
            "top-coded to 89", ...): every value that was changed.
        """
        clean = {}
        report = []
        problems = []
        by_lower = {}
        for name in self._entries:
            by_lower.setdefault(str(name).strip().lower(), name)
        for column in table.columns:
            entry = self._entries.get(column)
            raw = table[column]
            if entry is None:
                near = by_lower.get(str(column).strip().lower())
                if near is not None:
                    warnings.warn(
                        f"Phenotype column {column!r} is not validated: the data dictionary "
                        f"describes {near!r} (names are case-sensitive). Rename the column to "
                        f"{near!r} to check it against the dictionary, or add {column!r} to a "
                        "dictionary of your own (dictionary=...).",
                        DictionaryWarning,
                        stacklevel=3,
                    )
                clean[column] = _infer_column(raw)
                continue
            values, col_report, col_problems = _validate_column(column, raw, entry)
            clean[column] = values
            report.extend(col_report)
            problems.extend(col_problems)
        if problems and not coerce:
            shown = "\n".join(
                f"  - subject {s!r}, column {c!r}: value {v!r} {why}" for s, c, v, why in problems[:10]
            )
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise PhenotypeError(
                f"{len(problems)} phenotype value(s) fail the data dictionary:\n{shown}{more}\n"
                "Fix the table, extend the dictionary (dictionary=...), or pass coerce=True to "
                "set these values to missing (they are then listed in Cohort.coerced)."
            )
        # Invalid values were never written into ``clean``: they are already missing.
        for subject, column, value, why in problems:
            report.append(
                {"subject": subject, "column": column, "value": value, "action": f"coerced to missing ({why})"}
            )
        out = pd.DataFrame(clean, index=table.index)
        out.index.name = id_label
        report_df = pd.DataFrame(report, columns=["subject", "column", "value", "action"])
        return out, report_df


def _missing_codes(entry):
    """Return an entry's missing codes; BIDS ``n/a`` (also written ``N/A``) and an empty cell are always missing."""
    return {str(v) for v in entry.get("MissingValues", DEFAULT_MISSING)} | {"", "n/a", "N/A"}


def _as_text(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value).strip()


def _infer_column(raw):
    texts = raw.map(_as_text)
    missing = texts.isna() | texts.isin(DEFAULT_MISSING)
    numeric = pd.to_numeric(texts.where(~missing), errors="coerce")
    if (numeric.notna() | missing).all() and (~missing).any():
        return numeric.astype("float64")
    return texts.where(~missing).astype(object)


def _validate_column(column, raw, entry):
    kind = entry.get("type", "string")
    missing_codes = _missing_codes(entry)
    top_coded = {str(k): v for k, v in entry.get("TopCoded", {}).items()}
    report, problems = [], []
    out = pd.Series(np.nan, index=raw.index, dtype="float64" if kind in ("integer", "number", "boolean") else object)
    for subject, value in raw.items():
        text = _as_text(value)
        if text is None or text in missing_codes:
            continue
        if text in top_coded:
            out.loc[subject] = top_coded[text]
            report.append(
                {"subject": subject, "column": column, "value": text, "action": f"top-coded to {top_coded[text]}"}
            )
            continue
        if kind in ("integer", "number"):
            try:
                number = float(text)
            except ValueError:
                problems.append((subject, column, text, f"is not a number (column type {kind})"))
                continue
            if not np.isfinite(number):
                problems.append((subject, column, text, "is not finite"))
                continue
            if kind == "integer" and not float(number).is_integer():
                problems.append((subject, column, text, "is not a whole number (column type integer)"))
                continue
            lo, hi = entry.get("Minimum"), entry.get("Maximum")
            if lo is not None and number < lo:
                problems.append((subject, column, text, f"is below the minimum {lo}"))
                continue
            if hi is not None and number > hi:
                problems.append((subject, column, text, f"is above the maximum {hi}"))
                continue
            out.loc[subject] = number
        elif kind == "boolean":
            low = text.lower()
            if low in _TRUE:
                out.loc[subject] = 1.0
            elif low in _FALSE:
                out.loc[subject] = 0.0
            else:
                problems.append((subject, column, text, "is not a boolean (0/1, true/false, yes/no)"))
        elif kind == "categorical":
            levels = {str(k) for k in entry["Levels"]}
            if text not in levels:
                problems.append((subject, column, text, f"is not one of the levels {sorted(levels)}"))
                continue
            out.loc[subject] = text
        else:
            out.loc[subject] = text
    return out, report, problems


def load_dictionary(dictionary=None):
    """Return the bundled data dictionary, merged with a user's one.

    Parameters
    ----------
    dictionary : None, str, Path, dict or DataDictionary
        A JSON file, a folder of JSON files, or a mapping of column entries. Its entries
        take precedence over the bundled ones.
    """
    bundled = DataDictionary(_read_json_entries(_bundled_dictionary_dir()))
    if dictionary is None:
        return bundled
    if isinstance(dictionary, DataDictionary):
        return bundled.merged(dictionary)
    if isinstance(dictionary, Mapping):
        return bundled.merged(DataDictionary(dictionary))
    return bundled.merged(DataDictionary(_read_json_entries(dictionary)))
