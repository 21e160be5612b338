"""Native-space lesion masks to MNI space (ANTs), with QC; an optional extra.

Install with ``pip install "lsm[registration]"`` (ANTsPy). ``import lsm`` never imports
ANTs: it is imported inside the functions that need it.
"""

from ._register import ATLAS_TEMPLATE_SPACE, DEFAULT_TEMPLATE_SPACE, register_lesions
from ._result import RegistrationResult
from ._synthetic import synthetic_case

__all__ = ["register_lesions", "RegistrationResult", "synthetic_case", "DEFAULT_TEMPLATE_SPACE",
           "ATLAS_TEMPLATE_SPACE"]
