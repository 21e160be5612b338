"""MNI template variants: which one an image is in, and a warning when two are mixed.

nilearn's bundled template (the default registration target, no download) is ICBM152
2009a symmetric (``MNI152NLin2009aSym``); the arterial atlas and the SOOP masks are on
FSL's MNI152 (``MNI152NLin6Asym``). Both use MNI world coordinates, so lesions registered
to the first are resampled onto the atlas's grid directly, but the two templates' brains
differ by a few mm (more at the cortex), so a territory load computed across variants is
approximate. lsm records the variant (``space-`` entity, sidecar ``Space``,
``Cohort.metadata["template_space"]``) and warns instead of mixing them silently.
"""

import warnings

__all__ = ["warn_mixed_spaces", "ATLAS_SPACE"]

#: The template the arterial atlas (and the SOOP masks) were drawn on.
ATLAS_SPACE = "MNI152NLin6Asym"


def warn_mixed_spaces(cohort, what, atlas_space=ATLAS_SPACE, stacklevel=3):
    """Warn when ``cohort`` was registered to a template other than ``atlas_space``."""
    from ..exceptions import TemplateSpaceWarning

    space = (getattr(cohort, "metadata", None) or {}).get("template_space")
    if space and space != atlas_space:
        warnings.warn(
            f"The lesions were registered to {space}, but {what} is on {atlas_space}; the two MNI "
            "templates differ by a few mm, so territory values are approximate. Register to a "
            f"{atlas_space} template (register_lesions(template=...)) for exact correspondence.",
            TemplateSpaceWarning, stacklevel=stacklevel)
        return True
    return False
