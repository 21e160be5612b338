"""Stroke Outcome Optimization Project (SOOP): 1,449 acute stroke lesions in MNI space.

Layout of ``<data_dir>/soop/`` and upstream origin (GitHub
neurolabusc/StrokeOutcomeOptimizationProjectDemo, commit 45f40a9, BSD-2-Clause)::

    lesions/bwsrsub-<ID>_lesion.nii.gz   <- NIfTI/bwsrsub-<ID>_lesion.nii.gz (1,449 masks)
    participants.tsv                     <- Scripts/participants.tsv (1,505 rows)
    atlas/ArterialAtlas136.nii.gz, .txt  <- NIfTI/ArterialAtlas136.*
    artery_reference.tsv                 <- Scripts/artery.tsv
    lesion_mean.nii.gz                   <- NIfTI/lesion_mean_1449.nii.gz
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from ._fetch import fetch_dataset

__all__ = ["SOOPFiles", "fetch_soop", "load_soop"]

logger = logging.getLogger("lsm")

DATASET = "soop"
LICENCE = "BSD-2-Clause (derived files); images from OpenNeuro ds004889 (CC0)"
CITATION = (
    "Absher J, et al. The stroke outcome optimization project: Acute ischemic strokes from "
    "a comprehensive stroke center. Sci Data 11:839 (2024). doi:10.1038/s41597-024-03667-5"
)
DESCRIPTION = (
    "SOOP: 1,449 binary acute ischaemic stroke lesion masks drawn on DWI and normalised to "
    "MNI space (157x189x136, 1 mm, LAS), with participants.tsv (1,505 rows: sex, age "
    "('89+' top-coded), race, acuteischaemicstroke, priorstroke, bmi, nihss, "
    "gs_rankin_6isdeath). Not every mask has a participants row and not every row has a "
    "mask. Some masks need QC (a few are about 850 ml and bilateral)."
)


@dataclass(frozen=True)
class SOOPFiles:
    """Paths of the SOOP files (see :func:`fetch_soop`)."""

    root: Path
    lesions: list
    participants: Path
    atlas: Path
    atlas_labels: Path
    artery_reference: Path
    lesion_mean: Path
    description: str = DESCRIPTION
    licence: str = LICENCE
    citation: str = CITATION

    def __repr__(self):
        return f"SOOPFiles({len(self.lesions)} lesion masks in {str(self.root)!r})"


def fetch_soop(data_dir=None, url=None, verify=False, n_jobs=8):
    """Paths of the SOOP lesion masks and tables, downloading missing files.

    Parameters
    ----------
    data_dir : str or Path or None
        Data directory (default ``LSM_DATA``, else ``~/lsm_data``); files live in
        ``<data_dir>/soop/``. A folder that already holds them is used as is.
    url : str or None
        Mirror laid out like ``shared/data`` (default ``LSM_DATA_URL``, else GitHub).
    verify : bool
        Check the sha256 of files already present.
    n_jobs : int
        Parallel downloads (1,456 small files, about 18 MB).

    Returns
    -------
    SOOPFiles
        ``lesions`` (list of 1,449 paths), ``participants``, ``atlas``
        (ArterialAtlas136 on the lesion grid), ``atlas_labels``, ``artery_reference``
        (per-subject fraction of each territory lesioned, an independent reference;
        it omits label 32 and repeats the upstream abbreviation typos of labels
        10/12/14/16 in its column names), ``lesion_mean``.
    """
    root = fetch_dataset(DATASET, data_dir=data_dir, url=url, verify=verify, n_jobs=n_jobs)
    return SOOPFiles(
        root=root,
        lesions=sorted((root / "lesions").glob("bwsrsub-*_lesion.nii.gz")),
        participants=root / "participants.tsv",
        atlas=root / "atlas" / "ArterialAtlas136.nii.gz",
        atlas_labels=root / "atlas" / "ArterialAtlas136.txt",
        artery_reference=root / "artery_reference.tsv",
        lesion_mean=root / "lesion_mean.nii.gz",
    )


def load_soop(data_dir=None, url=None, **kwargs):
    """Load the SOOP cohort: 1,449 lesion masks joined with ``participants.tsv``.

    Parameters
    ----------
    data_dir, url : see :func:`fetch_soop`.
    **kwargs
        Passed to :func:`lsm.load_cohort` (``target_img``, ``n_jobs``, ``coerce``...).

    Returns
    -------
    Cohort
        1,265 subjects have both a mask and a participants row (944 with ``nihss``,
        618 with ``gs_rankin_6isdeath``); ``excluded`` lists the 184 masks without a
        participants row and the 240 rows without a mask. Columns keep their SOOP names
        (``nihss``, ``gs_rankin_6isdeath``: mRS 0-6 with 6 = death); see the data
        dictionary. ``metadata`` holds the description, licence and citation.
    """
    from ._layouts import _join

    files = fetch_soop(data_dir=data_dir, url=url)
    meta = {"dataset": "SOOP", "description": DESCRIPTION, "licence": LICENCE,
            "citation": CITATION, "files": files}
    return _join(files.root / "lesions", files.participants, kwargs, meta, {})
