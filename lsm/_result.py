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

import datetime as _dt
import html
import platform
import time

import numpy as np
import pandas as pd

from ._validation import check_n_jobs

__all__ = ["AnalysisResult", "Summary", "make_provenance", "excluded_frame", "EXCLUDED_COLUMNS"]

#: Columns of every ``excluded`` table.
EXCLUDED_COLUMNS = ("subject", "reason")


class Summary(str):
    """Text summary that prints itself when echoed in a console or notebook."""

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        return f"<pre>{html.escape(str(self))}</pre>"


def versions():
    """Versions of lsm and of the libraries its results depend on."""
    import scipy

    from . import __version__

    out = {"lsm": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "pandas": pd.__version__}
    for name in ("statsmodels", "nibabel", "nilearn", "sklearn", "joblib"):
        module = __import__("sys").modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "unknown")
    return out


def make_provenance(*, seed=None, n_jobs=1, t0=None, **extra):
    """The ``provenance`` dict of a result.

    Parameters
    ----------
    seed : int or None
        The seed actually used (see :func:`lsm._validation.resolve_seed`).
    n_jobs : int
        Workers asked for.
    t0 : float, optional
        ``time.perf_counter()`` at the start of the analysis (gives ``runtime_s``).
    **extra
        Further entries (analysis-specific diagnostics).

    Returns
    -------
    provenance : dict
    """
    from . import __version__

    prov = {
        "lsm_version": __version__,
        "versions": versions(),
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
    :meth:`to_dataframe`, :meth:`save` and :meth:`load` where they have them.
    """

    #: Short title used in HTML and summaries.
    _title = "Result"

    def summary(self):  # pragma: no cover - every subclass implements it
        """Text summary of the result (a :class:`Summary`)."""
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
