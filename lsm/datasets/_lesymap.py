"""LESYMAP example data: 131 chronic left-hemisphere stroke lesions with a simulated score.

Layout of ``<data_dir>/lesymap/`` and upstream origin (GitHub dorianps/LESYMAP,
``inst/extdata``, Apache-2.0)::

    lesions/Subject_001..131.nii.gz          <- inst/extdata/lesions/
    behavior.txt                             <- inst/extdata/behavior/behavior.txt
    template/ch2.nii.gz                      <- inst/extdata/template/ch2.nii.gz
    template/Parcellation_403areas.nii.gz    <- inst/extdata/template/

The score is simulated from the lesion load of parcel 101 of ``Parcellation_403areas``
(source: the LESYMAP wiki page "Data", https://github.com/dorianps/LESYMAP/wiki/Data:
"These scores are not real, they are simulated from area 101 of the ch2 parcellation
template"). Checked on the data: of the 403 parcels, the lesion load (fraction of the
parcel lesioned) of parcel 101 has the strongest correlation with the score
(Pearson r = -0.84; next best parcel 100, r = -0.81); see tests/test_datasets_soop_lesymap.py.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import DataFetchError
from ._fetch import fetch_dataset

__all__ = ["LesymapFiles", "fetch_lesymap_example", "load_lesymap_example", "TRUTH_LABEL"]

DATASET = "lesymap"
TRUTH_LABEL = 101
LICENCE = "Apache-2.0"
CITATION = (
    "Pustina D, et al. Improved accuracy of lesion to symptom mapping with multivariate "
    "sparse canonical correlations. Neuropsychologia 115:154-166 (2018)."
)
DESCRIPTION = (
    "LESYMAP example data: 131 real chronic left-hemisphere stroke lesions (Moss "
    "Rehabilitation Research Institute) in MRIcron 'ch2' (Colin27, MNI) space, "
    "181x217x181, 1 mm, with one simulated behavioural score per subject: higher lesion "
    f"load in parcel {TRUTH_LABEL} of Parcellation_403areas lowers the score (plus noise). "
    "A correct lesion-symptom mapping recovers that parcel."
)
_SUBJECT_RE = re.compile(r"Subject_(\d+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class LesymapFiles:
    """Paths of the LESYMAP example data (see :func:`fetch_lesymap_example`)."""

    root: Path
    lesions: list
    behavior: Path
    template: Path
    parcellation: Path
    truth_label: int = TRUTH_LABEL
    description: str = DESCRIPTION
    licence: str = LICENCE
    citation: str = CITATION

    def __repr__(self):
        return f"LesymapFiles({len(self.lesions)} lesions, truth parcel {self.truth_label})"


def fetch_lesymap_example(data_dir=None, url=None, verify=False, n_jobs=8):
    """Paths of LESYMAP's example lesions, score file, template and parcellation.

    Parameters
    ----------
    data_dir : str or Path or None
        Data directory (default ``LSM_DATA``, else ``~/lsm_data``); files live in
        ``<data_dir>/lesymap/``.
    url : str or None
        Mirror laid out like ``shared/data`` (default ``LSM_DATA_URL``, else GitHub).
    verify : bool
        Check the sha256 of files already present.
    n_jobs : int
        Parallel downloads.

    Returns
    -------
    LesymapFiles
        ``lesions`` (131 paths, file order = score order), ``behavior``, ``template``
        (ch2), ``parcellation`` (403 areas, same grid) and ``truth_label`` (101, the
        parcel the score was simulated from).
    """
    root = fetch_dataset(DATASET, data_dir=data_dir, url=url, verify=verify, n_jobs=n_jobs)
    lesions = sorted((p for p in (root / "lesions").glob("Subject_*.nii.gz") if _SUBJECT_RE.search(p.name)),
                     key=lambda p: int(_SUBJECT_RE.search(p.name).group(1)))
    return LesymapFiles(
        root=root,
        lesions=lesions,
        behavior=root / "behavior.txt",
        template=root / "template" / "ch2.nii.gz",
        parcellation=root / "template" / "Parcellation_403areas.nii.gz",
    )


def _read_scores(path, n_expected):
    scores = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if scores.size != n_expected:
        raise DataFetchError(
            f"{str(path)!r} holds {scores.size} scores but there are {n_expected} lesion "
            "files; the LESYMAP example data are incomplete. Delete the lesymap folder "
            "and fetch again."
        )
    return scores


def load_lesymap_example(data_dir=None, url=None, **kwargs):
    """LESYMAP's 131 lesions with their simulated score, as a Cohort.

    Subjects are ``sub-001`` .. ``sub-131`` (from ``Subject_001`` ...); the phenotype
    column ``score`` is read from ``behavior.txt`` in file order. Masks are in ch2
    (Colin27) MNI space (``space="MNI"``; note ch2 is not the FSL MNI152 grid).

    Parameters
    ----------
    data_dir, url : see :func:`fetch_lesymap_example`.
    **kwargs
        Passed to :func:`lsm.load_cohort`.

    Returns
    -------
    Cohort
        ``metadata["truth_label"]`` is the parcel (101) the score was simulated from and
        ``metadata["files"]`` the :class:`LesymapFiles`.
    """
    from ._layouts import _join

    files = fetch_lesymap_example(data_dir=data_dir, url=url)
    scores = _read_scores(files.behavior, len(files.lesions))
    subjects = [f"sub-{_SUBJECT_RE.search(p.name).group(1)}" for p in files.lesions]
    phenotype = pd.DataFrame({"participant_id": subjects, "score": scores})
    dictionary = {"score": {
        "Description": f"Simulated behavioural score (LESYMAP example): lower with more "
                       f"lesion load in parcel {TRUTH_LABEL} of Parcellation_403areas, plus noise.",
        "type": "number",
        "Source": ["LESYMAP"],
    }}
    if "dictionary" in kwargs and kwargs["dictionary"] is not None:
        from ..dictionary import load_dictionary

        dictionary = load_dictionary(dictionary).merged(load_dictionary(kwargs.pop("dictionary")))
    kwargs.pop("dictionary", None)
    meta = {"dataset": "LESYMAP", "description": DESCRIPTION, "licence": LICENCE,
            "citation": CITATION, "truth_label": TRUTH_LABEL, "files": files,
            "template": files.template, "parcellation": files.parcellation}
    kwargs["dictionary"] = dictionary
    return _join(dict(zip(subjects, map(str, files.lesions))), phenotype, kwargs, meta, {})
