"""The demo: the whole pipeline on a synthetic cohort with a planted effect, no download.

``lsm demo --output lsm_demo`` (the README's first command) calls :func:`run_demo`:

1. :func:`lsm.simulate.make_synthetic_cohort` builds a small cohort (4 mm grid) whose
   ``score`` is higher when one spherical region is lesioned;
2. :func:`lsm.vlsm` runs a voxel-wise t-test with 1,000 permutations and max-statistic
   FWE correction;
3. the output folder receives the maps with their JSON sidecars (:meth:`lsm.VLSMResult.save`),
   the cluster table, the lesion overlap map, the planted region, the phenotype table and a
   self-contained ``report.html``;
4. a short summary says whether the planted region was recovered.
"""

import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np

from ._utils import atomic_output_dir
from .exceptions import DroppedSubjectsWarning

__all__ = ["run_demo", "DemoRun", "recovery"]

logger = logging.getLogger("lsm")

#: Files written by :func:`run_demo` besides those of :meth:`lsm.VLSMResult.save`.
OVERLAP_FILE = "desc-count_overlap.nii.gz"
PLANTED_FILE = "desc-planted_mask.nii.gz"
PARTICIPANTS_FILE = "participants.tsv"
REPORT_FILE = "report.html"
#: Radii (mm) of the simulated lesion spheres: 4 to 33 ml each, one to three per subject.
LESION_RADIUS_MM = (10.0, 20.0)


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    output : Path
        The output folder.
    cohort : Cohort
        The synthetic cohort (``cohort.metadata["truth_mask"]`` is the planted region).
    result : VLSMResult
        The VLSM result.
    clusters : DataFrame
        Clusters of significant voxels (written as ``vlsm_clusters.tsv``).
    recovery : dict
        See :func:`recovery`.
    """

    output: Path
    cohort: object
    result: object
    clusters: object
    recovery: dict

    def summary(self):
        """Summarise the demo in a few lines for the terminal: cohort, analysis, recovery, files."""
        rec = self.recovery
        pr = self.result.params
        lines = [
            f"lsm demo: synthetic cohort of {len(self.cohort)} subjects on a {self.cohort.shape} grid "
            f"of {self.cohort.voxel_size[0]:g} mm voxels, planted region of "
            f"{rec['n_planted_voxels']} voxels centred at {_xyz(rec['planted_center_mm'])} mm",
            f"VLSM: {pr.get('method')} of {pr.get('score')!r}, {pr.get('n_permutations')} permutations, "
            f"{pr.get('correction')} correction at alpha {pr.get('alpha')}: "
            f"{rec['n_significant']} of {self.result.n_tested} tested voxels significant "
            f"in {len(self.clusters)} cluster(s)",
        ]
        if rec["n_significant"]:
            lines.append(
                f"peak z = {rec['peak_z']:.2f} at {_xyz(rec['peak_mm'])} mm, "
                f"{rec['peak_distance_mm']:.1f} mm from the planted centre; "
                f"{100 * rec['sensitivity']:.0f}% of the {rec['n_planted_tested']} tested planted voxels "
                f"significant; {100 * rec['localised']:.0f}% of significant voxels within 10 mm of the region"
            )
        verdict = "RECOVERED" if rec["recovered"] else "NOT recovered"
        lines.append(f"planted region {verdict}")
        lines.append(f"outputs in {self.output}/ (open {REPORT_FILE} in a browser)")
        return "\n".join(lines)


def _xyz(values):
    return "(" + ", ".join(f"{v:.0f}" for v in values) + ")"


def recovery(result, truth_mask, center_mm, radius_mm, margin_mm=10.0):
    """How well the significant voxels of a VLSM recover a planted spherical region.

    Parameters
    ----------
    result : VLSMResult
    truth_mask : ndarray of bool, shape result.shape
        The planted region.
    center_mm : sequence of 3 floats
        Centre of the planted sphere (world mm).
    radius_mm : float
        Radius of the planted sphere (mm).
    margin_mm : float
        Significant voxels within ``radius_mm + margin_mm`` of the centre count as
        localised: lesions are spheres that often cover voxels beside the region too, so
        the association spills a little beyond it.

    Returns
    -------
    recovery : dict
        ``n_significant``, ``n_planted_voxels``, ``n_planted_tested`` (planted voxels that
        passed ``min_lesioned``), ``sensitivity`` (share of the *tested* planted voxels
        that are significant), ``localised`` (share of significant voxels within
        ``radius_mm + margin_mm`` of the centre), ``peak_mm`` and ``peak_z`` (significant
        voxel of largest ``|z|``), ``peak_distance_mm`` (from the centre),
        ``planted_center_mm`` and ``recovered``: True when at least half of the tested
        planted voxels are significant and the peak is positive and lies in the planted
        sphere, with one voxel diagonal of tolerance for the grid.
    """
    import nibabel as nib

    truth = np.asarray(truth_mask, dtype=bool)
    tested = np.asarray(result.mask_img.dataobj).astype(bool)
    sig = np.asarray(result.significant.dataobj).astype(bool)
    z = np.asarray(result.z.dataobj, dtype=np.float64).reshape(-1)
    center = np.asarray(center_mm, dtype=np.float64)
    ijk = np.indices(truth.shape).reshape(3, -1).T
    distance = np.linalg.norm(nib.affines.apply_affine(result.affine, ijk) - center, axis=1)
    sig_flat = np.flatnonzero(sig.reshape(-1))
    planted_tested = int((tested & truth).sum())
    out = {
        "n_significant": int(sig_flat.size),
        "n_planted_voxels": int(truth.sum()),
        "n_planted_tested": planted_tested,
        "planted_center_mm": center.tolist(),
        "sensitivity": float((sig & truth).sum() / planted_tested) if planted_tested else float("nan"),
        "localised": (float(np.mean(distance[sig_flat] <= radius_mm + margin_mm))
                      if sig_flat.size else float("nan")),
        "peak_mm": None,
        "peak_z": None,
        "peak_distance_mm": None,
        "recovered": False,
    }
    if sig_flat.size:
        peak = sig_flat[np.argmax(np.abs(z[sig_flat]))]
        tolerance = float(np.linalg.norm(nib.affines.voxel_sizes(result.affine)))
        out.update(
            peak_mm=nib.affines.apply_affine(result.affine, np.array(np.unravel_index(peak, truth.shape))).tolist(),
            peak_z=float(z[peak]),
            peak_distance_mm=float(distance[peak]),
        )
        out["recovered"] = bool(
            out["sensitivity"] >= 0.5 and z[peak] > 0 and distance[peak] <= radius_mm + tolerance
        )
    return out


def run_demo(
    output="lsm_demo",
    n_subjects=200,
    n_permutations=1000,
    random_state=0,
    overwrite=False,
    *,
    n_jobs=1,
    verbose=0,
):
    """Run the whole pipeline on a synthetic cohort with a planted effect and write the outputs.

    Parameters
    ----------
    output : str or Path
        Output folder (written atomically; see ``overwrite``).
    n_subjects : int
        Size of the synthetic cohort (one to three spherical lesions of 10-20 mm radius
        each; see :func:`lsm.simulate.make_synthetic_cohort`).
    n_permutations : int
        Permutations of the max-statistic FWE correction.
    random_state : int or None
        Seed of both the simulation and the permutations: the same seed gives the same
        cohort and the same result.
    overwrite : bool
        Replace an existing ``output`` folder; otherwise
        :class:`~lsm.exceptions.OutputExistsError` is raised before any work is done.
    n_jobs : int
        Parallel workers of the permutations (results do not depend on it).
    verbose : int
        Progress bar on the permutations when > 0.

    Returns
    -------
    run : DemoRun
        The cohort, the result, the cluster table and the recovery summary
        (``print(run.summary())``).

    Notes
    -----
    The folder holds ``vlsm_*`` maps (NIfTI + JSON sidecars, see
    :meth:`lsm.VLSMResult.save`; :meth:`lsm.VLSMResult.load` reads it back),
    ``vlsm_clusters.tsv``, ``desc-count_overlap.nii.gz`` (lesioned subjects per voxel),
    ``desc-planted_mask.nii.gz`` (the planted region), ``participants.tsv`` (the synthetic
    phenotype), ``dataset_description.json`` and ``report.html``.
    """
    import nibabel as nib

    from ._derivatives import dataset_description, move_result_files, write_json, write_nifti, write_tsv
    from ._vlsm import vlsm
    from .simulate import make_synthetic_cohort
    from .territory import overlap_map

    output = Path(output)
    n_subjects = int(n_subjects)
    if n_subjects < 10:
        raise ValueError(f"'n_subjects' must be at least 10 for a meaningful demo, got {n_subjects}.")
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        cohort = make_synthetic_cohort(n_subjects, lesion_radius=LESION_RADIUS_MM, random_state=random_state)
        logger.info("Synthetic cohort: %d subjects on a %s grid", len(cohort), cohort.shape)
        result = vlsm(
            cohort,
            "score",
            method="ttest",
            n_permutations=n_permutations,
            correction="fwe",
            # lsm.vlsm's default (5% of the subjects) is below 2 subjects under 40: a voxel
            # needs 2 lesioned and 2 spared subjects, so small demos use 2
            min_lesioned=0.05 if n_subjects >= 40 else 2,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        # maps, sidecars, vlsm.json, cluster table, dataset_description.json
        move_result_files(result, tmp, atlas=None)
        clusters = result.clusters(atlas=None)
        meta = cohort.metadata
        write_nifti(
            overlap_map(cohort, normalize=False),
            tmp / OVERLAP_FILE,
            "Number of subjects with a lesion in each voxel (lesion overlap map).",
        )
        write_nifti(
            nib.Nifti1Image(meta["truth_mask"].astype(np.uint8), cohort.affine),
            tmp / PLANTED_FILE,
            f"Planted region of the simulation: sphere of radius {meta['effect_radius']} mm at "
            f"{list(meta['effect_center'])} mm (1 inside).",
        )
        phenotype = cohort.phenotype.copy()
        phenotype["lesion_volume_ml"] = cohort.lesion_volumes
        write_tsv(
            phenotype,
            tmp / PARTICIPANTS_FILE,
            {
                "score": "Simulated deficit score (higher is worse).",
                "nihss": "Score rescaled to the NIHSS range (integer 0-42).",
                "mrs": "Score rescaled to the modified Rankin Scale (integer 0-6).",
                "age": "Simulated age (years).",
                "sex": "Simulated sex (M/F).",
                "lesion_volume_ml": "Lesion volume (ml).",
            },
        )
        rec = recovery(result, meta["truth_mask"], meta["effect_center"], meta["effect_radius"])
        write_json(tmp / "demo.json", {"Description": "lsm demo: planted-region recovery.", **rec})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedSubjectsWarning)
            result.to_html(tmp / REPORT_FILE, cohort=cohort, overwrite=True, atlas=None,
                           title="lsm demo: VLSM of a synthetic cohort with a planted region")
        # The VLSM result's dataset_description.json is replaced by one describing the folder.
        write_json(
            tmp / "dataset_description.json",
            dataset_description("lsm demo: VLSM of a synthetic cohort with a planted effect"),
            overwrite=True,
        )
    run = DemoRun(output=output, cohort=cohort, result=result, clusters=clusters, recovery=rec)
    return run
