"""The result of :func:`lsm.registration.register_lesions`: MNI lesion masks, transforms, QC table and page."""

import base64
import dataclasses
import html
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._result import AnalysisResult, Summary
from .._result import make_provenance as _make_provenance

__all__ = ["RegistrationResult", "make_provenance", "bids_name"]

QC_TABLE = "qc.tsv"
QC_PAGE = "qc.html"


def make_provenance(seed, n_jobs, t0):
    """Provenance of a registration run (the result contract's, with the ANTsPy version)."""
    return _make_provenance(seed=int(seed), n_jobs=n_jobs, t0=t0, packages=("ants",))


def bids_name(subject, space, suffix, ext, resolution=None, desc=None):
    """``sub-X_space-Y[_res-2][_desc-Z]_suffix.ext``."""
    parts = [subject, f"space-{space}"]
    if resolution is not None:
        parts.append(f"res-{resolution:g}")
    if desc:
        parts.append(f"desc-{desc}")
    return "_".join(parts) + f"_{suffix}{ext}"


@dataclasses.dataclass(repr=False)
class RegistrationResult(AnalysisResult):
    """Lesion masks registered to MNI space, with their transforms and QC.

    Attributes
    ----------
    lesions : dict of str to Nifti1Image
        Subject -> binary lesion mask (uint8) on the output grid, in ``params["template_space"]``.
    qc : DataFrame
        One row per registered subject (columns described in ``QC_COLUMNS``), with
        ``flagged`` and ``flag_reason``.
    params : dict
        Every registration parameter as used.
    provenance : dict
        ``lsm_version``, ``versions``, ``random_state`` (the ANTs seed), ``n_jobs``,
        ``runtime_s``, ``created``.
    excluded : DataFrame
        ``subject``, ``reason``: subjects whose registration failed or had no image/mask.
    transforms : dict
        Subject -> {"affine": bytes of the ANTs .mat, "warp": bytes of the warp .nii.gz}.
        Applied in the order warp, affine (``ants.apply_transforms`` convention).
    overlays : dict of str to bytes
        Subject -> PNG of the warped scan with template contours and the lesion.
    """

    lesions: dict
    qc: pd.DataFrame
    params: dict
    provenance: dict
    excluded: pd.DataFrame
    transforms: dict = dataclasses.field(default_factory=dict, repr=False)
    overlays: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def template_space(self):
        return self.params.get("template_space")

    @property
    def flagged(self):
        """Boolean Series: subjects whose QC is out of range."""
        return self.qc["flagged"].astype(bool)

    @property
    def significant(self):
        """The flagged subjects (the units this result singles out), as a boolean Series."""
        return self.flagged

    def to_dataframe(self):
        """Return the QC table (one row per registered subject)."""
        return self.qc.copy()

    def summary(self):
        qc = self.qc
        lines = [f"Lesion registration to {self.template_space} ({self.params.get('modality')}, "
                 f"{self.params.get('resolution'):g} mm): {len(qc)} registered, {int(self.flagged.sum())} flagged, "
                 f"{len(self.excluded)} excluded"]
        if len(qc):
            for col, label in (("brain_dice", "brain Dice"), ("volume_ratio_nonlinear", "volume ratio (SyN)"),
                               ("runtime_s", "runtime s")):
                v = qc[col].astype(float)
                lines.append(f"  {label:20s} median {v.median():.3f}  range {v.min():.3f}-{v.max():.3f}")
        for s, reason in qc.loc[self.flagged, "flag_reason"].items():
            lines.append(f"  flagged {s}: {reason}")
        for _, row in self.excluded.iterrows():
            lines.append(f"  excluded {row['subject']}: {row['reason']}")
        lines.append(f"  seed {self.provenance.get('random_state')}, lsm {self.provenance.get('lsm_version')}")
        return Summary("\n".join(lines))

    def __repr__(self):
        return (f"<RegistrationResult: {len(self.lesions)} subjects in {self.template_space}, "
                f"{int(self.flagged.sum()) if len(self.qc) else 0} flagged, {len(self.excluded)} excluded>")

    def _repr_html_(self):
        return f"<pre>{html.escape(str(self.summary()))}</pre>"

    def plot(self, subject=None):
        """Matplotlib Figure with the QC overlay of ``subject`` (default: the first)."""
        import matplotlib.image as mpimg
        from matplotlib.figure import Figure

        if not self.overlays:
            raise ValueError("This result has no QC overlay (no subject was registered).")
        subject = subject or sorted(self.overlays)[0]
        if subject not in self.overlays:
            raise KeyError(f"No QC overlay for {subject!r}; subjects: {sorted(self.overlays)[:5]}...")
        import io

        png = mpimg.imread(io.BytesIO(self.overlays[subject]), format="png")
        fig = Figure(figsize=(png.shape[1] / 70, png.shape[0] / 70))
        ax = fig.add_axes([0, 0, 1, 1])
        ax.imshow(png)
        ax.set_axis_off()
        return fig

    def to_cohort(self, phenotype, **kwargs):
        """Build an MNI :class:`~lsm.Cohort` of the registered masks, joined with ``phenotype``.

        The cohort's ``metadata`` records ``template_space`` and the QC table; flagged
        subjects stay in (see ``qc``), excluded ones are listed in ``Cohort.excluded``.
        """
        from ..cohort import load_cohort

        cohort = load_cohort(dict(self.lesions), phenotype, space="MNI", **kwargs)
        cohort.metadata = {**(getattr(cohort, "metadata", None) or {}), "template_space": self.template_space,
                           "registration_qc": self.qc, "registration_excluded": self.excluded}
        if len(self.excluded):
            extra = pd.DataFrame({"subject": self.excluded["subject"], "source": "registration",
                                  "reason": self.excluded["reason"]})
            cohort.excluded = pd.concat([cohort.excluded, extra], ignore_index=True)
        return cohort

    # ---------------------------------------------------------------- outputs
    def to_html(self, path=None, overwrite=False):
        """Render the QC page (one self-contained HTML file); return the HTML text when ``path`` is None."""
        from ..report import _CSS

        text = _qc_page(self, _CSS)
        if path is None:
            return text
        from .._utils import atomic_write_text

        return atomic_write_text(path, text, overwrite=overwrite)

    def save(self, path, overwrite=False):
        """Write a BIDS-derivatives folder: masks, transforms, QC table and page.

        Layout: ``sub-X/anat/sub-X_space-<tpl>_res-<r>_desc-lesion_mask.nii.gz`` (+ JSON
        sidecar), ``sub-X/xfm/sub-X_from-native_to-<tpl>_mode-image_xfm.mat`` and
        ``..._desc-warp_xfm.nii.gz``, ``sub-X/figures/sub-X_desc-qc_overlay.png``,
        ``qc.tsv`` (+ sidecar), ``qc.html``, ``excluded.tsv``, ``registration.json``,
        ``dataset_description.json``. Written atomically.
        """
        from .._utils import atomic_output_dir

        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            self._write(tmp)
        return Path(path)

    def _write(self, folder):
        for s in sorted(self.lesions):
            self.write_subject(folder, s)
        self.write_tables(folder)

    def write_tables(self, folder):
        """Write the QC table and page, the excluded list and the JSON files into ``folder``."""
        from .._derivatives import dataset_description, write_json, write_tsv
        from .._utils import atomic_write_text
        from ._register import QC_COLUMNS

        folder = Path(folder)
        space, res = self.template_space, self.params.get("resolution")
        write_tsv(self.qc, folder / QC_TABLE, QC_COLUMNS, overwrite=True, params=self.params)
        write_tsv(self.excluded, folder / "excluded.tsv", {"subject": "Subject", "reason": "Why it is not registered"},
                  index=False, overwrite=True)
        write_json(folder / "registration.json", {"params": self.params, "provenance": self.provenance},
                   overwrite=True)
        desc = dataset_description("lsm lesion registration", self.provenance)
        desc["GeneratedBy"][0]["Description"] = f"ANTs registration to {space}, {res} mm"
        write_json(folder / "dataset_description.json", desc, overwrite=True)
        atomic_write_text(folder / QC_PAGE, self.to_html(), overwrite=True)

    def write_subject(self, folder, s):
        """Write one subject's mask, transforms and overlay under ``folder/sub-X``."""
        from .._derivatives import write_nifti

        folder = Path(folder)
        space, res = self.template_space, self.params.get("resolution")
        anat = folder / s / "anat"
        xfm = folder / s / "xfm"
        fig = folder / s / "figures"
        for d in (anat, xfm, fig):
            d.mkdir(parents=True, exist_ok=True)
        write_nifti(self.lesions[s], anat / bids_name(s, space, "mask", ".nii.gz", res, "lesion"),
                    f"Lesion mask registered to {space} (ANTs affine + lesion-masked SyN)", overwrite=True,
                    Space=space, Resolution=f"{res:g} mm", Modality=self.params.get("modality"),
                    Interpolation=self.params.get("interpolation"))
        tx = self.transforms.get(s, {})
        if "affine" in tx:
            (xfm / f"{s}_from-native_to-{space}_mode-image_xfm.mat").write_bytes(tx["affine"])
        if "warp" in tx:
            (xfm / f"{s}_from-native_to-{space}_mode-image_desc-warp_xfm.nii.gz").write_bytes(tx["warp"])
        if s in self.overlays:
            (fig / f"{s}_desc-qc_overlay.png").write_bytes(self.overlays[s])

    @classmethod
    def load(cls, path):
        """Read a folder written by :meth:`save` (or ``lsm register``)."""
        import nibabel as nib

        path = Path(path)
        meta = json.loads((path / "registration.json").read_text())
        params, provenance = meta["params"], meta["provenance"]
        qc = pd.read_csv(path / QC_TABLE, sep="\t", na_values=["n/a"], keep_default_na=False,
                         index_col="participant_id", dtype={"flag_reason": str, "hemisphere": str})
        qc["flag_reason"] = qc["flag_reason"].astype(object).where(qc["flag_reason"].notna(), "").astype(str)
        for col in ("flagged", "hemisphere_kept"):
            qc[col] = qc[col].astype(str).str.lower().eq("true")
        excluded = pd.read_csv(path / "excluded.tsv", sep="\t", dtype=str, keep_default_na=False)
        if excluded.empty:
            excluded = pd.DataFrame(columns=["subject", "reason"])
        space, res = params["template_space"], params["resolution"]
        lesions, transforms, overlays = {}, {}, {}
        for s in qc.index:
            mask = path / s / "anat" / bids_name(s, space, "mask", ".nii.gz", res, "lesion")
            img = nib.load(str(mask))
            lesions[s] = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.uint8), img.affine)
            xfm = path / s / "xfm"
            tx = {}
            for key, name in (("affine", f"{s}_from-native_to-{space}_mode-image_xfm.mat"),
                              ("warp", f"{s}_from-native_to-{space}_mode-image_desc-warp_xfm.nii.gz")):
                if (xfm / name).exists():
                    tx[key] = (xfm / name).read_bytes()
            transforms[s] = tx
            png = path / s / "figures" / f"{s}_desc-qc_overlay.png"
            if png.exists():
                overlays[s] = png.read_bytes()
        return cls(lesions=lesions, qc=qc, params=params, provenance=provenance, excluded=excluded,
                   transforms=transforms, overlays=overlays)


