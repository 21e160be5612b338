"""The result of a multivariate SVR lesion-symptom mapping (:func:`lsm.svr_lsm`)."""

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ._derivatives import dataset_description, write_json, write_nifti, write_tsv
from ._result import AnalysisResult, Summary, excluded_frame
from ._utils import atomic_output_dir
from .results import _decode_float, _encode_float, _image, _read_null, _write_null

__all__ = ["SVRLSMResult"]

_PREFIX = "svrlsm"
_RESULT_JSON = f"{_PREFIX}.json"
_NULL_TSV = f"{_PREFIX}_null.tsv"
_EXCLUDED_TSV = f"{_PREFIX}_excluded.tsv"
_FORMAT_VERSION = 1

#: attribute -> (file name, description) of every map.
_MAPS = {
    "beta": (f"{_PREFIX}_stat-beta_statmap.nii.gz",
             "SVR beta: back-projected dual coefficients (sum_i alpha_i x_i) on the processed "
             "lesion data; positive where damage goes with a higher score; 0 where untested."),
    "beta_scaled": (f"{_PREFIX}_stat-betascaled_statmap.nii.gz",
                    "10 * beta / max|beta|, the units of the SVR-LSM GUI's and LESYMAP's maps."),
    "z": (f"{_PREFIX}_stat-z_statmap.nii.gz",
          "Standardised beta: beta divided by its standard deviation over the observed and permuted maps."),
    "p": (f"{_PREFIX}_stat-p_statmap.nii.gz",
          "Uncorrected permutation p-value of beta against the voxel's own null (1 where untested)."),
    "p_corrected": (f"{_PREFIX}_stat-pcorrected_statmap.nii.gz",
                    "Corrected permutation p-value (1 where untested)."),
    "significant": (f"{_PREFIX}_desc-significant_mask.nii.gz", "Voxels significant after correction (1)."),
    "mask_img": (f"{_PREFIX}_desc-tested_mask.nii.gz", "Voxels that were tested (1), else 0."),
    "n_lesioned": (f"{_PREFIX}_desc-nlesioned_map.nii.gz", "Number of lesioned analysed subjects per voxel."),
}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SVRLSMResult(AnalysisResult):
    """Maps, permutation null, parameters and provenance of an SVR-LSM analysis.

    Attributes
    ----------
    beta, beta_scaled, z, p, p_corrected : Nifti1Image of float64
        See the descriptions of ``_MAPS`` (``beta_scaled`` is ``10 * beta /
        max|beta|``, the peers' units; ``z`` the standardised beta).
    significant, mask_img : Nifti1Image of uint8
        Significant voxels after correction; tested voxels.
    n_lesioned : Nifti1Image of int32
    threshold : float or None
        Standardised beta above which a voxel is FWE (CFWER) significant.
    null_distribution : ndarray of shape (n_permutations,)
        Per permutation, the maximum (v-th largest) standardised beta, or the largest
        cluster in voxels (``cluster_size``).
    params, provenance : dict
    excluded : DataFrame
        Subjects left out (columns ``subject``, ``reason``).
    extra_maps : dict of str to Nifti1Image
        ``{"cluster_size": ...}`` for the cluster correction.
    """

    beta: nib.Nifti1Image
    beta_scaled: nib.Nifti1Image
    z: nib.Nifti1Image
    p: nib.Nifti1Image
    p_corrected: nib.Nifti1Image
    significant: nib.Nifti1Image
    mask_img: nib.Nifti1Image
    n_lesioned: nib.Nifti1Image
    threshold: float | None = None
    null_distribution: np.ndarray | None = None
    params: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)
    excluded: pd.DataFrame = dataclasses.field(default_factory=excluded_frame)
    extra_maps: dict = dataclasses.field(default_factory=dict)

    _title = "SVR lesion-symptom mapping"

    @classmethod
    def from_arrays(cls, *, affine, shape, tested, maps, n_lesioned, extra_maps=None, **fields):
        """Place the tested-voxel arrays of ``maps`` (name -> (n_tested,)) on the grid."""
        size = int(np.prod(shape))

        def place(values, fill, dtype):
            out = np.full(size, fill, dtype=dtype)
            out[tested] = values
            return _image(out.reshape(shape), affine)

        imgs = {name: place(maps[name], 1.0 if name.startswith("p") else 0.0, np.float64)
                for name in ("beta", "beta_scaled", "z", "p", "p_corrected")}
        imgs["significant"] = place(maps["significant"].astype(np.uint8), 0, np.uint8)
        imgs["mask_img"] = place(np.ones(int(tested.sum()), dtype=np.uint8), 0, np.uint8)
        imgs["n_lesioned"] = _image(np.asarray(n_lesioned, dtype=np.int32).reshape(shape), affine)
        extra = {k: place(v, 0.0, np.float64) for k, v in (extra_maps or {}).items()}
        return cls(**imgs, extra_maps=extra, **fields)

    # ----------------------------------------------------------------- contract
    @property
    def affine(self):
        """Affine of the grid."""
        return self.beta.affine

    @property
    def shape(self):
        """Shape of the grid."""
        return self.beta.shape

    @property
    def n_tested(self):
        """Number of tested voxels."""
        return int(np.asarray(self.mask_img.dataobj).sum())

    @property
    def n_significant(self):
        """Number of significant voxels."""
        return int(np.asarray(self.significant.dataobj).astype(bool).sum())

    def thresholded(self, which="beta_scaled"):
        """Map ``which`` with the non-significant voxels set to 0."""
        img = getattr(self, which) if which != "cluster_size" else self.extra_maps[which]
        data = np.asarray(img.dataobj) * np.asarray(self.significant.dataobj).astype(bool)
        return _image(data.astype(np.float64), self.affine)

    def summary(self):
        """Text summary: model, lesion-volume control, inference and what was found."""
        pr, pv = self.params, self.provenance
        lines = [
            f"SVR-LSM of {pr.get('score')!r}: epsilon-SVR, {pr.get('kernel')} kernel, C={pr.get('C')}, "
            f"gamma={pr.get('gamma')} (exp(-gamma*||xi-xj||^2)), epsilon={pr.get('epsilon')}",
            f"lesion_volume={pr.get('lesion_volume')!r}, covariates={pr.get('covariates')}, voxel columns "
            f"z-scored: {'yes' if pr.get('standardize') else 'no'}, score rescaled to range "
            f"{pr.get('score_range')}",
            f"subjects analysed: {pv.get('n_subjects')}, excluded: {len(self.excluded)}",
            f"voxels tested: {self.n_tested} (min_lesioned={pr.get('min_lesioned')!r} -> "
            f"{pr.get('min_lesioned_count')} subjects), unique patterns: {pv.get('n_unique_patterns')}",
            f"support vectors: {pv.get('n_support_vectors')}, kernel mean off-diagonal / diagonal: "
            f"{_ratio(pv):.3g}",
            f"inference: {pr.get('n_permutations')} permutations of the score, correction "
            f"{pr.get('correction')!r}"
            + (f" (clusters at p < {pr.get('cluster_forming_p')})" if pr.get("correction") == "cluster_size" else "")
            + f", alpha={pr.get('alpha')}, alternative={pr.get('alternative')!r}",
            f"significant voxels: {self.n_significant}",
        ]
        if pv.get("near_diagonal_kernel"):
            lines.append("note: the kernel is near-diagonal; beta is then close to a voxel-wise statistic "
                         "and adds little multivariate information.")
        if pr.get("cv_search"):
            lines.append(f"C and gamma chosen by cross-validation: {pv.get('cv_best')}")
        return Summary("\n".join(lines))

    def plot(self, which="beta_scaled", thresholded=True, **kwargs):
        """Glass brain of ``which`` (the significant voxels only when ``thresholded``)."""
        from nilearn import plotting

        title = kwargs.pop("title", f"SVR-LSM {self.params.get('score')}: {which}"
                           + (f" | {self.params.get('correction')} p<={self.params.get('alpha')}"
                              if thresholded else ""))
        if thresholded and self.n_significant == 0:
            return plotting.plot_glass_brain(None, title=f"{title} | no significant voxel", **kwargs)
        img = self.thresholded(which) if thresholded else getattr(self, which)
        for key, value in (("threshold", 1e-12), ("plot_abs", False), ("colorbar", True),
                           ("cmap", "RdBu_r"), ("symmetric_cbar", True)):
            kwargs.setdefault(key, value)
        return plotting.plot_glass_brain(img, title=title, **kwargs)

    def _html_body(self):
        """Summary, the glass brains of the significant and of the whole scaled beta map."""
        import html

        from .report import _figure

        parts = [f"<pre>{html.escape(str(self.summary()))}</pre>",
                 _figure(lambda: self.plot("beta_scaled", thresholded=True), "significant beta (scaled)", 90),
                 _figure(lambda: self.plot("beta_scaled", thresholded=False), "beta (scaled), every voxel", 90)]
        if len(self.excluded):
            parts.append("<p>Excluded subjects</p>" + self.excluded.to_html(index=False))
        return "\n".join(parts)

    # ----------------------------------------------------------------- save / load
    def save(self, path, overwrite=False):
        """Write the maps (NIfTI + JSON sidecars), the null, the exclusions and the parameters.

        Parameters
        ----------
        path : str or Path
            Output folder, written atomically.
        overwrite : bool, default=False

        Returns
        -------
        path : Path
        """
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            files = {}
            for name, (fname, description) in _MAPS.items():
                write_nifti(getattr(self, name), tmp / fname, description)
                files[name] = fname
            extra = {}
            for name, img in self.extra_maps.items():
                fname = f"{_PREFIX}_stat-{name.replace('_', '')}_statmap.nii.gz"
                write_nifti(img, tmp / fname, f"{name} of the cluster each voxel belongs to (0 outside).")
                extra[name] = fname
            if self.null_distribution is not None:
                _write_null(np.asarray(self.null_distribution, dtype=np.float64), tmp / _NULL_TSV)
                write_json(tmp / _NULL_TSV.replace(".tsv", ".json"),
                           {"null": {"Description": self.provenance.get("null_statistic", "null statistic")}})
            write_tsv(self.excluded, tmp / _EXCLUDED_TSV, index=False,
                      descriptions={"subject": "Subject left out.", "reason": "Why."})
            write_json(tmp / _RESULT_JSON, {
                "FormatVersion": _FORMAT_VERSION,
                "Description": "SVR lesion-symptom mapping result (lsm).",
                "threshold": _encode_float(self.threshold),
                "files": files, "extra_maps": extra,
                "null_distribution": _NULL_TSV if self.null_distribution is not None else None,
                "params": self.params, "provenance": self.provenance,
            })
            write_json(tmp / "dataset_description.json", dataset_description("lsm SVR lesion-symptom mapping"))
        return Path(path)

    @classmethod
    def load(cls, path):
        """Read a folder written by :meth:`save`."""
        path = Path(path)
        meta_file = path / _RESULT_JSON
        if not meta_file.is_file():
            raise FileNotFoundError(f"{str(meta_file)!r} not found: {str(path)!r} is not a folder written "
                                    "by SVRLSMResult.save().")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("FormatVersion", 0) > _FORMAT_VERSION:
            raise ValueError(f"{str(meta_file)!r} has format version {meta.get('FormatVersion')!r}; this "
                             f"lsm reads versions up to {_FORMAT_VERSION}. Upgrade lsm to read it.")

        def read(fname):
            img = nib.load(path / fname)
            return _image(np.asanyarray(img.dataobj).copy(), img.affine)

        imgs = {name: read(fname) for name, fname in meta["files"].items()}
        extra = {name: read(fname) for name, fname in meta.get("extra_maps", {}).items()}
        null = _read_null(path / meta["null_distribution"], "float64") if meta.get("null_distribution") else None
        excluded = pd.read_csv(path / _EXCLUDED_TSV, sep="\t", dtype=str, keep_default_na=False)
        return cls(**imgs, threshold=_decode_float(meta.get("threshold")), null_distribution=null,
                   params=meta.get("params", {}), provenance=meta.get("provenance", {}),
                   excluded=excluded_frame(excluded), extra_maps=extra)


def _ratio(provenance):
    diag = provenance.get("kernel_mean_diagonal") or 0.0
    return (provenance.get("kernel_mean_off_diagonal") or 0.0) / diag if diag else float("nan")
