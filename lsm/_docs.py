"""The shared vocabulary: parameter descriptions written once.

Every public function that takes one of these parameters documents it with a
``%(name)s`` placeholder filled by :func:`fill_doc`, so that a parameter name means the
same thing, takes the same values and has the same default in every function, on the
command line (``--kebab-case`` of the same name) and in the documentation.
"""

__all__ = ["docdict", "fill_doc"]

docdict = {}

docdict["score"] = """score : str
    Phenotype column holding the clinical score (e.g. ``"nihss"``)."""

docdict["covariates"] = """covariates : str or list of str, optional
    Phenotype columns entering the model as nuisance variables (text columns are
    dummy-coded)."""

docdict["lesion_volume"] = """lesion_volume : {None, "covariate", "dtlvc"}
    Lesion-volume control. ``None``: none. ``"covariate"``: lesion volume is a
    nuisance covariate of the score (entered as ``volume_transform`` says).
    ``"dtlvc"``: direct total lesion volume control, each subject's lesion vector is
    divided by the square root of its lesion volume (subjects without a lesion are
    excluded and listed in ``excluded``)."""

docdict["volume_transform"] = """volume_transform : {"linear", "log"}
    How lesion volume enters a model wherever it does (as a covariate or a
    predictor): ``"linear"``, in ml; ``"log"``, log10 of the volume in ml (every
    analysed subject then needs a non-empty lesion)."""

docdict["min_lesioned"] = """min_lesioned : int or float, default=0.05
    A unit (voxel or territory) is tested only when at least this many subjects are
    lesioned there and at least this many are not. An int is a number of subjects; a
    float in (0, 1) is a fraction ``f`` of the analysed subjects, meaning
    ``ceil(f * N)``. The count must be at least 2; the resolved count is recorded in
    ``params["min_lesioned_count"]``."""

docdict["atlas"] = """atlas : "arterial", str, path, Nifti1Image or None, default="arterial"
    Label atlas. ``"arterial"``: the arterial territories atlas of Liu et al. (2023)
    at the chosen ``level``; a path or image: a label image (with labels from a
    ``.tsv`` beside it); ``None``: no atlas (no labels)."""

docdict["correction"] = """correction : str, default="fwe"
    Multiple-comparison correction. ``"fwe"``: family-wise error, maximum statistic
    over the tested units in each permutation. ``"cfwer"``: the v-th largest statistic
    (at most ``v - 1`` false positive voxels with probability ``1 - alpha``, Mirman et
    al. 2018). ``"fdr_bh"`` / ``"fdr_by"``: false discovery rate (Benjamini-Hochberg /
    Benjamini-Yekutieli). ``"cluster_size"`` / ``"cluster_mass"``: cluster-level FWE
    with clusters formed at ``cluster_forming_p``. ``"tfce"``: threshold-free cluster
    enhancement, FWE on its maximum. ``"none"``: uncorrected."""

docdict["cluster_forming_p"] = """cluster_forming_p : float, default=0.001
    Uncorrected p-value forming clusters for ``"cluster_size"`` and
    ``"cluster_mass"`` (per tail when two-sided). It is a p-value, not a cluster
    size."""

docdict["alternative"] = """alternative : {"two-sided", "greater", "less"}, default="two-sided"
    Alternative hypothesis. ``"greater"``: damage goes with a higher score
    (positive statistic); ``"less"``: with a lower score."""

docdict["n_permutations"] = """n_permutations : int, default=5000
    Number of random permutations of the score, all drawn up front from
    ``random_state``."""

docdict["alpha"] = """alpha : float, default=0.05
    Significance level: a unit is significant when its corrected p-value is <=
    ``alpha``."""

docdict["random_state"] = """random_state : None, int or numpy.random.Generator, default=None
    Seed of every random draw (permutations, bootstrap, cross-validation folds).
    ``None`` draws a seed and records it in ``provenance["random_state"]``, so that
    the run can be repeated."""

docdict["n_jobs"] = """n_jobs : int, default=1
    Number of joblib workers (-1: all cores). The result does not depend on it."""

docdict["verbose"] = """verbose : int, default=0
    Progress bars and log messages when > 0."""

docdict["data_dir"] = """data_dir : str or path, optional
    Data folder; default: the ``LSM_DATA`` environment variable, else ``~/lsm_data``."""

docdict["overwrite"] = """overwrite : bool, default=False
    Replace an existing output. Outputs are written atomically either way."""

docdict["level"] = """level : {1, 2}, default=1
    Arterial atlas level: 1, the 32 fine territories; 2, the 10 major ones
    (ACA, MCA, PCA, vertebro-basilar, lateral ventricles, left and right)."""


docdict["lesion_volume_multivariate"] = """lesion_volume : {None, "dtlvc", "covariate", "lesion", "both", \
"dtlvc+covariate"}, default="both"
    Lesion-volume control of a multivariate model (DeMarco & Turkeltaub 2018).
    ``None``: none. ``"dtlvc"``: direct total lesion volume control, each subject's
    lesion vector is divided by the square root of its number of lesioned voxels on the
    grid, as the SVR-LSM GUI does (the whole lesion has unit norm, its part in the tested
    voxels a norm of at most 1; subjects without a lesioned voxel are excluded and listed
    in ``excluded``).
    ``"covariate"``: lesion volume is regressed out of the score. ``"lesion"``: lesion
    volume is regressed out of every voxel's lesion data. ``"both"``: out of the score
    and of the lesion data (DeMarco & Turkeltaub's recommendation). ``"dtlvc+covariate"``:
    dTLVC and volume regressed out of the score (LESYMAP's ``lsm_svr``). Every
    regression has an intercept; volume enters as ``volume_transform`` says."""

def fill_doc(obj):
    """Fill the ``%(name)s`` placeholders of ``obj.__doc__`` from :data:`docdict`.

    Parameter descriptions are indented to the level of the placeholder. Under
    ``python -OO`` docstrings are ``None`` and ``obj`` is returned unchanged.

    Parameters
    ----------
    obj : callable or class
        The object whose docstring to fill.

    Returns
    -------
    obj : callable or class
        The same object.
    """
    doc = obj.__doc__
    if not doc:
        return obj
    lines = doc.splitlines()
    indent = ""
    for line in lines[1:]:
        if line.strip():
            indent = line[: len(line) - len(line.lstrip())]
            break
    filled = {k: v.replace("\n", "\n" + indent) for k, v in docdict.items()}
    try:
        obj.__doc__ = doc % filled
    except (KeyError, ValueError, TypeError) as err:
        raise RuntimeError(f"Error filling the docstring of {obj.__qualname__}: {err}") from err
    return obj
