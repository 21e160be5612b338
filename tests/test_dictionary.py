"""The bundled data dictionary and the validation rules."""

import json
from pathlib import Path

import pandas as pd
import pytest

from lsm.dictionary import DataDictionary, load_dictionary
from lsm.exceptions import DictionaryError, PhenotypeError

REQUIRED = [
    "participant_id", "age", "sex", "nihss", "mrs", "mrs_3month", "gs_rankin_6isdeath",
    "nihss_admission", "mrs_admission", "lesion_type", "hemisphere",
]


def test_bundled_dictionary_covers_the_seed_datasets():
    dd = load_dictionary()
    for column in REQUIRED:
        assert column in dd, column
        assert dd[column]["Description"]
    for column in ("nihss", "nihss_admission"):
        assert (dd[column]["type"], dd[column]["Minimum"], dd[column]["Maximum"]) == ("integer", 0, 42)
    for column in ("mrs", "mrs_3month", "gs_rankin_6isdeath", "mrs_admission"):
        assert (dd[column]["type"], dd[column]["Minimum"], dd[column]["Maximum"]) == ("integer", 0, 6)
    table = dd.to_dataframe()
    assert set(REQUIRED) <= set(table.index)
    numeric = table[table["type"].isin(["integer", "number"])]
    assert (numeric["units"] != "").all(), numeric.index[numeric["units"] == ""].tolist()


def test_every_bundled_file_is_valid_json_object():
    folder = Path(__file__).resolve().parents[1] / "data_dictionary"
    files = sorted(folder.glob("*.json"))
    assert files
    for f in files:
        content = json.loads(f.read_text(encoding="utf-8"))
        DataDictionary(content)  # raises DictionaryError when an entry is malformed


def test_malformed_entries_rejected():
    with pytest.raises(DictionaryError, match="'x' has type 'float'"):
        DataDictionary({"x": {"type": "float"}})
    with pytest.raises(DictionaryError, match="Categorical column 'c' needs 'Levels'"):
        DataDictionary({"c": {"type": "categorical"}})


def test_validation_types():
    dd = DataDictionary(
        {
            "n": {"type": "integer", "Minimum": 0, "Maximum": 6},
            "b": {"type": "boolean"},
            "c": {"type": "categorical", "Levels": {"L": "left", "R": "right"}},
            "age": {"type": "number", "TopCoded": {"89+": 89}},
        }
    )
    raw = pd.DataFrame(
        {"n": ["0", "6", "n/a"], "b": ["yes", "0", ""], "c": ["L", "R", "NA"], "age": ["89+", "40.5", "n/a"],
         "free": ["1", "2", "x"]},
        index=pd.Index(["sub-1", "sub-2", "sub-3"], name="participant_id"),
    )
    clean, report = dd.validate(raw)
    assert clean["n"].tolist()[:2] == [0.0, 6.0] and pd.isna(clean.loc["sub-3", "n"])
    assert clean["b"].tolist()[:2] == [1.0, 0.0]
    assert clean["c"].tolist()[:2] == ["L", "R"] and pd.isna(clean.loc["sub-3", "c"])
    assert clean.loc["sub-1", "age"] == 89 and clean.loc["sub-2", "age"] == 40.5
    assert clean["free"].tolist() == ["1", "2", "x"]  # not in dictionary, not all numeric: kept as text
    assert report.to_dict("records") == [
        {"subject": "sub-1", "column": "age", "value": "89+", "action": "top-coded to 89"}
    ]
    bad = raw.assign(c=["L", "left", "R"])
    with pytest.raises(PhenotypeError, match="subject 'sub-2', column 'c': value 'left' is not one of the levels"):
        dd.validate(bad)


def test_bids_na_is_missing_whatever_the_entry_lists():
    """An entry with its own MissingValues (e.g. -999) still treats BIDS 'n/a' as missing."""
    dd = DataDictionary({"nihss": {"type": "integer", "Minimum": 0, "Maximum": 42, "MissingValues": [-999]}})
    raw = pd.DataFrame({"nihss": ["4", "n/a", "-999", "", "N/A"]},
                       index=pd.Index(["sub-1", "sub-2", "sub-3", "sub-4", "sub-5"], name="participant_id"))
    clean, report = dd.validate(raw)
    assert clean["nihss"].iloc[0] == 4.0 and clean["nihss"].iloc[1:].isna().all()
    assert report.empty


def test_column_differing_only_in_case_is_flagged_not_silently_skipped():
    from lsm.exceptions import DictionaryWarning

    dd = load_dictionary()
    raw = pd.DataFrame({"NIHSS": ["99", "4"], "age": ["50", "60"]},
                       index=pd.Index(["sub-1", "sub-2"], name="participant_id"))
    with pytest.warns(DictionaryWarning, match="'NIHSS' is not validated.*'nihss'"):
        clean, _ = dd.validate(raw)
    assert clean["NIHSS"].tolist() == [99.0, 4.0]  # kept as the user's own column
    with pytest.raises(PhenotypeError, match="subject 'sub-1', column 'nihss': value '99'"):
        dd.validate(raw.rename(columns={"NIHSS": "nihss"}))
