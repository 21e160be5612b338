"""ISLES'24 end to end: each subject's NCCT (or DWI/ADC) and follow-up mask registered to MNI, cached.

ISLES'24 training layout (Riedel, de la Rosa et al. 2024)::

    <root>/raw_data/sub-strokeXXXX/ses-01/sub-strokeXXXX_ses-01_ncct.nii.gz
    <root>/derivatives/sub-strokeXXXX/ses-02/sub-strokeXXXX_ses-02_space-ncct_dwi.nii.gz
    <root>/derivatives/sub-strokeXXXX/ses-02/sub-strokeXXXX_ses-02_space-ncct_adc.nii.gz
    <root>/derivatives/sub-strokeXXXX/ses-02/sub-strokeXXXX_ses-02_space-ncct_lesion-msk.nii.gz

The follow-up mask is in NCCT space, so it shares its grid with the NCCT and with the
NCCT-space DWI/ADC. The registration is written (BIDS derivatives, resumable) to
``<root>/derivatives/lsm-registration_<image>`` unless another folder is given.
"""

import re
from pathlib import Path

from .._validation import check_option
from ..exceptions import CohortError

__all__ = ["register_isles24", "isles24_images"]

_PATTERNS = {
    "ncct": ("raw_data", re.compile(r"_ncct\.nii(\.gz)?$")),
    "dwi": ("derivatives", re.compile(r"_space-ncct_dwi\.nii(\.gz)?$")),
    "adc": ("derivatives", re.compile(r"_space-ncct_adc\.nii(\.gz)?$")),
}
_MODALITY = {"ncct": "ct", "dwi": "dwi", "adc": "dwi"}
_SUB = re.compile(r"(sub-[A-Za-z0-9]+)")


def isles24_images(root, image="ncct"):
    """{subject: path} of the scans to register (``image``: "ncct", "dwi" or "adc")."""
    check_option("image", image, tuple(_PATTERNS))
    folder, pattern = _PATTERNS[image]
    found = {}
    for path in sorted((Path(root) / folder).rglob("*.nii*")):
        match = _SUB.search(path.name)
        if match and pattern.search(path.name):
            found.setdefault(match.group(1), path)
    if not found:
        raise CohortError(f"No ISLES'24 {image} scan (*{pattern.pattern}) under {str(Path(root) / folder)!r}.")
    return found


def register_isles24(root, masks, *, image="ncct", output=None, overwrite=False, n_jobs=1, random_state=0,
                     verbose=0, **kwargs):
    """Register ISLES'24 masks to MNI with their ``image`` scans; cached in ``output`` (resumable).

    Returns the :class:`RegistrationResult` of every subject in ``output`` (earlier runs included).
    """
    from ._cli import merge_results, write_resumable
    from ._register import register_lesions
    from ._result import RegistrationResult

    scans = isles24_images(root, image)
    out = Path(output) if output is not None else Path(root) / "derivatives" / f"lsm-registration_{image}"
    previous = None
    if (out / "registration.json").exists() and not overwrite:
        previous = RegistrationResult.load(out)
    done = set(previous.qc.index) | set(previous.excluded["subject"]) if previous is not None else set()
    todo = sorted(set(masks) - done)
    if not todo:
        return previous
    result = register_lesions({s: scans[s] for s in todo if s in scans}, {s: masks[s] for s in todo},
                              modality=_MODALITY[image], n_jobs=n_jobs, random_state=random_state,
                              verbose=verbose, **kwargs)
    if previous is not None:
        result = merge_results(previous, result)
    write_resumable(result, out, new=[s for s in todo if s in result.lesions])
    return result
