"""The contract every analysis result follows.

Every result of an analysis (:class:`lsm.VLSMResult`, the territory-level, correlation
and outcome-model results, and the results to come) derives from
:class:`AnalysisResult` and offers the same things under the same names:

``params``
    dict of the analysis parameters as used (JSON-safe).
``provenance``
    dict: ``lsm_version``, ``versions`` (numpy, scipy...), ``random_state`` (the seed
    actually used), ``n_jobs``, ``runtime_s``, ``created`` (UTC, ISO 8601); see
    :func:`make_provenance`.
``excluded``
    DataFrame with columns ``subject`` and ``reason``: every subject the analysis left
    out, and why.
``summary()``
    a :class:`Summary`, text that prints in a console and renders in a notebook.
``plot()``, ``to_html()``
    a figure; a self-contained HTML page.
``save()`` / ``load()``
    for results holding maps or tables.
``significant``
    the significant units in the result's own domain (a mask image for maps, a
    boolean Series for tables).
"""

import dataclasses
import datetime as _dt
import html
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._validation import check_n_jobs

__all__ = ["AnalysisResult", "TableResult", "Summary"]

#: Columns of every ``excluded`` table.
EXCLUDED_COLUMNS = ("subject", "reason")


class Summary(str):
    """Text summary that prints itself when echoed in a console or notebook."""

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        return f"<pre>{html.escape(str(self))}</pre>"


def versions(packages=()):
    """Versions of lsm and of the libraries its results depend on.

    Libraries already imported are listed; ``packages`` names further ones to import.
    """
    import scipy

    from . import __version__

    out = {"lsm": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "pandas": pd.__version__}
    for name in packages:
        __import__(name)
    for name in ("statsmodels", "nibabel", "nilearn", "sklearn", "joblib", *packages):
        module = __import__("sys").modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "unknown")
    return out


def make_provenance(*, seed=None, n_jobs=1, t0=None, packages=(), **extra):
    """The ``provenance`` dict of a result.

    Parameters
    ----------
    seed : int or None
        The seed actually used (see :func:`lsm._validation.resolve_seed`).
    n_jobs : int
        Workers asked for.
    t0 : float, optional
        ``time.perf_counter()`` at the start of the analysis (gives ``runtime_s``).
    packages : tuple of str
        Libraries whose versions to record even if not imported yet.
    **extra
        Further entries (analysis-specific diagnostics).

    Returns
    -------
    provenance : dict
    """
    from . import __version__

    prov = {
        "lsm_version": __version__,
        "versions": versions(packages),
        "random_state": seed,
        "n_jobs": check_n_jobs(n_jobs),
        "runtime_s": None if t0 is None else time.perf_counter() - t0,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    prov.update(extra)
    return prov


def excluded_frame(rows=None):
    """An ``excluded`` table (columns ``subject``, ``reason``) from rows, a dict or a frame.

    Parameters
    ----------
    rows : None, DataFrame, dict or iterable of (subject, reason)
        A dict maps subject -> reason; a DataFrame must have the two columns (others are
        kept after them).

    Returns
    -------
    excluded : DataFrame
    """
    if rows is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EXCLUDED_COLUMNS})
    if isinstance(rows, pd.DataFrame):
        missing = [c for c in EXCLUDED_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"An excluded table needs the columns {list(EXCLUDED_COLUMNS)}; "
                             f"missing {missing}.")
        other = [c for c in rows.columns if c not in EXCLUDED_COLUMNS]
        return rows[list(EXCLUDED_COLUMNS) + other].reset_index(drop=True)
    if isinstance(rows, dict):
        rows = list(rows.items())
    frame = pd.DataFrame(list(rows), columns=list(EXCLUDED_COLUMNS))
    return frame.astype(object) if frame.empty else frame


