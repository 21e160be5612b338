"""The demo: the whole pipeline on a synthetic cohort with a planted effect, no download.

``lsm demo --output lsm_demo`` (the README's first command) calls :func:`run_demo`:

1. :func:`lsm.simulate.make_synthetic_cohort` builds a small cohort (4 mm grid) whose
   ``score`` is higher when one spherical region is lesioned;
2. :func:`lsm.vlsm` runs a voxel-wise t-test with 1,000 permutations and max-statistic
   FWE correction;
3. the output folder receives the maps with their JSON sidecars (:meth:`VLSMResult.save`),
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

#: Files written by :func:`run_demo` besides those of :meth:`VLSMResult.save`.
OVERLAP_FILE = "desc-overlap_map.nii.gz"
PLANTED_FILE = "desc-planted_mask.nii.gz"
PARTICIPANTS_FILE = "participants.tsv"
REPORT_FILE = "report.html"


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
        """A few lines for the terminal: cohort, analysis, recovery, files."""
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
                f"{100 * rec['sensitivity']:.0f}% of the planted region detected, "
                f"{100 * rec['precision']:.0f}% of significant voxels inside it"
            )
        verdict = "RECOVERED" if rec["recovered"] else "NOT recovered"
        lines.append(f"planted region {verdict}")
        lines.append(f"outputs in {self.output}/ (open {REPORT_FILE} in a browser)")
        return "\n".join(lines)


def _xyz(values):
    return "(" + ", ".join(f"{v:.0f}" for v in values) + ")"


def recovery(result, truth_mask, center_mm, radius_mm):
    """How well significant voxels recover a planted region.

    Parameters
    ----------
    result : VLSMResult
    truth_mask : ndarray of bool, shape result.shape
        The planted region.
    center_mm : sequence of 3 floats
        Centre of the planted sphere (world mm).
    radius_mm : float
        Radius of the planted sphere (mm).

    Returns
    -------
    recovery : dict
        ``n_significant``, ``n_planted_voxels``, ``sensitivity`` (share of planted voxels
        that are significant), ``precision`` (share of significant voxels in the planted
        region), ``peak_mm`` and ``peak_z`` (voxel of largest ``|z|`` among significant
        voxels), ``peak_distance_mm`` (from the planted centre), ``planted_center_mm`` and
        ``recovered``: True when the peak lies inside the planted sphere (within one voxel
        diagonal of tolerance, since the sphere is drawn on a grid).
    """
    import nibabel as nib

    truth = np.asarray(truth_mask, dtype=bool)
    sig = np.asarray(result.significant.dataobj).astype(bool)
    z = np.asarray(result.z.dataobj, dtype=np.float64)
    n_sig = int(sig.sum())
    center = np.asarray(center_mm, dtype=np.float64)
    out = {
        "n_significant": n_sig,
        "n_planted_voxels": int(truth.sum()),
        "planted_center_mm": center.tolist(),
        "sensitivity": float((sig & truth).sum() / truth.sum()) if truth.any() else float("nan"),
        "precision": float((sig & truth).sum() / n_sig) if n_sig else float("nan"),
        "peak_mm": None,
        "peak_z": None,
        "peak_distance_mm": None,
        "recovered": False,
    }
    if n_sig:
        flat = np.flatnonzero(sig.reshape(-1))
        peak = flat[np.argmax(np.abs(z.reshape(-1)[flat]))]
        ijk = np.array(np.unravel_index(peak, sig.shape), dtype=np.float64)
        xyz = nib.affines.apply_affine(result.affine, ijk)
        distance = float(np.linalg.norm(xyz - center))
        tolerance = float(np.linalg.norm(nib.affines.voxel_sizes(result.affine)))
        out.update(
            peak_mm=xyz.tolist(),
            peak_z=float(z.reshape(-1)[peak]),
            peak_distance_mm=distance,
            recovered=bool(distance <= radius_mm + tolerance and z.reshape(-1)[peak] > 0),
        )
    return out


def run_demo(
    output="lsm_demo",
    n_subjects=120,
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
        Size of the synthetic cohort.
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
    ``vlsm_clusters.tsv``, ``desc-overlap_map.nii.gz`` (lesioned subjects per voxel),
    ``desc-planted_mask.nii.gz`` (the planted region), ``participants.tsv`` (the synthetic
    phenotype), ``dataset_description.json`` and ``report.html``.
    """
    import nibabel as nib

    from ._derivatives import dataset_description, move_result_files, write_json, write_nifti, write_tsv
    from .simulate import make_synthetic_cohort
    from .territory import overlap_map
    from .vlsm import vlsm

    output = Path(output)
    n_subjects = int(n_subjects)
    if n_subjects < 10:
        raise ValueError(f"'n_subjects' must be at least 10 for a meaningful demo, got {n_subjects}.")
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        cohort = make_synthetic_cohort(n_subjects, random_state=random_state)
        logger.info("Synthetic cohort: %d subjects on a %s grid", len(cohort), cohort.shape)
        result = vlsm(
            cohort,
            "score",
            method="ttest",
            n_permutations=n_permutations,
            correction="fwe",
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
            result.to_html(tmp / REPORT_FILE, cohort=cohort, overwrite=True, atlas=None)
        # The VLSM result's dataset_description.json is replaced by one describing the folder.
        write_json(
            tmp / "dataset_description.json",
            dataset_description("lsm demo: VLSM of a synthetic cohort with a planted effect"),
            overwrite=True,
        )
    run = DemoRun(output=output, cohort=cohort, result=result, clusters=clusters, recovery=rec)
    return run
