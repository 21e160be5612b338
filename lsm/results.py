"""The result of a voxel-based lesion-symptom mapping analysis.

:class:`VLSMResult` is built by :func:`lsm.vlsm` through :meth:`VLSMResult.from_arrays`
from the flat arrays of the array-only engine, and wraps them as
:class:`nibabel.nifti1.Nifti1Image` maps on the cohort grid. It renders a text
:meth:`~VLSMResult.summary` and a notebook table, lists connected clusters of
significant voxels labelled with arterial territories (:meth:`~VLSMResult.clusters`),
and saves to / loads from a BIDS-derivatives-style folder.
"""

import dataclasses
import functools
import html
import json
import logging
import math
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from ._derivatives import dataset_description, json_text
from ._derivatives import json_safe as _json_safe
from ._result import AnalysisResult, Summary, excluded_frame
from ._utils import atomic_output_dir, display_path
from ._validation import check_option
from .exceptions import AnalysisError, LSMError

__all__ = ["VLSMResult", "Summary"]

logger = logging.getLogger("lsm")

#: File name prefix of every file written by :meth:`VLSMResult.save`.
_PREFIX = "vlsm"
_RESULT_JSON = f"{_PREFIX}.json"
_NULL_TSV = f"{_PREFIX}_null.tsv"
_CLUSTERS_TSV = f"{_PREFIX}_clusters.tsv"
_EXCLUDED_TSV = f"{_PREFIX}_excluded.tsv"
_FORMAT_VERSION = 1

#: attribute -> (file name, one-line description) of the core maps.
_CORE_MAPS = {
    "stat": (f"{_PREFIX}_stat-stat_statmap.nii.gz",
             "Raw test statistic; positive when lesioned subjects have higher scores."),
    "z": (f"{_PREFIX}_stat-z_statmap.nii.gz", "Statistic converted to a signed z."),
    "p": (f"{_PREFIX}_stat-p_statmap.nii.gz", "Uncorrected parametric p-value (1 where untested)."),
    "p_corrected": (f"{_PREFIX}_stat-pcorrected_statmap.nii.gz",
                    "Corrected p-value (1 where untested or not applicable)."),
    "n_lesioned": (f"{_PREFIX}_desc-nlesioned_map.nii.gz",
                   "Number of lesioned subjects per voxel (all voxels)."),
    "significant": (f"{_PREFIX}_desc-significant_mask.nii.gz",
                    "Voxels significant after correction (1), else 0."),
    "mask_img": (f"{_PREFIX}_desc-tested_mask.nii.gz", "Voxels that were tested (1), else 0."),
}

_CONNECTIVITY = {6: 1, 18: 2, 26: 3}
_CLUSTER_COLUMNS = {
    "cluster": "Cluster number, largest first.",
    "sign": "+1 for a cluster of positive z, -1 for negative z.",
    "n_voxels": "Number of voxels.",
    "volume_mm3": "Volume in mm^3.",
    "x_mm": "Peak (largest |z|) x, MNI mm.",
    "y_mm": "Peak y, MNI mm.",
    "z_mm": "Peak z, MNI mm.",
    "peak_stat": "Raw statistic at the peak.",
    "peak_z": "z at the peak.",
    "peak_p": "Uncorrected p at the peak.",
    "peak_p_corrected": "Corrected p at the peak.",
    "territory_level1": "Arterial territory (Liu et al. 2023, level 1) at the peak.",
    "territory_level1_name": "Full name of territory_level1.",
    "territory_level2": "Arterial territory (level 2) at the peak.",
    "territories_level1": "Share of the cluster's voxels in each level-1 territory.",
    "territories_level2": "Share of the cluster's voxels in each level-2 territory.",
}
_UNAVAILABLE = "unavailable"


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
#: How :meth:`VLSMResult.save` spells a non-finite float in ``vlsm.json`` (JSON has no
#: NaN or Infinity): the strings ``"inf"``, ``"-inf"`` and ``"nan"``, read back by
#: :meth:`VLSMResult.load`. An observed maximum statistic is +inf under perfect separation.
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _encode_float(value):
    """``value`` (None, a float or a list of floats) with non-finite floats as strings."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_encode_float(v) for v in value]
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode_float(value):
    """Inverse of :func:`_encode_float` (null stays None)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_decode_float(v) for v in value]
    if isinstance(value, str):
        if value not in _NONFINITE:
            raise ValueError(f"Expected a number or one of {sorted(_NONFINITE)}, got {value!r}.")
        return _NONFINITE[value]
    return float(value)


def _bids_label(name):
    """Turn a map name (``"tfce"``, ``"neg_log10_p"``) into an alphanumeric BIDS label."""
    label = re.sub(r"[^0-9a-zA-Z]", "", str(name))
    if not label:
        raise ValueError(f"Cannot make a file name from the map name {name!r}: use letters/digits.")
    return label