class AnalysisResult:
    """Base class of every analysis result (see the module docstring for the contract).

    Subclasses set ``params``, ``provenance`` and ``excluded`` (as attributes or
    dataclass fields) and implement :meth:`summary`; they override :meth:`plot`,
    :meth:`to_dataframe`, ``save`` and ``load`` where they have them.
    """

    #: Short title used in HTML and summaries.
    _title = "Result"

    def summary(self):  # pragma: no cover - every subclass implements it
        """Text summary of the result (a :class:`~lsm.Summary`)."""
        raise NotImplementedError

    def to_dataframe(self):
        """The result's main table (a DataFrame)."""
        raise NotImplementedError(f"{type(self).__name__} has no table.")

    def plot(self, **kwargs):
        """Plot the result (returns a matplotlib Figure or a nilearn display)."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to plot.")

    def __repr__(self):
        return str(self.summary())

    def _html_body(self):
        """HTML of the result for a notebook or a page (summary, then the table if any)."""
        parts = [f"<pre>{html.escape(str(self.summary()))}</pre>"]
        try:
            table = self.to_dataframe()
        except NotImplementedError:
            table = None
        if table is not None:
            parts.append(table.to_html(float_format=lambda v: f"{v:.4g}"))
        return "\n".join(parts)

    def _repr_html_(self):
        return f"<div><strong>{html.escape(self._title)}</strong>{self._html_body()}</div>"

    def to_html(self, path=None, overwrite=False):
        """A self-contained HTML page of the result; written to ``path`` if given.

        Parameters
        ----------
        path : str or path, optional
            File to write (atomically).
        overwrite : bool, default=False
            Replace an existing file.

        Returns
        -------
        page : str
            The HTML text.
        """
        from ._utils import atomic_write_text

        title = html.escape(self._title)
        page = (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{title}</title></head><body><h1>{title}</h1>\n{self._html_body()}\n"
            "</body></html>\n"
        )
        if path is not None:
            atomic_write_text(path, page, overwrite=overwrite)
        return page


def _encode(value):
    """JSON-safe ``value``; a non-finite float becomes the string "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _encode(value.item())
    return value


def _decode(value):
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def _read_tsv(path, index=True):
    frame = pd.read_csv(path, sep="\t", index_col=0 if index else None, na_values=["n/a"],
                        keep_default_na=False)
    return frame


class TableResult(AnalysisResult):
    """An analysis result made of tables (a frozen dataclass); adds ``save`` / ``load``.

    A saved result is a folder: ``result.json`` (the result type, ``params``,
    ``provenance`` and the scalar fields) and one TSV per table (``excluded.tsv`` among
    them; missing values are ``n/a``), written atomically.
    """

    #: DataFrame fields, each saved as ``<name>.tsv`` with its index.
    _table_fields = ()
    #: 1-d array fields, each saved as a one-column ``<name>.tsv``.
    _array_fields = ()
    #: Fields that cannot be saved (read back as None).
    _unsaved_fields = ()

    def save(self, path, overwrite=False):
        """Save the result in the folder ``path`` (atomically).

        Parameters
        ----------
        path : str or path
            Output folder.
        overwrite : bool, default=False
            Replace an existing folder.

        Returns
        -------
        path : Path
        """
        from ._derivatives import json_text
        from ._utils import atomic_output_dir

        fields = {}
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.name in self._unsaved_fields:
                    continue
                if f.name == "excluded":
                    value.to_csv(tmp / "excluded.tsv", sep="\t", na_rep="n/a", index=False)
                elif f.name in self._table_fields:
                    value.to_csv(tmp / f"{f.name}.tsv", sep="\t", na_rep="n/a")
                elif f.name in self._array_fields:
                    pd.DataFrame({f.name: np.asarray(value)}).to_csv(
                        tmp / f"{f.name}.tsv", sep="\t", na_rep="n/a", index=False)
                else:
                    fields[f.name] = value
            meta = {"result_type": type(self).__name__, "fields": _encode(fields)}
            (tmp / "result.json").write_text(json_text(meta), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save`.

        Parameters
        ----------
        path : str or path
            Folder written by :meth:`save`.

        Returns
        -------
        result : same type as the saved one
        """
        path = Path(path)
        meta = json.loads((path / "result.json").read_text(encoding="utf-8"))
        if meta.get("result_type") != cls.__name__:
            raise ValueError(f"{str(path)!r} holds a {meta.get('result_type')!r}, not a "
                             f"{cls.__name__!r}.")
        kwargs = _decode(meta["fields"])
        for f in dataclasses.fields(cls):
            if f.name == "excluded":
                kwargs[f.name] = excluded_frame(_read_tsv(path / "excluded.tsv", index=False))
            elif f.name in cls._table_fields:
                kwargs[f.name] = _read_tsv(path / f"{f.name}.tsv")
            elif f.name in cls._array_fields:
                kwargs[f.name] = _read_tsv(path / f"{f.name}.tsv", index=False).iloc[:, 0].to_numpy(float)
            elif f.name in cls._unsaved_fields:
                kwargs[f.name] = None
        return cls(**cls._from_saved(kwargs))

    @classmethod
    def _from_saved(cls, kwargs):
        """Hook: fix the types of fields read back from JSON."""
        return kwargs
