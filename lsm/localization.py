"""How far can a lesion-symptom map be misplaced on this cohort? A localisation check.

:func:`localization_check` plants a deficit in each of K regions (arterial territories or
the parcels of a label image) using the cohort's own lesions, maps it with each chosen
method, and measures how well each map finds the region: whether the peak lies in it, the
displacement of the map's centroid from the region's (mm), the Dice overlap at the
method's significance threshold, two threshold-free measures (top-k Dice and the AUC of
the statistic for region membership), and the false-positive rate on shuffled scores. The
same lesion matrix serves every region and method.

Real lesions follow the vascular tree, so voxels of neighbouring territories are lesioned
together and a voxel-wise map of a deficit planted in one territory is pulled towards the
territories that are damaged with it (Mah et al. 2014, Brain 137:2522; Sperber et al.
2019). How far, and for which method, depends on the cohort: this check measures it.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._docs import fill_doc
from ._result import AnalysisResult, Summary, excluded_frame, make_provenance
from ._validation import check_alpha, check_min_lesioned, check_n_jobs, check_n_permutations, check_option, resolve_seed
from .exceptions import AnalysisError

logger = logging.getLogger("lsm")

__all__ = ["localization_check", "LocalizationResult", "LOCALIZATION_METHODS", "SVR_DEFAULTS"]

#: Methods :func:`localization_check` can run: (voxel-wise method, lesion-volume control).
LOCALIZATION_METHODS = {
    "ttest": ("ttest", None),
    "regression": ("regression", None),
    "regression+covariate": ("regression", "covariate"),
    "regression+dtlvc": ("regression", "dtlvc"),
    "brunner_munzel": ("brunner_munzel", None),
    "svr": ("svr", "both"),
}
#: SVR-LSM settings of the ``"svr"`` method: those of :func:`lsm.svr_lsm` (Zhang et al. 2014).
SVR_DEFAULTS = {"C": 30.0, "gamma": 5.0, "epsilon": 0.1, "kernel": "rbf"}

_TABLE_COLUMNS = {
    "method": "Mapping method",
    "region": "Region the deficit was planted in",
    "region_voxels": "Voxels of the region on the cohort grid",
    "region_tested": "Voxels of the region tested by the method (the truth the map can reach)",
    "lesioned_subjects": "Subjects with a lesion in the region",
    "peak_in_region": "The voxel of largest statistic lies in the region",
    "n_significant": "Significant voxels (FWE, alpha)",
    "dice": "Dice of the significant voxels with the region's tested voxels",
    "displacement_mm": "Distance from the centroid of the significant voxels to the region's centroid (mm)",
    "topk_dice": "Dice of the k voxels of largest statistic (k = region_tested) with the region",
    "topk_displacement_mm": "Distance from the centroid of those k voxels to the region's centroid (mm)",
    "auc": "ROC AUC of the statistic for region membership over the tested voxels",
}


def _dice(a, b):
    """Dice coefficient of two boolean arrays (NaN when both are empty)."""
    total = a.sum() + b.sum()
    return np.nan if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def _map_metrics(z, significant, member, xyz, centroid):
    """Localisation metrics of one map (arrays over the tested voxels)."""
    from sklearn.metrics import roc_auc_score

    k = int(member.sum())
    out = {"region_tested": k, "n_significant": int(significant.sum())}
    finite = np.where(np.isfinite(z), z, -np.inf)
    out["peak_in_region"] = bool(member[np.argmax(finite)]) if z.size else False
    out["dice"] = _dice(significant, member)
    out["displacement_mm"] = (float(np.linalg.norm(xyz[significant].mean(axis=0) - centroid))
                              if significant.any() else np.nan)
    if 0 < k < z.size:
        top = np.zeros(z.size, dtype=bool)
        top[np.argsort(-finite, kind="stable")[:k]] = True
        out["topk_dice"] = _dice(top, member)
        out["topk_displacement_mm"] = float(np.linalg.norm(xyz[top].mean(axis=0) - centroid))
        out["auc"] = float(roc_auc_score(member, np.where(np.isfinite(z), z, np.nanmin(z[np.isfinite(z)]))))
    else:
        out.update(topk_dice=np.nan, topk_displacement_mm=np.nan, auc=np.nan)
    return out


def _region_labels(cohort, regions, level):
    """(column of each grid voxel (K = none), region names, source) from ``regions``."""
    from .territory import _atlas_labels_on_grid, _resolve_atlas, _territories

    atlas = _resolve_atlas(regions)
    terr = _territories(atlas, level)
    labels, _ = _atlas_labels_on_grid(atlas, cohort.affine, cohort.shape)
    column = terr.lut[np.clip(labels, 0, terr.lut.size - 1)]
    column[labels >= terr.lut.size] = terr.n
    return column, list(terr.names), atlas.name


def _run_method(lesions, score, method, volume, n_permutations, alpha, min_lesioned, seed, n_jobs, grid_shape,
                voxel_index, svr_options):
    from .stats import svr_test, voxelwise_test

    name, control = LOCALIZATION_METHODS[method]
    if name == "svr":
        # as lsm.svr_lsm with lesion_volume="both": volume regressed out of score and lesions;
        # its z is the standardised beta (beta over the SD of its permutation null)
        engine = svr_test(lesions, score, **svr_options, score_nuisance=volume[:, None],
                          lesion_nuisance=volume[:, None], n_permutations=n_permutations, correction="fwe",
                          alpha=alpha, min_lesioned=min_lesioned, alternative="two-sided", grid_shape=grid_shape,
                          voxel_index=voxel_index, n_jobs=n_jobs, random_state=seed)
        return engine.tested, engine.z, engine.significant
    engine = voxelwise_test(
        lesions, score, method=name,
        covariates=volume[:, None] if control == "covariate" else None,
        lesion_scale=1.0 / np.sqrt(volume) if control == "dtlvc" else None,
        n_permutations=n_permutations, correction="fwe", alpha=alpha, min_lesioned=min_lesioned,
        alternative="two-sided", n_jobs=n_jobs, random_state=seed, grid_shape=grid_shape,
        voxel_index=voxel_index)
    return engine.tested, engine.z, engine.significant


@dataclass
class LocalizationResult(AnalysisResult):
    """Outcome of :func:`localization_check`.

    Attributes
    ----------
    table : DataFrame
        One row per method and region (columns described in ``_TABLE_COLUMNS``).
    null_runs : DataFrame
        One row per method and shuffled-score run: ``method``, ``run``, ``region`` (whose
        simulated score was shuffled), ``n_significant``, ``any_significant``.
    skipped : DataFrame
        Regions not simulated (``region``, ``reason``).
    params, provenance : dict
    excluded : DataFrame
    """

    table: pd.DataFrame
    null_runs: pd.DataFrame
    skipped: pd.DataFrame
    params: dict
    provenance: dict
    excluded: pd.DataFrame = field(default_factory=excluded_frame)

    _title = "Localisation check"

    def to_dataframe(self):
        """The method x region table (a copy)."""
        return self.table.copy()

    def summary_table(self):
        """Per method: share of peaks in the region, median displacements, mean Dice/AUC, FPR."""
        g = self.table.groupby("method", sort=False)
        out = pd.DataFrame({
            "regions": g.size(),
            "peak_in_region": g["peak_in_region"].mean(),
            "detected": g["n_significant"].apply(lambda s: float(np.mean(s > 0))),
            "dice": g["dice"].mean(),
            "displacement_mm": g["displacement_mm"].median(),
            "topk_dice": g["topk_dice"].mean(),
            "topk_displacement_mm": g["topk_displacement_mm"].median(),
            "auc": g["auc"].mean(),
        })
        if len(self.null_runs):
            out["fpr"] = self.null_runs.groupby("method", sort=False)["any_significant"].mean()
            out["null_runs"] = self.null_runs.groupby("method", sort=False).size()
        return out

    @property
    def significant(self):
        """Whether each method's map of each region had a significant voxel."""
        return self.table.set_index(["method", "region"])["n_significant"] > 0

    def summary(self):
        """The per-method summary table with the simulation settings."""
        p = self.params
        head = (f"{self._title}: {len(self.table['region'].unique())} regions of {p['regions']}, "
                f"effect size {p['effect_size']}, {p['n_permutations']} permutations, alpha {p['alpha']}, "
                f"{self.provenance.get('n_subjects')} subjects")
        text = self.summary_table().to_string(float_format=lambda v: f"{v:.3f}")
        foot = ("peak_in_region, detected: share of regions; dice, topk_dice, auc: mean; displacements: "
                "median (mm); fpr: share of shuffled-score runs with any significant voxel")
        if len(self.skipped):
            foot += f"\nSkipped regions: {len(self.skipped)} ({', '.join(self.skipped['region'][:8])})"
        return Summary(f"{head}\n{text}\n{foot}")

    def plot(self, metric="topk_displacement_mm", ax=None):
        """Strip plot of one metric over regions, one column per method."""
        from .plotting import plot_box_strip

        check_option("metric", metric, [c for c in _TABLE_COLUMNS if c not in ("method", "region")])

        methods = list(dict.fromkeys(self.table["method"]))
        data = [self.table.loc[self.table["method"] == m, metric].astype(float).to_numpy() for m in methods]
        return plot_box_strip(data, methods, ax=ax, ylabel=metric,
                              title="Localisation check (one point per region)")

    def save(self, path, overwrite=False):
        """Write ``localization.tsv``, ``null_runs.tsv``, ``skipped.tsv`` and ``result.json``.

        Parameters
        ----------
        path : str or path
            Output folder (written atomically).
        overwrite : bool, default=False
            Replace an existing folder.

        Returns
        -------
        path : Path
        """
        from ._derivatives import write_json, write_tsv
        from ._utils import atomic_output_dir

        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            write_tsv(self.table, tmp / "localization.tsv", descriptions=_TABLE_COLUMNS, index=False)
            write_tsv(self.null_runs, tmp / "null_runs.tsv", index=False, descriptions={
                "method": "Mapping method", "run": "Shuffled-score run", "region": "Region whose score was shuffled",
                "n_significant": "Significant voxels", "any_significant": "At least one significant voxel"})
            write_tsv(self.skipped, tmp / "skipped.tsv", index=False,
                      descriptions={"region": "Region", "reason": "Why it was not simulated"})
            write_json(tmp / "result.json", {"params": self.params, "provenance": self.provenance,
                                             "excluded": self.excluded.to_dict("records")})
        return Path(path)

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save`."""
        import json

        path = Path(path)
        meta = json.loads((path / "result.json").read_text())
        read = lambda name: pd.read_csv(path / name, sep="\t", na_values="n/a", keep_default_na=False)  # noqa: E731
        excluded = excluded_frame(pd.DataFrame(meta["excluded"], columns=["subject", "reason"]))
        return cls(table=read("localization.tsv"), null_runs=read("null_runs.tsv"), skipped=read("skipped.tsv"),
                   params=meta["params"], provenance=meta["provenance"], excluded=excluded)


@fill_doc
def localization_check(
    cohort,
    *,
    regions="arterial",
    level=1,
    effect_size=0.5,
    methods=("ttest", "regression+covariate", "regression+dtlvc"),
    n_permutations=200,
    n_null=20,
    alpha=0.05,
    min_lesioned=0.05,
    svr_options=None,
    random_state=None,
    n_jobs=1,
    verbose=0,
):
    """Simulate a deficit in each region on this cohort's lesions and score each method's map.

    For each region ``k`` (a territory of the arterial atlas or a parcel of a label
    image) a score is simulated from the cohort's real lesions::

        score = effect_size * z(load_k) + N(0, 1)

    with ``load_k`` the fraction of the region's voxels lesioned in each subject,
    standardised over the subjects (as LESYMAP and Sperber et al. simulate a deficit from
    the lesion load of one parcel). Damage goes with a higher score. Each method then maps
    the score (two-sided, FWE by the maximum statistic over ``n_permutations``
    permutations), and its map is compared with the region:

    - ``peak_in_region``: the voxel of largest z is in the region;
    - ``dice`` and ``displacement_mm``: Dice of the significant voxels with the region's
      tested voxels, and distance from their centroid to the region's centroid (world mm;
      NaN when nothing is significant);
    - ``topk_dice``, ``topk_displacement_mm`` and ``auc``, threshold-free: the same for
      the k voxels of largest z (k = the region's tested voxels), and the ROC AUC of z
      for region membership over the tested voxels.

    ``n_null`` further runs per method map a simulated score shuffled across subjects
    (the regions' scores in turn): the share with any significant voxel is the method's
    family-wise false-positive rate on this cohort (expected at most ``alpha``).

    Parameters
    ----------
    cohort : Cohort
        Lesion masks on a common grid (the phenotype is not used).
    regions : "arterial", label image or (image, labels), default="arterial"
        ``"arterial"``: the territories of the arterial atlas (Liu et al. 2023) at
        ``level``; otherwise an atlas as :func:`lsm.territory_load` accepts it.
    %(level)s
    effect_size : float, default=0.5
        Slope of the score on the standardised region load, in units of the noise SD.
    methods : sequence of str, default=("ttest", "regression+covariate", "regression+dtlvc")
        Among ``"ttest"``, ``"regression"`` (OLS without control: the same map as the
        t-test), ``"regression+covariate"`` (lesion volume as a covariate),
        ``"regression+dtlvc"`` (direct total lesion volume control),
        ``"brunner_munzel"`` and ``"svr"`` (SVR-LSM as :func:`lsm.svr_lsm` runs it by
        default: RBF kernel, lesion volume regressed out of the score and the lesion
        data, FWE on the standardised beta; much slower than the voxel-wise methods, and
        its FWE threshold needs a few hundred permutations: with 20 its false-positive
        rate was far above ``alpha``).
    n_permutations : int, default=200
        Permutations per map (few, for speed: the FWE threshold is then coarse).
    n_null : int, default=20
        Shuffled-score runs per method (0: no false-positive rate).
    %(alpha)s
    %(min_lesioned)s
    svr_options : dict, optional
        SVR settings of the ``"svr"`` method (keys ``C``, ``gamma``, ``epsilon``,
        ``kernel``); default those of :func:`lsm.svr_lsm` (``SVR_DEFAULTS``).
    %(random_state)s
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    result : LocalizationResult
        ``result.summary_table()`` is the per-method table; ``result.table`` has a row per
        method and region.

    Notes
    -----
    A region is skipped (listed in ``result.skipped``) when fewer than ``min_lesioned``
    subjects have a lesion in it or none of its voxels is tested. The region's centroid is
    that of all its voxels on the cohort grid, tested or not; its Dice truth is its tested
    voxels. When ``"regression+dtlvc"`` is run, subjects without a lesion on the grid are
    excluded from every method (listed in ``excluded``).
    """
    t0 = time.perf_counter()
    from ._vlsm import _candidate_matrix

    methods = [check_option("methods", m, tuple(LOCALIZATION_METHODS)) for m in
               ([methods] if isinstance(methods, str) else list(methods))]
    if not methods:
        raise ValueError("Invalid value for the 'methods' parameter: expected at least one method.")
    check_option("level", level, (1, 2))
    n_permutations = check_n_permutations(n_permutations)
    if isinstance(n_null, bool) or not isinstance(n_null, (int, np.integer)) or n_null < 0:
        raise ValueError(f"Invalid value for the 'n_null' parameter: expected an int >= 0, but got {n_null!r}.")
    try:
        effect_size = float(effect_size)
    except (TypeError, ValueError):
        effect_size = np.nan
    if not np.isfinite(effect_size):
        raise ValueError("Invalid value for the 'effect_size' parameter: expected a finite number.")
    alpha = check_alpha(alpha)
    n_jobs = check_n_jobs(n_jobs)
    check_min_lesioned(min_lesioned)
    unknown = set(svr_options or {}) - set(SVR_DEFAULTS)
    if unknown:
        raise ValueError(f"Invalid key(s) {sorted(unknown)} in the 'svr_options' parameter; allowed keys are "
                         f"{sorted(SVR_DEFAULTS)}.")
    svr_options = {**SVR_DEFAULTS, **(svr_options or {})}
    seed, rng = resolve_seed(random_state)
    if seed is None:
        seed = int(rng.integers(2**31 - 1))

    subjects = list(cohort.subjects)
    grid_volume = np.array([cohort.lesion_indices(s).size for s in subjects]) * cohort.voxel_volume_ml
    excluded = []
    if any(LOCALIZATION_METHODS[m][1] == "dtlvc" for m in methods):
        excluded = [(s, "no lesion on the cohort grid (regression+dtlvc)") for s, v in zip(subjects, grid_volume)
                    if v <= 0]
        subjects = [s for s, v in zip(subjects, grid_volume) if v > 0]
        grid_volume = grid_volume[grid_volume > 0]
    count = check_min_lesioned(min_lesioned, len(subjects))
    column, names, source = _region_labels(cohort, regions, level)
    K = len(names)
    lesions, voxel_index, _ = _candidate_matrix(cohort, subjects, min_lesioned)
    if voxel_index.size == 0:
        raise AnalysisError(f"No voxel is lesioned in at least {count} of the {len(subjects)} subjects "
                            "(min_lesioned): nothing can be mapped.")
    # region load of every subject: lesioned voxels of the region / voxels of the region
    full = cohort.lesion_matrix(subjects=subjects)
    region_size = np.bincount(column, minlength=K + 1)[:K]
    onehot = np.zeros((column.size, K + 1))
    onehot[np.arange(column.size), column] = 1.0
    hits = np.asarray(full @ onehot)[:, :K]
    loads = hits / np.maximum(region_size, 1)
    ijk = np.array(np.unravel_index(np.arange(column.size), cohort.shape)).T
    world = ijk @ cohort.affine[:3, :3].T + cohort.affine[:3, 3]
    centroids = np.array([world[column == k].mean(axis=0) if region_size[k] else np.full(3, np.nan)
                          for k in range(K)])
    cand_column = column[voxel_index]
    volume_ml = np.asarray(cohort.lesion_volumes.loc[subjects], dtype=np.float64)

    skipped, eligible = [], []
    for k, name in enumerate(names):
        n_les = int((hits[:, k] > 0).sum())
        if n_les < count:
            skipped.append((name, f"{n_les} subject(s) lesioned in the region, fewer than min_lesioned ({count})"))
        elif not np.any(cand_column == k):
            skipped.append((name, "no voxel of the region is tested"))
        else:
            eligible.append(k)
    if not eligible:
        raise AnalysisError(f"No region of {source} can be simulated on this cohort: {skipped[:3]}.")

    scores = {}
    for k in eligible:
        noise = np.random.default_rng([seed, k]).standard_normal(len(subjects))
        load = loads[:, k]
        scores[k] = effect_size * (load - load.mean()) / load.std() + noise

    rows, null_rows = [], []
    for mi, method in enumerate(methods):
        vol = grid_volume if LOCALIZATION_METHODS[method][1] == "dtlvc" else volume_ml
        for k in eligible:
            tested, z, sig = _run_method(lesions, scores[k], method, vol, n_permutations, alpha, min_lesioned,
                                         int(np.random.SeedSequence([seed, k, mi]).generate_state(1)[0]), n_jobs,
                                         cohort.shape, voxel_index, svr_options)
            if verbose:
                logger.info("localization_check: %s, region %s mapped", method, names[k])
            member = cand_column[tested] == k
            xyz = world[voxel_index[tested]]
            rows.append({"method": method, "region": names[k], "region_voxels": int(region_size[k]),
                         "lesioned_subjects": int((hits[:, k] > 0).sum()),
                         **_map_metrics(z, sig, member, xyz, centroids[k])})
        for j in range(n_null):
            k = eligible[j % len(eligible)]
            shuffled = np.random.default_rng([seed, k, 10**6 + j]).permutation(scores[k])
            _, _, sig = _run_method(lesions, shuffled, method, vol, n_permutations, alpha, min_lesioned,
                                    int(np.random.SeedSequence([seed, k, mi, j]).generate_state(1)[0]), n_jobs,
                                    cohort.shape, voxel_index, svr_options)
            null_rows.append({"method": method, "run": j, "region": names[k], "n_significant": int(sig.sum()),
                              "any_significant": bool(sig.any())})
    table = pd.DataFrame(rows)[list(_TABLE_COLUMNS)]
    null_runs = pd.DataFrame(null_rows, columns=["method", "run", "region", "n_significant", "any_significant"])
    params = {"regions": source if not isinstance(regions, str) else regions, "level": level,
              "effect_size": effect_size, "methods": methods, "n_permutations": n_permutations,
              "n_null": int(n_null), "alpha": alpha, "correction": "fwe", "alternative": "two-sided",
              "min_lesioned": min_lesioned, "min_lesioned_count": count, "random_state": seed,
              "simulation": "score = effect_size * z(fraction of the region lesioned) + N(0, 1)"}
    if "svr" in methods:
        params["svr_options"] = svr_options
    provenance = make_provenance(seed=seed, n_jobs=n_jobs, t0=t0, n_subjects=len(subjects),
                                 n_voxels_candidate=int(voxel_index.size))
    return LocalizationResult(table=table, null_runs=null_runs,
                              skipped=pd.DataFrame(skipped, columns=["region", "reason"]),
                              params=params, provenance=provenance, excluded=excluded_frame(excluded))