def _check_flat(name, arr, size, dtype_kind):
    arr = np.asarray(arr)
    if arr.ndim != 1 or arr.shape[0] != size:
        raise ValueError(
            f"VLSMResult.from_arrays: {name!r} must be a 1D array of length {size}, "
            f"got shape {arr.shape}."
        )
    if dtype_kind == "b":
        if arr.dtype != bool:
            uniq = np.unique(arr)
            if not np.isin(uniq, [0, 1]).all():
                raise ValueError(
                    f"VLSMResult.from_arrays: {name!r} must be boolean, got values {uniq[:5]}."
                )
            arr = arr.astype(bool)
        return arr
    if dtype_kind == "i":
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(f"VLSMResult.from_arrays: {name!r} must hold integer counts.")
        return arr.astype(np.int32)
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        first = int(np.flatnonzero(np.isnan(arr))[0])
        raise AnalysisError(
            f"VLSMResult.from_arrays: {name!r} has {int(np.isnan(arr).sum())} NaN value(s) "
            f"(first at tested voxel {first}); the engine must not produce NaN statistics."
        )
    return arr


def _fill(values, tested, shape, fill, dtype):
    """Scatter the tested-voxel ``values`` into a full volume of ``shape``."""
    out = np.full(int(np.prod(shape)), fill, dtype=dtype)
    out[tested] = values
    return out.reshape(shape)


def _image(data, affine):
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    return img


def _data(img):
    """Array of an image in its stored dtype (no scaling to float for int/uint8 maps)."""
    return np.asanyarray(img.dataobj)