def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def _qc_page(result, css):
    esc = html.escape
    qc = result.qc
    when = result.provenance.get("created") or time.strftime("%Y-%m-%d")
    rows = []
    cols = [c for c in qc.columns if c != "flag_reason"]
    head = "".join(f"<th>{esc(c)}</th>" for c in ["participant_id"] + cols + ["flag_reason"])
    for s, r in qc.iterrows():
        style = ' style="background:#fff4e0"' if r["flagged"] else ""
        cells = "".join(f"<td>{esc(_fmt(r[c]))}</td>" for c in cols)
        rows.append(f"<tr{style}><td><a href='#{esc(s)}'>{esc(s)}</a></td>{cells}<td>{esc(r['flag_reason'])}</td></tr>")
    excluded = "".join(f"<tr><td>{esc(r['subject'])}</td><td>{esc(r['reason'])}</td></tr>"
                       for _, r in result.excluded.iterrows())
    figures = []
    for s in qc.index:
        if s not in result.overlays:
            continue
        b64 = base64.b64encode(result.overlays[s]).decode("ascii")
        flag = qc.loc[s, "flag_reason"]
        note = f"<p class='warn'>Flagged: {esc(flag)}</p>" if qc.loc[s, "flagged"] else ""
        figures.append(f"<h3 id='{esc(s)}'>{esc(s)}</h3>{note}<img src='data:image/png;base64,{b64}' "
                       f"alt='QC overlay of {esc(s)}'>")
    params = "".join(f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
                     for k, v in result.params.items() if k != "target_affine")
    prov = "".join(f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
                   for k, v in result.provenance.items())
    n_flag = int(result.flagged.sum()) if len(qc) else 0
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lesion registration QC</title>
<style>{css}</style></head><body>
<header><h1>Lesion registration QC</h1>
<p class="muted">lsm {esc(result.provenance.get('lsm_version', ''))} &middot; {esc(when)}</p></header>
<nav><a href="#summary">Summary</a><a href="#table">QC table</a><a href="#excluded">Excluded</a>
<a href="#overlays">Overlays</a><a href="#parameters">Parameters</a></nav>
<h2 id="summary">Summary</h2><pre>{esc(str(result.summary()))}</pre>
<p class="note">Template {esc(str(result.template_space))}; each overlay shows the warped scan (grey), the template
brain outline (blue) and the warped lesion (red). Flagged rows are highlighted: check them before analysis.</p>
{"<p class='warn'>" + str(n_flag) + " subject(s) flagged.</p>" if n_flag else ""}
<h2 id="table">QC table</h2><div class="wide"><table><thead><tr>{head}</tr></thead>
<tbody>{''.join(rows)}</tbody></table></div>
<h2 id="excluded">Excluded</h2>
{"<table><thead><tr><th>subject</th><th>reason</th></tr></thead><tbody>" + excluded + "</tbody></table>"
 if excluded else "<p class='note'>No subject excluded.</p>"}
<h2 id="overlays">Overlays</h2>{''.join(figures) or "<p class='note'>No overlay.</p>"}
<h2 id="parameters">Parameters</h2><table class="kv">{params}</table>
<h2>Provenance</h2><table class="kv">{prov}</table>
</body></html>
"""
