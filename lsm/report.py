"""A self-contained HTML report of a VLSM analysis.

One HTML file, no external resource: the figures are embedded as base64 PNG, the style is
inline, there is no script. Sections: summary, cohort (description and drop list), lesion
overlap, thresholded maps, permutation null, cluster table, parameters, provenance.
"""

import base64
import datetime as _dt
import html
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import _check_target, atomic_write_text, display_path

__all__ = ["make_report", "report_html"]

logger = logging.getLogger("lsm")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 0 24px 48px; color: #222; line-height: 1.4; }
header { border-bottom: 3px solid #2a5d8f; margin-bottom: 12px; }
h1 { color: #2a5d8f; margin-bottom: 4px; }
h2 { color: #2a5d8f; border-bottom: 1px solid #ccd; padding-bottom: 2px; margin-top: 32px; }
nav a { margin-right: 14px; color: #2a5d8f; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccd; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th, table.kv th { background: #eef2f7; }
img { max-width: 100%; display: block; margin: 8px 0; border: 1px solid #dde; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
.note { color: #555; font-style: italic; }
.warn { color: #8a4b00; background: #fff4e0; padding: 6px 10px; border-left: 4px solid #e8a33d; }
.muted { color: #777; font-size: 12px; }
.wide { overflow-x: auto; }
.wide td { white-space: nowrap; }
table.kv th { white-space: nowrap; }
table.kv td { min-width: 90px; }
"""

_SECTIONS = [
    ("summary", "Summary"),
    ("cohort", "Cohort"),
    ("overlap", "Lesion overlap"),
    ("maps", "Thresholded maps"),
    ("null", "Permutation null"),
    ("clusters", "Clusters"),
    ("parameters", "Parameters"),
    ("provenance", "Provenance"),
]


def _esc(value):
    return html.escape(str(value), quote=True)


def _png(fig_or_display, dpi):
    """PNG bytes of a matplotlib figure or nilearn display, base64 encoded; closes it."""
    import matplotlib.pyplot as plt

    fig = getattr(fig_or_display, "frame_axes", None)
    fig = fig.figure if fig is not None else fig_or_display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    if hasattr(fig_or_display, "close"):
        fig_or_display.close()
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64, alt):
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{b64}">'


def _figure(draw, alt, dpi):
    """Draw a figure with ``draw()`` and return its <img>; a failure becomes a note."""
    try:
        return _img(_png(draw(), dpi), alt)
    except (ValueError, RuntimeError, MemoryError) as exc:  # never lose a whole report
        logger.warning("Could not draw %r for the report: %s", alt, exc)
        return f'<p class="warn">Figure "{_esc(alt)}" could not be drawn: {_esc(exc)}</p>'


def _kv_table(pairs):
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_short(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _kv_grid(pairs):
    """Key/value pairs in two side-by-side column pairs (a compact summary box)."""
    pairs = list(pairs)
    half = (len(pairs) + 1) // 2
    rows = []
    for r in range(half):
        cells = [pairs[r]] + ([pairs[r + half]] if r + half < len(pairs) else [])
        rows.append("<tr>" + "".join(f"<th>{_esc(k)}</th><td>{_esc(_short(v))}</td>"
                                     for k, v in cells) + "</tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


_TERRITORY_COLUMNS = {
    "territory_level1": "territory at peak (level 1)",
    "territory_level2": "territory at peak (level 2)",
    "territories_level1": "share of the cluster per territory (level 1)",
    "territories_level2": "share of the cluster per territory (level 2)",
}


def _cluster_tables(table):
    """Two display tables: the numbers (peak, size) and the territories of each cluster."""
    table = table.copy()
    if "territory_level1_name" in table:
        names = table["territory_level1_name"].astype(str)
        abbrev = table["territory_level1"].astype(str)
        table["territory_level1"] = [a if a in (n, "unavailable") else f"{a} ({n})"
                                     for a, n in zip(abbrev, names)]
    numbers = table[[c for c in table.columns if not c.startswith("territor")]].rename(columns={
        "cluster": "#", "n_voxels": "voxels", "volume_mm3": "volume (mm³)", "x_mm": "x",
        "y_mm": "y", "z_mm": "z", "peak_stat": "peak stat", "peak_z": "peak z",
        "peak_p": "peak p", "peak_p_corrected": "peak p (corr.)"})
    territories = None
    if "territory_level1" in table:
        territories = table[["cluster", *_TERRITORY_COLUMNS]].rename(
            columns={"cluster": "#", **_TERRITORY_COLUMNS})
    return numbers, territories


def _territory_caption(table, atlas):
    """How the clusters were labelled: what the cluster-table caption says of territories."""
    if atlas is None or "territory_level1" not in table:
        return "not labelled with arterial territories (no atlas)."
    if len(table) and (table["territory_level1"] == "unavailable").all():
        return "not labelled with arterial territories (the arterial atlas was not found)."
    return "territories from the Liu et al. (2023) arterial atlas."


def _short(value, limit=12):
    if isinstance(value, (list, tuple)) and len(value) > limit:
        head = ", ".join(map(str, value[:limit]))
        return f"{len(value)} items: {head}, ..."
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_short(v)}" for k, v in value.items()) or "none"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _df_table(df, max_rows, what):
    if df is None or len(df) == 0:
        return f'<p class="note">No {_esc(what)}.</p>'
    shown = df.head(max_rows)

    def fmt(v):
        # whole numbers (volumes in mm^3, coordinates) in full; others to 4 significant digits
        if np.isfinite(v) and float(v).is_integer() and abs(v) < 1e12:
            return f"{int(v)}"
        return f"{v:.4g}"

    out = shown.to_html(index=False, border=0, float_format=fmt, na_rep="n/a", escape=True)
    if len(df) > max_rows:
        rest = df.iloc[max_rows:].to_html(index=False, border=0, float_format=fmt,
                                          na_rep="n/a", escape=True)
        out += (f"<details><summary>{len(df) - max_rows} more {_esc(what)}</summary>"
                f"{rest}</details>")
    return out


def _analysed_overlap(result, cohort, overlap_img):
    """Choose the overlap image and a caption: given image > cohort (analysed subjects) > result."""
    from .plotting import overlap_image

    if overlap_img is not None:
        return overlap_img, "Lesion overlap (as given)."
    if cohort is not None:
        analysed = [s for s in result.provenance.get("subjects") or [] if s in cohort]
        subjects = analysed or None
        n = len(analysed) if analysed else len(cohort)
        who = "analysed subjects" if analysed else "cohort subjects"
        return overlap_image(cohort, subjects), f"Number of {who} lesioned per voxel (n = {n})."
    return result.n_lesioned, "Number of analysed subjects lesioned per voxel (from the result)."


def _section(anchor, title, body):
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{body}</section>'


def report_html(result, cohort=None, overlap_img=None, *, title=None, atlas="arterial",
                data_dir=None, dpi=90, max_rows=50, cohort_excluded=None):
    """Render the HTML text of the report (see :func:`make_report`)."""
    from . import __version__, plotting

    pr, pv = result.params, result.provenance
    title = title or f"VLSM report: {pr.get('score', 'score')} ({pr.get('method', '')})"
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = []

    # summary
    body = _kv_grid(result._overview())
    if result.n_significant == 0:
        body += '<p class="warn">No voxel is significant at this correction and alpha.</p>'
    parts.append(_section("summary", "Summary", body))

    # cohort
    body = ""
    if cohort is not None:
        body += f"<h3>Description</h3><pre>{_esc(cohort.describe())}</pre>"
        cohort_excluded = cohort.excluded
    elif cohort_excluded is not None:
        body += '<p class="note">No cohort was given to the report: its description is not ' \
                'shown; the drop list is the one saved with the result.</p>'
    else:
        body += '<p class="note">No cohort was given to the report; its description and ' \
                'drop list are not shown.</p>'
    if cohort is not None or cohort_excluded is not None:
        body += "<h3>Excluded when loading the cohort</h3>"
        body += _df_table(None if cohort_excluded is None else pd.DataFrame(cohort_excluded), 20,
                          "excluded subjects")
    excluded = result.excluded
    body += "<h3>Excluded from this analysis</h3>"
    body += _df_table(excluded, 20, "excluded subjects")
    parts.append(_section("cohort", "Cohort", body))

    # overlap
    img, caption = _analysed_overlap(result, cohort, overlap_img)
    body = _figure(lambda: plotting.plot_overlap(img, title="Lesion overlap"), "lesion overlap",
                   dpi)
    peak = float(np.max(np.asanyarray(img.dataobj)))  # a count, or a fraction if given so
    body += f'<p class="note">{_esc(caption)} Maximum {peak:.4g}.</p>'
    parts.append(_section("overlap", "Lesion overlap", body))

    # maps
    body = ""
    if result.n_significant == 0:
        body += ('<p class="warn">No voxel survived the correction; the unthresholded z map is '
                 'shown for orientation only.</p>')
        body += _figure(lambda: plotting.plot_stat_map(
            result, "z", thresholded=False, display_mode="z", cut_coords=7,
            title="z (unthresholded, nothing significant)"), "unthresholded z map", dpi)
    else:
        two_sided = result.params.get("alternative", "two-sided") == "two-sided"
        thr = ("" if result.threshold is None else
               f" ({'|z|' if two_sided else 'z'} threshold {result.threshold:.3g})")
        body += f'<p class="note">Significant voxels only{_esc(thr)}: z map.</p>'
        body += _figure(lambda: plotting.plot_stat_map(result, "z"), "thresholded z map, ortho",
                        dpi)
        body += _figure(lambda: plotting.plot_stat_map(result, "z", display_mode="z",
                                                       cut_coords=7),
                        "thresholded z map, axial slices", dpi)
        body += _figure(lambda: plotting.plot_glass_brain(result, "z"),
                        "thresholded z map, glass brain", dpi)
    parts.append(_section("maps", "Thresholded maps", body))

    # null
    if result.null_distribution is not None:
        body = _figure(lambda: plotting.plot_null_distribution(result), "permutation null", dpi)
    else:
        body = '<p class="note">No permutation null (no permutations were run).</p>'
    parts.append(_section("null", "Permutation null", body))

    # clusters
    table = result.clusters(atlas=atlas, data_dir=data_dir)
    body = ('<p class="note">Connected clusters (26-connectivity) of significant voxels, '
            'positive and negative apart, largest first; peak coordinates in MNI mm; '
            f'{_territory_caption(table, atlas)}</p>')
    numbers, territories = _cluster_tables(table)
    body += f'<div class="wide">{_df_table(numbers, max_rows, "clusters")}</div>'
    if territories is not None and len(territories):
        body += "<h3>Arterial territories</h3>" + _df_table(territories, max_rows, "clusters")
    parts.append(_section("clusters", "Clusters", body))

    # parameters / provenance
    parts.append(_section("parameters", "Parameters", _kv_table(pr.items())))
    prov = [(k, v) for k, v in pv.items() if k not in ("subjects", "excluded")]
    body = _kv_table(prov)
    subjects = pv.get("subjects") or []
    if subjects:
        body += (f"<details><summary>{len(subjects)} analysed subjects</summary>"
                 f"<p>{_esc(', '.join(map(str, subjects)))}</p></details>")
    parts.append(_section("provenance", "Provenance", body))

    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t in _SECTIONS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1>"
        f'<p class="muted">Generated by lsm {_esc(__version__)} on {_esc(created)}.</p>'
        f"<nav>{nav}</nav></header>"
        + "".join(parts)
        + "</body></html>\n"
    )


def make_report(result, path, cohort=None, overlap_img=None, *, title=None, overwrite=False,
                atlas="arterial", data_dir=None, dpi=90, max_rows=50, cohort_excluded=None):
    """Write one self-contained HTML report of a VLSM result.

    Parameters
    ----------
    result : VLSMResult
    path : str or Path
        The HTML file to write.
    cohort : Cohort, optional
        Adds the cohort description and drop list, and the overlap map of the analysed
        subjects (from ``cohort.lesion_matrix()``).
    overlap_img : Nifti1Image, optional
        Overlap map to show instead (default: from ``cohort``, else ``result.n_lesioned``).
    title : str, optional
    overwrite : bool
        Replace an existing file; otherwise :class:`~lsm.exceptions.OutputExistsError`.
    atlas, data_dir
        Passed to :meth:`lsm.VLSMResult.clusters` for the territory labels.
    dpi : int
        Resolution of the embedded figures.
    max_rows : int
        Cluster rows shown before the rest is folded away.
    cohort_excluded : DataFrame, optional
        Subjects excluded while loading the cohort (columns ``subject``, ``source``,
        ``reason``), shown when no ``cohort`` is given, e.g. the ``excluded.tsv`` that
        ``lsm vlsm`` saved beside the result.

    Returns
    -------
    path : Path
        The file written (atomically: a temporary file renamed into place).
    """
    path = _check_target(path, overwrite)  # fail before the slow drawing
    text = report_html(result, cohort, overlap_img, title=title, atlas=atlas,
                       data_dir=data_dir, dpi=dpi, max_rows=max_rows, cohort_excluded=cohort_excluded)
    atomic_write_text(path, text, overwrite=overwrite)
    logger.info("Wrote report %s", display_path(path))
    return Path(path)