# ---------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class VLSMResult(AnalysisResult):
    """Maps, null distribution and provenance of a VLSM analysis.

    Build it with :meth:`from_arrays` (as :func:`lsm.vlsm` does) or :meth:`load`.

    Attributes
    ----------
    stat : Nifti1Image of float64
        Raw test statistic (t, Welch t, Brunner-Munzel statistic, OLS t or signed
        Liebermeister z). Positive when lesioned subjects have higher scores; 0 where
        untested.
    z : Nifti1Image of float64
        The statistic converted to a signed z; 0 where untested.
    p : Nifti1Image of float64
        Uncorrected parametric p-value (per ``params["alternative"]``); 1 where untested.
    p_corrected : Nifti1Image of float64
        Permutation (FWE, CFWER, cluster, TFCE) or FDR corrected p-value; 1 where untested
        or not applicable.
    n_lesioned : Nifti1Image of int32
        Number of lesioned subjects per voxel, on every voxel of the grid.
    significant : Nifti1Image of uint8
        1 where the voxel is significant after correction, else 0 (NIfTI has no boolean
        type; ``significant.get_fdata().astype(bool)`` gives the boolean mask).
    mask_img : Nifti1Image of uint8
        1 where the voxel was tested, else 0.
    threshold : float or None
        Significance threshold on ``|z|`` (two-sided) or on the signed ``z`` (one-sided)
        for ``fwe``/``cfwer``; ``None`` for the other corrections.
    null_distribution : ndarray of shape (n_permutations,) or None
        The permutation null of the corrected statistic (max statistic for ``fwe``,
        v-th largest for ``cfwer``, max cluster size/mass or max TFCE); ``None`` when
        no permutations were run.
    params : dict
        The analysis parameters (score, method, covariates, correction, alpha,
        ``min_lesioned_count``...).
    provenance : dict
        ``lsm_version``, ``versions``, ``random_state`` (the seed used), ``n_jobs``,
        ``runtime_s``, ``created``, the analysed subjects and voxel counts.
    excluded : DataFrame
        Subjects left out of the analysis (columns ``subject``, ``reason``).
    extra_maps : dict of str to Nifti1Image
        Further maps (``{"tfce": ...}``), 0 where untested.
    observed : float, ndarray or None
        The observed value(s) compared with ``null_distribution`` (for example the
        maximum ``|z|``); ``None`` when the engine did not report it.
    null_statistic : str or None
        What ``null_distribution`` holds (``"max_abs_z"``, ``"cluster_size"``...), as
        reported by the engine.
    """

    stat: nib.Nifti1Image
    z: nib.Nifti1Image
    p: nib.Nifti1Image
    p_corrected: nib.Nifti1Image
    n_lesioned: nib.Nifti1Image
    significant: nib.Nifti1Image
    mask_img: nib.Nifti1Image
    threshold: float | None = None
    null_distribution: np.ndarray | None = None
    params: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)
    extra_maps: dict = dataclasses.field(default_factory=dict)
    observed: object = None
    null_statistic: str | None = None
    excluded: pd.DataFrame = dataclasses.field(default_factory=excluded_frame)

    _title = "VLSM result"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        *,
        affine,
        shape,
        tested,
        stat,
        z,
        p,
        p_corrected,
        significant,
        n_lesioned,
        threshold,
        null_distribution,
        params,
        provenance,
        extra_maps=None,
        observed=None,
        null_statistic=None,
        excluded=None,
    ):
        """Wrap the flat arrays of the engine into maps on the cohort grid.

        Parameters
        ----------
        affine : ndarray of shape (4, 4)
            Voxel-to-world (MNI mm) affine of the cohort grid.
        shape : tuple of 3 int
            Shape of the cohort grid.
        tested : ndarray of bool, shape (prod(shape),)
            Voxels that were tested, flat in C order.
        stat, z, p, p_corrected : ndarray of float, shape (n_tested,)
            Raw statistic, signed z, uncorrected and corrected p on the tested voxels
            (in the order of ``np.flatnonzero(tested)``).
        significant : ndarray of bool, shape (n_tested,)
            Significant tested voxels.
        n_lesioned : ndarray of int, shape (prod(shape),)
            Number of lesioned subjects per voxel (all voxels).
        threshold : float or None
            Threshold on z for ``fwe``/``cfwer``, else ``None``.
        null_distribution : ndarray of shape (n_permutations,) or None
            Null distribution of the corrected statistic.
        params, provenance : dict
            Parameters and provenance; copied (made JSON-safe) into the result.
        excluded : DataFrame, list of dict or None
            Subjects left out, with the reason (see ``lsm._result.excluded_frame``).
        extra_maps : dict of str to ndarray of shape (n_tested,), optional
            Further maps, 0 where untested.
        observed : float or ndarray, optional
            The observed value(s) compared with ``null_distribution``.
        null_statistic : str, optional
            What the null holds, e.g. ``"max_abs_z"``, ``"vth_abs_z"``, ``"cluster_size"``.

        Returns
        -------
        result : VLSMResult
        """
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"VLSMResult.from_arrays: 'affine' must be a finite (4, 4) array, "
                             f"got shape {affine.shape}.")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"VLSMResult.from_arrays: 'shape' must be 3 positive ints, got {shape}.")
        n_grid = int(np.prod(shape))
        tested = _check_flat("tested", tested, n_grid, "b")
        n_tested = int(tested.sum())
        stat = _check_flat("stat", stat, n_tested, "f")
        z = _check_flat("z", z, n_tested, "f")
        p = _check_flat("p", p, n_tested, "f")
        p_corrected = _check_flat("p_corrected", p_corrected, n_tested, "f")
        for name, arr in (("p", p), ("p_corrected", p_corrected)):
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"VLSMResult.from_arrays: {name!r} must lie in [0, 1], got "
                                 f"values in [{arr.min()}, {arr.max()}].")
        significant = _check_flat("significant", significant, n_tested, "b")
        n_lesioned = _check_flat("n_lesioned", n_lesioned, n_grid, "i")
        if threshold is not None:
            threshold = float(threshold)
        if null_distribution is not None:
            null_distribution = np.array(null_distribution, copy=True)
            if null_distribution.dtype.kind not in "iuf":
                null_distribution = null_distribution.astype(np.float64)
            null_distribution.setflags(write=False)
        if observed is not None:
            observed = np.asarray(observed, dtype=np.float64)
            observed = float(observed) if observed.ndim == 0 else observed

        maps = {
            "stat": _fill(stat, tested, shape, 0.0, np.float64),
            "z": _fill(z, tested, shape, 0.0, np.float64),
            "p": _fill(p, tested, shape, 1.0, np.float64),
            "p_corrected": _fill(p_corrected, tested, shape, 1.0, np.float64),
            "n_lesioned": n_lesioned.reshape(shape),
            "significant": _fill(significant, tested, shape, False, bool).astype(np.uint8),
            "mask_img": tested.reshape(shape).astype(np.uint8),
        }
        imgs = {k: _image(v, affine) for k, v in maps.items()}
        extra = {}
        for name, values in (extra_maps or {}).items():
            _bids_label(name)
            values = _check_flat(f"extra_maps[{name!r}]", values, n_tested, "f")
            extra[str(name)] = _image(_fill(values, tested, shape, 0.0, np.float64), affine)
        return cls(
            **imgs,
            threshold=threshold,
            null_distribution=null_distribution,
            params=_json_safe(dict(params or {})),
            provenance=_json_safe(dict(provenance or {})),
            extra_maps=extra,
            observed=observed,
            null_statistic=None if null_statistic is None else str(null_statistic),
            excluded=excluded_frame(excluded),
        )

    # ------------------------------------------------------------------ basic accessors
    @property
    def affine(self):
        """Ndarray of shape (4, 4): voxel-to-MNI affine of the grid."""
        return self.stat.affine

    @property
    def shape(self):
        """Tuple of 3 int: the grid shape."""
        return tuple(self.stat.shape[:3])

    @functools.cached_property
    def _tested(self):
        return _data(self.mask_img).reshape(-1).astype(bool)

    @functools.cached_property
    def _tested_index(self):
        return np.flatnonzero(self._tested)

    def _flat(self, name):
        """Values of the map ``name`` (attribute or extra map) on the tested voxels."""
        img = self.extra_maps[name] if name in self.extra_maps else getattr(self, name)
        return _data(img).reshape(-1)[self._tested]

    @property
    def n_tested(self):
        """int: number of tested voxels."""
        return int(self._tested_index.size)

    @property
    def n_significant(self):
        """int: number of significant voxels."""
        return int(np.count_nonzero(_data(self.significant)))

    @property
    def voxel_volume_mm3(self):
        """float: volume of one voxel in mm^3 (product of the voxel sizes)."""
        return float(np.prod(nib.affines.voxel_sizes(self.affine)))

    def thresholded(self, which="z"):
        """Map ``which`` with every non-significant voxel set to 0.

        Parameters
        ----------
        which : str
            ``"z"``, ``"stat"`` or the name of an extra map.

        Returns
        -------
        img : Nifti1Image of float64
        """
        check_option("which", which, ["z", "stat", *self.extra_maps])
        img = self.extra_maps[which] if which in self.extra_maps else getattr(self, which)
        data = np.where(_data(self.significant).astype(bool), _data(img), 0.0)
        return _image(data.astype(np.float64), self.affine)

    # ------------------------------------------------------------------ tables
    def _voxel_mm(self, flat_index):
        ijk = np.stack(np.unravel_index(flat_index, self.shape), axis=1).astype(np.float64)
        return nib.affines.apply_affine(self.affine, ijk).reshape(-1, 3)

    def to_dataframe(self, significant_only=False):
        """One row per tested (or significant) voxel.

        Parameters
        ----------
        significant_only : bool
            Keep only the significant voxels.

        Returns
        -------
        table : DataFrame
            Columns ``i, j, k`` (voxel indices), ``x_mm, y_mm, z_mm`` (MNI), ``stat``,
            ``z``, ``p``, ``p_corrected``, ``significant``, ``n_lesioned`` and one column per
            extra map, sorted by voxel index (C order).
        """
        index = self._tested_index
        columns = {name: self._flat(name) for name in
                   ("stat", "z", "p", "p_corrected", "significant", "n_lesioned")}
        columns["significant"] = columns["significant"].astype(bool)
        for name in self.extra_maps:
            columns[name] = self._flat(name)
        if significant_only:
            keep = columns["significant"]
            index = index[keep]
            columns = {k: v[keep] for k, v in columns.items()}
        ijk = np.stack(np.unravel_index(index, self.shape), axis=1)
        xyz = self._voxel_mm(index)
        table = pd.DataFrame({"i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2],
                              "x_mm": xyz[:, 0], "y_mm": xyz[:, 1], "z_mm": xyz[:, 2]})
        for name, values in columns.items():
            table[name] = values
        return table

    def clusters(self, threshold=None, min_size_mm3=0.0, connectivity=26, atlas="arterial",
                 data_dir=None):
        """Connected clusters of significant voxels, labelled with arterial territories.

        Positive and negative voxels form separate clusters.

        Parameters
        ----------
        threshold : float or None
            ``None`` uses the significant voxels. A number instead keeps the tested voxels
            with ``|z| >= threshold`` (``z >= threshold`` for ``alternative="greater"``,
            ``z <= -threshold`` for ``"less"``).
        min_size_mm3 : float
            Drop clusters smaller than this volume (mm^3).
        connectivity : {6, 18, 26}
            Voxel neighbourhood: faces, faces+edges, faces+edges+corners.
        atlas : {"arterial", None}
            Label the clusters with the Liu et al. (2023) arterial territory atlas (levels
            1 and 2), or not at all. If the atlas cannot be found, the territory columns
            read ``"unavailable"`` and a warning is logged.
        data_dir : str or Path, optional
            Where the atlas lives (passed to :func:`lsm.datasets.fetch_arterial_atlas`).

        Returns
        -------
        table : DataFrame
            One row per cluster, largest first: ``cluster`` (1..n), ``sign`` (+1/-1),
            ``n_voxels``, ``volume_mm3``, ``x_mm, y_mm, z_mm`` (MNI peak), ``peak_stat``,
            ``peak_z``, ``peak_p``, ``peak_p_corrected``; with an atlas also
            ``territory_level1``, ``territory_level1_name``, ``territory_level2`` (at the
            peak; ``"outside"`` when the peak lies outside the atlas) and
            ``territories_level1``, ``territories_level2`` (share of the cluster's voxels in
            each territory, e.g. ``"MCAL 80.0%, LSL 20.0%"``).
        """
        check_option("connectivity", connectivity, list(_CONNECTIVITY))
        check_option("atlas", atlas, ["arterial", None])
        if threshold is not None and not np.isfinite(threshold):
            raise ValueError(f"'threshold' must be a finite number or None, got {threshold!r}.")
        if min_size_mm3 < 0:
            raise ValueError(f"'min_size_mm3' must be >= 0, got {min_size_mm3!r}.")
        zmap = _data(self.z)
        if threshold is None:
            keep = _data(self.significant).astype(bool)
            pos, neg = keep & (zmap > 0), keep & (zmap < 0)
        else:
            tested = _data(self.mask_img).astype(bool)
            alternative = self.params.get("alternative", "two-sided")
            pos = tested & (zmap >= threshold) if alternative != "less" else np.zeros_like(tested)
            neg = tested & (zmap <= -threshold) if alternative != "greater" else np.zeros_like(tested)
        structure = ndimage.generate_binary_structure(3, _CONNECTIVITY[connectivity])
        voxel_mm3 = self.voxel_volume_mm3
        stat_flat = _data(self.stat).reshape(-1)
        z_flat = zmap.reshape(-1)
        p_flat = _data(self.p).reshape(-1)
        pc_flat = _data(self.p_corrected).reshape(-1)
        members, rows = [], []
        for sign, mask in ((1, pos), (-1, neg)):
            labels, n = ndimage.label(mask, structure=structure)
            if n == 0:
                continue
            flat_labels = labels.reshape(-1)
            vox = np.flatnonzero(flat_labels)
            lab = flat_labels[vox]
            order = np.argsort(lab, kind="stable")
            vox, lab = vox[order], lab[order]
            bounds = np.searchsorted(lab, np.arange(1, n + 2))
            for c in range(n):
                idx = vox[bounds[c]:bounds[c + 1]]
                if idx.size * voxel_mm3 < min_size_mm3:
                    continue
                # argmax returns the first maximum: ties go to the lowest C-order index
                peak = idx[np.argmax(sign * z_flat[idx])]
                xyz = self._voxel_mm(np.array([peak]))[0]
                members.append(idx)
                rows.append({
                    "sign": sign, "n_voxels": int(idx.size), "volume_mm3": idx.size * voxel_mm3,
                    "x_mm": xyz[0], "y_mm": xyz[1], "z_mm": xyz[2],
                    "peak_stat": stat_flat[peak], "peak_z": z_flat[peak],
                    "peak_p": p_flat[peak], "peak_p_corrected": pc_flat[peak], "_peak": peak,
                })
        columns = ["cluster", "sign", "n_voxels", "volume_mm3", "x_mm", "y_mm", "z_mm",
                   "peak_stat", "peak_z", "peak_p", "peak_p_corrected"]
        table = pd.DataFrame(rows, columns=columns[1:] + ["_peak"])
        # largest first; ties by larger |peak z|, then by peak position
        order = sorted(range(len(rows)), key=lambda r: (-rows[r]["n_voxels"],
                                                       -abs(rows[r]["peak_z"]), rows[r]["_peak"]))
        table = table.iloc[order].reset_index(drop=True)
        members = [members[r] for r in order]
        table.insert(0, "cluster", np.arange(1, len(table) + 1))
        table = table.astype({"sign": np.int64, "n_voxels": np.int64})
        if atlas is not None:
            table = self._label_territories(table, members, data_dir)
        return table.drop(columns="_peak")

    def _label_territories(self, table, members, data_dir):
        cols = ["territory_level1", "territory_level1_name", "territory_level2",
                "territories_level1", "territories_level2"]
        try:
            lookups = {level: _AtlasLookup.get(level, data_dir) for level in (1, 2)}
        except (LSMError, OSError, ImportError) as exc:
            logger.warning("Arterial atlas unavailable, cluster territories are not labelled "
                           "(%s: %s). Pass data_dir= or set LSM_DATA to a folder holding it.",
                           type(exc).__name__, exc)
            for col in cols:
                table[col] = _UNAVAILABLE
            return table
        peaks = table["_peak"].to_numpy(dtype=np.int64)
        peak_xyz = self._voxel_mm(peaks) if peaks.size else np.zeros((0, 3))
        for level in (1, 2):
            lut = lookups[level]
            peak_labels = lut.labels_at(peak_xyz)
            table[f"territory_level{level}"] = [lut.abbrev(v) for v in peak_labels]
            if level == 1:
                table["territory_level1_name"] = [lut.name(v) for v in peak_labels]
            shares = []
            for idx in members:
                values, counts = np.unique(lut.labels_at(self._voxel_mm(idx)), return_counts=True)
                order = np.lexsort((values, -counts))
                shares.append(", ".join(
                    f"{lut.abbrev(values[o])} {100.0 * counts[o] / idx.size:.1f}%" for o in order))
            table[f"territories_level{level}"] = shares
        return table[[c for c in table.columns if c not in cols] + cols]

    # ------------------------------------------------------------------ text / html
    def _overview(self):
        """Ordered (label, value) pairs shared by summary(), _repr_html_() and the report."""
        pr, pv = self.params, self.provenance
        excluded = self.excluded
        threshold = "n/a" if self.threshold is None else f"{self.threshold:.4g}"
        n_perm = pr.get("n_permutations")
        if self.null_distribution is not None:
            n_perm = len(self.null_distribution)
        covariates = pr.get("covariates")
        if isinstance(covariates, (list, tuple)):
            covariates = ", ".join(map(str, covariates)) or "none"
        return [
            ("Score", pr.get("score", "n/a")),
            ("Method", pr.get("method", "n/a")),
            ("Covariates", covariates if covariates else "none"),
            ("Lesion volume", pr.get("lesion_volume") or "none"),
            ("Alternative", pr.get("alternative", "n/a")),
            ("Correction", pr.get("correction", "n/a")),
            ("Alpha", pr.get("alpha", "n/a")),
            ("Permutations", n_perm if n_perm is not None else "none"),
            ("Random state", pv.get("random_state", pr.get("random_state"))),
            ("Min. lesioned", pr.get("min_lesioned_count", pr.get("min_lesioned", "n/a"))),
            ("Subjects", pv.get("n_subjects", "n/a")),
            ("Excluded subjects", len(excluded)),
            ("Voxels tested", self.n_tested),
            ("Unique patterns", pv.get("n_unique_patterns", "n/a")),
            ("Significant voxels", self.n_significant),
            ("Threshold (z)", threshold),
            ("Voxel size (mm3)", f"{self.voxel_volume_mm3:.4g}"),
            ("Runtime (s)", _fmt(pv.get("runtime_s"))),
            ("Created", pv.get("created", "n/a")),
        ]

    def _peak_rows(self, n=5):
        """Strongest tested voxels as (x, y, z, stat, z, p, p_corrected) rows."""
        if self.n_tested == 0:
            return []
        z = self._flat("z")
        top = np.argsort(-np.abs(z), kind="stable")[:n]
        xyz = self._voxel_mm(self._tested_index[top])
        stat, p, pc = self._flat("stat"), self._flat("p"), self._flat("p_corrected")
        return [(*xyz[r], stat[t], z[t], p[t], pc[t]) for r, t in enumerate(top)]

    def summary(self):
        """Text summary of the analysis (statsmodels style).

        Returns
        -------
        summary : Summary
            A ``str`` subclass that prints itself when echoed.
        """
        pairs = [(k, str(v)) for k, v in self._overview()]
        half = (len(pairs) + 1) // 2
        left, right = pairs[:half], pairs[half:]
        lw = max(20, *(len(v) for _, v in left))
        rw = max(20, *(len(v) for _, v in right))
        width = max(78, 18 + lw + 2 + 18 + rw)
        lines = ["VLSM Results".center(width), "=" * width]
        for r in range(half):
            lk, lv = left[r]
            cell = f"{lk + ':':<18}{lv:>{lw}}"
            if r < len(right):
                rk, rv = right[r]
                cell += f"  {rk + ':':<18}{rv:>{rw}}"
            lines.append(cell)
        lines.append("=" * width)
        peaks = self._peak_rows()
        if peaks:
            lines.append("Strongest voxels (by |z|)")
            lines.append(f"{'x_mm':>8}{'y_mm':>8}{'z_mm':>8}{'stat':>12}{'z':>10}"
                         f"{'p':>12}{'p_corr':>12}")
            lines.append("-" * width)
            for row in peaks:
                lines.append(f"{row[0]:>8.1f}{row[1]:>8.1f}{row[2]:>8.1f}{row[3]:>12.4g}"
                             f"{row[4]:>10.3f}{row[5]:>12.3g}{row[6]:>12.3g}")
            lines.append("=" * width)
        excluded = self.excluded
        if len(excluded):
            lines.append(f"Excluded subjects ({len(excluded)}):")
            for subject, reason in excluded[["subject", "reason"]].head(10).itertuples(index=False):
                lines.append(f"  {subject}: {reason}")
            if len(excluded) > 10:
                lines.append(f"  ... and {len(excluded) - 10} more (see the excluded table)")
        if self.n_significant == 0:
            lines.append("No voxel is significant at this correction and alpha.")
        return Summary("\n".join(lines))

    def __repr__(self):
        pr = self.params
        return (f"<VLSMResult score={pr.get('score')!r} method={pr.get('method')!r} "
                f"correction={pr.get('correction')!r} shape={self.shape} "
                f"n_tested={self.n_tested} n_significant={self.n_significant}>")

    def _repr_html_(self):
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:right'>{html.escape(str(v))}</td></tr>"
                       for k, v in self._overview())
        out = [f"<div><strong>VLSMResult</strong><table>{rows}</table>"]
        if self.n_significant:
            table = self.clusters(atlas=None).head(10)
            out.append("<p>Clusters of significant voxels (largest 10)</p>")
            out.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        out.append("</div>")
        return "".join(out)

    # ------------------------------------------------------------------ save / load
    def save(self, path, overwrite=False, *, atlas="arterial", data_dir=None):
        """Write the result as a BIDS-derivatives-style folder, atomically.

        The folder holds one NIfTI per map (``vlsm_stat-z_statmap.nii.gz``...), each with a
        JSON sidecar, ``vlsm.json`` (threshold, parameters, provenance, file list),
        ``vlsm_null.tsv`` (the null distribution, when there is one),
        ``vlsm_clusters.tsv`` and ``dataset_description.json``. The JSON files are standard
        JSON: a non-finite ``threshold`` or ``observed`` value (+inf under perfect
        separation) is written as the string ``"inf"``, ``"-inf"`` or ``"nan"`` and read back
        as that float by :meth:`load`. Everything is written into
        a temporary sibling folder renamed into place at the end: a crash leaves no
        partial folder.

        Parameters
        ----------
        path : str or Path
            Output folder.
        overwrite : bool
            Replace an existing ``path``; otherwise :class:`~lsm.exceptions.OutputExistsError`.
        atlas, data_dir
            Passed to :meth:`clusters` for the cluster table.

        Returns
        -------
        path : Path
        """
        clusters = self.clusters(atlas=atlas, data_dir=data_dir)
        files = {}
        extra_files = {}
        taken = {fname for fname, _ in _CORE_MAPS.values()}
        for name in self.extra_maps:
            fname = f"{_PREFIX}_stat-{_bids_label(name)}_statmap.nii.gz"
            if fname in taken:
                raise ValueError(f"Extra map {name!r} would be saved as {fname!r}, which another "
                                 "map already uses; rename it.")
            taken.add(fname)
            extra_files[name] = fname
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            for name, (fname, description) in _CORE_MAPS.items():
                _write_nifti(getattr(self, name), tmp / fname)
                _write_json(tmp / fname.replace(".nii.gz", ".json"),
                            {"Description": description})
                files[name] = fname
            for name, fname in extra_files.items():
                _write_nifti(self.extra_maps[name], tmp / fname)
                _write_json(tmp / fname.replace(".nii.gz", ".json"),
                            {"Description": f"Extra map {name!r}; 0 where untested."})
            null_file = None
            if self.null_distribution is not None:
                null_file = _NULL_TSV
                _write_null(self.null_distribution, tmp / null_file)
                _write_json(tmp / null_file.replace(".tsv", ".json"), {"null": {
                    "Description": "One value per permutation: "
                                   + (self.null_statistic or "the corrected statistic")}})
            clusters.to_csv(tmp / _CLUSTERS_TSV, sep="\t", index=False, na_rep="n/a")
            self.excluded.to_csv(tmp / _EXCLUDED_TSV, sep="\t", index=False, na_rep="n/a")
            _write_json(tmp / _EXCLUDED_TSV.replace(".tsv", ".json"),
                        {"subject": {"Description": "Subject left out of the analysis."},
                         "reason": {"Description": "Why it was left out."}})
            _write_json(tmp / _CLUSTERS_TSV.replace(".tsv", ".json"),
                        {c: {"Description": _CLUSTER_COLUMNS[c]} for c in clusters.columns
                         if c in _CLUSTER_COLUMNS})
            observed = self.observed
            meta = {
                "FormatVersion": _FORMAT_VERSION,
                "Description": "Voxel-based lesion-symptom mapping result (lsm).",
                "threshold": _encode_float(self.threshold),
                "null_statistic": self.null_statistic,
                "observed": _encode_float(observed.tolist() if isinstance(observed, np.ndarray)
                                          else observed),
                "observed_is_array": isinstance(observed, np.ndarray),
                "null_dtype": (None if self.null_distribution is None
                               else self.null_distribution.dtype.str),
                "affine": self.affine.tolist(),
                "shape": list(self.shape),
                "files": files,
                "extra_maps": extra_files,
                "null_distribution": null_file,
                "clusters": _CLUSTERS_TSV,
                "excluded": _EXCLUDED_TSV,
                "params": self.params,
                "provenance": self.provenance,
            }
            _write_json(tmp / _RESULT_JSON, meta)
            _write_json(tmp / "dataset_description.json", _dataset_description(self.provenance))
        logger.info("Saved VLSM result to %s", display_path(path))
        return Path(path)

    @classmethod
    def load(cls, path):
        """Read a folder written by :meth:`save`.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        result : VLSMResult
        """
        path = Path(path)
        meta_file = path / _RESULT_JSON
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"{str(meta_file)!r} not found: {str(path)!r} is not a folder written by "
                "VLSMResult.save()."
            )
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(meta_file)!r} is not valid JSON ({exc}); save the result "
                             "again with VLSMResult.save().") from None
        missing = [k for k in ("affine", "shape", "files") if k not in meta]
        if not isinstance(meta, dict) or missing:
            raise ValueError(f"{str(meta_file)!r} lacks {missing or 'its keys'}: it was not written "
                             "by VLSMResult.save().")
        version = meta.get("FormatVersion", 0)
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ValueError(
                f"{str(meta_file)!r} has format version {version!r}; this lsm reads versions "
                f"up to {_FORMAT_VERSION}. Upgrade lsm to read it."
            )
        affine = np.asarray(meta["affine"], dtype=np.float64)

        def read(fname):
            img = nib.load(path / fname)
            data = np.asanyarray(img.dataobj).copy()
            if tuple(data.shape) != tuple(meta["shape"]):
                raise ValueError(f"{fname!r} has shape {data.shape}, expected {meta['shape']}.")
            return _image(data, affine)

        imgs = {name: read(fname) for name, fname in meta["files"].items()}
        extra = {name: read(fname) for name, fname in meta.get("extra_maps", {}).items()}
        null = None
        if meta.get("null_distribution"):
            null = _read_null(path / meta["null_distribution"], meta.get("null_dtype"))
            null.setflags(write=False)
        observed = _decode_float(meta.get("observed"))
        if observed is not None and meta.get("observed_is_array"):
            observed = np.asarray(observed, dtype=np.float64)
        provenance = dict(meta.get("provenance", {}))
        if meta.get("excluded") and (path / meta["excluded"]).is_file():
            excluded = pd.read_csv(path / meta["excluded"], sep="\t", na_values=["n/a"],
                                   keep_default_na=False, dtype={"subject": str})
        else:  # written by lsm 0.1: the list was in the provenance
            excluded = provenance.pop("excluded", None) or None
        return cls(**imgs, threshold=_decode_float(meta.get("threshold")), null_distribution=null,
                   params=meta.get("params", {}), provenance=provenance,
                   extra_maps=extra, observed=observed,
                   null_statistic=meta.get("null_statistic"), excluded=excluded_frame(excluded))

    def plot(self, kind="stat_map", **kwargs):
        """Plot the result: a statistical map, a glass brain or the permutation null.

        ``kind="stat_map"``: :func:`lsm.plotting.plot_stat_map`; ``"glass_brain"``:
        :func:`lsm.plotting.plot_glass_brain`; ``"null"``:
        :func:`lsm.plotting.plot_null_distribution`.

        Parameters
        ----------
        kind : {"stat_map", "glass_brain", "null"}, default="stat_map"
        **kwargs
            Passed to the plotting function.

        Returns
        -------
        display : nilearn display or matplotlib Figure
            The nilearn display of a map, the Figure of the null distribution.
        """
        from . import plotting

        check_option("kind", kind, ("stat_map", "glass_brain", "null"))
        func = {"stat_map": plotting.plot_stat_map, "glass_brain": plotting.plot_glass_brain,
                "null": plotting.plot_null_distribution}[kind]
        out = func(self, **kwargs)
        return out.figure if kind == "null" else out

    def to_html(self, path=None, cohort=None, overwrite=False, **kwargs):
        """A self-contained HTML report (see :func:`lsm.report.make_report`).

        Parameters
        ----------
        path : str or Path, optional
            File to write (atomically); without it the HTML text is returned.
        cohort : Cohort, optional
            Adds the cohort description, its exclusions and the overlap map.
        overwrite : bool, default=False
            Replace an existing file.
        **kwargs
            Passed to :func:`lsm.report.make_report` (``title``, ``atlas``...).

        Returns
        -------
        path : Path or str
            The file written, or the HTML text when ``path`` is None.
        """
        from .report import make_report, report_html

        if path is None:
            return report_html(self, cohort, **kwargs)
        return make_report(self, path, cohort=cohort, overwrite=overwrite, **kwargs)


# ---------------------------------------------------------------------------------------
# writers (module level so a test can make one fail mid-save)
# ---------------------------------------------------------------------------------------
def _write_nifti(img, path):
    nib.save(img, os.fspath(path))


def _write_json(path, obj):
    Path(path).write_text(json_text(obj), encoding="utf-8")


def _write_null(null, path):
    fmt = "%d" if null.dtype.kind in "iu" else "%r"
    lines = ["null"] + [fmt % v for v in null.tolist()]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _read_null(path, dtype):
    lines = Path(path).read_text(encoding="utf-8").split()
    if not lines or lines[0] != "null":
        raise ValueError(f"{str(path)!r} is not a null-distribution table (header 'null').")
    try:
        values = [float(v) for v in lines[1:]]
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: {exc} (one number per line expected).") from None
    return np.asarray(values, dtype=np.dtype(dtype) if dtype else np.float64)


def _dataset_description(provenance):
    return dataset_description("lsm voxel-based lesion-symptom mapping", provenance)


def _fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return value


class _AtlasLookup:
    """Label lookup of the arterial atlas at world coordinates (nearest voxel).

    Each point takes the label of the atlas voxel that contains it, by the same rule
    (:func:`lsm._images.voxel_of`) as the cohort's regridding and the territory loads.
    """

    _cache = {}

    def __init__(self, img, labels):
        data = np.asanyarray(img.dataobj)
        small = data.size == 0 or (data.min() >= 0 and data.max() < 2 ** 15)
        self.data = data.astype(np.int16 if small else np.int64)  # kept in a cache: keep it small
        self.affine = np.asarray(img.affine, dtype=np.float64)
        self.inv = np.linalg.inv(self.affine)
        labels = pd.DataFrame(labels)
        index = labels["index"].astype(np.int64).to_numpy()
        self._abbrev = dict(zip(index, labels["abbrev"].astype(str)))
        names = labels["name"] if "name" in labels else labels["abbrev"]
        self._name = dict(zip(index, names.astype(str)))

    @classmethod
    def get(cls, level, data_dir):
        key = (level, None if data_dir is None else str(data_dir), os.environ.get("LSM_DATA"))
        if key not in cls._cache:
            from .datasets import fetch_arterial_atlas

            atlas = fetch_arterial_atlas(level=level, resolution=1, data_dir=data_dir)
            cls._cache[key] = cls(atlas.img, atlas.labels)
        return cls._cache[key]

    def labels_at(self, xyz):
        """Atlas labels at world coordinates ``xyz`` (n, 3); 0 outside the atlas."""
        from ._images import voxel_of

        cont = nib.affines.apply_affine(self.inv, np.asarray(xyz, dtype=np.float64)).reshape(-1, 3)
        flat = voxel_of(cont.T, self.affine, self.data.shape[:3])
        out = np.zeros(len(flat), dtype=np.int64)
        out[flat >= 0] = self.data.ravel()[flat[flat >= 0]]
        return out

    def abbrev(self, value):
        return "outside" if value == 0 else self._abbrev.get(int(value), f"label {int(value)}")

    def name(self, value):
        return "outside the atlas" if value == 0 else self._name.get(int(value),
                                                                     f"label {int(value)}")
