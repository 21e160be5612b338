"""The ``lsm`` command line.

::

    lsm demo --output lsm_demo
    lsm vlsm --lesions lesions/ --phenotype participants.tsv --score nihss --output out/
    lsm territory-load --lesions lesions/ --output loads/
    lsm descriptors --lesions lesions/ --output descriptors/
    lsm overlap --lesions lesions/ --output overlap/
    lsm correlate --lesions lesions/ --phenotype participants.tsv --score nihss --output corr/
    lsm report out/ --output out/report.html

Every subcommand writes a BIDS-derivatives-style folder (NIfTI maps with JSON sidecars, TSV
tables with JSON column sidecars, ``dataset_description.json``) atomically, and refuses to
replace an existing output unless ``--overwrite`` is given. A user error (missing file,
invalid mask or phenotype, bad value) prints one line ``lsm: error: ...`` and exits with
status 1 (``--debug`` shows the full traceback instead); a usage error (unknown or missing
option) prints one line ``lsm <command>: error: ...`` and exits with status 2.
"""

import argparse
import logging
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path

from . import __version__

__all__ = ["main", "build_parser"]

logger = logging.getLogger("lsm")

#: exit statuses
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

_EPILOG = (
    "Inputs: --lesions takes a folder (searched recursively), a quoted glob pattern "
    "('masks/*_lesion.nii.gz') or a list of files; subject IDs come from the BIDS 'sub-<label>' "
    "entity of each file name. --phenotype takes a TSV (BIDS participants.tsv), CSV or XLSX file; "
    "'n/a' is missing."
)


# ----------------------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default when it is informative (not None, False or suppressed)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and not any(default is v for v in (None, False, argparse.SUPPRESS))
            and action.option_strings
            and action.nargs != 0
        ):
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            text += f" (default: {shown})"
        return text


def _global_options(parser, suppress):
    """--quiet/--debug, accepted before and after the subcommand.

    The copies on the subcommands default to SUPPRESS so that they do not reset a value
    given before the subcommand.
    """
    default = argparse.SUPPRESS if suppress else False
    group = parser.add_argument_group("general options")
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default,
        help="no progress bars and no messages except errors",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default,
        help="log what is being done (files read, grid, tested voxels...)",
    )
    group.add_argument(
        "--debug", action="store_true", default=default,
        help="show the full traceback of an error, and debug messages",
    )


def _output_options(parser, what="folder", default=None):
    parser.add_argument("-o", "--output", required=default is None, type=Path, default=default,
                        help=f"output {what}")
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace the output {what} if it exists"
    )


def _cohort_options(parser, phenotype_required):
    group = parser.add_argument_group("input cohort (as in lsm.load_cohort)")
    group.add_argument(
        "-l", "--lesions", required=True, nargs="+", metavar="PATH",
        help="lesion masks: a folder, a quoted glob pattern, or files",
    )
    group.add_argument(
        "-p", "--phenotype", required=phenotype_required, metavar="FILE",
        help="phenotype table (.tsv, .csv or .xlsx)"
        + ("" if phenotype_required else "; optional, the subjects are then those of the masks"),
    )
    group.add_argument(
        "--id-column", default="participant_id", help="phenotype column holding subject IDs"
    )
    grid = group.add_mutually_exclusive_group()
    grid.add_argument(
        "--target-img", metavar="NIFTI",
        help="common grid of the masks (default: the grid of the first mask)",
    )
    grid.add_argument(
        "--voxel-size", type=float, metavar="MM",
        help="resample the masks to the MNI152 grid at this voxel size (e.g. 2)",
    )
    group.add_argument(
        "--mask-threshold", type=float, default=None, metavar="T",
        help="voxels > T are lesioned (for probabilistic or 0/255 masks); default: masks must be 0/1",
    )
    group.add_argument(
        "--dictionary", metavar="JSON", help="data dictionary merged over the bundled one"
    )
    group.add_argument(
        "--coerce", action="store_true",
        help="turn phenotype values that fail the data dictionary into missing values instead of failing",
    )
    group.add_argument("--n-jobs", type=int, default=1, help="parallel workers (-1: all cores)")


def _data_dir_option(group):
    group.add_argument(
        "--data-dir", metavar="DIR",
        help="folder holding (or receiving) the arterial atlas, as the LSM_DATA environment variable; "
        "default: $LSM_DATA, else ~/lsm_data",
    )


def _atlas_options(parser, custom=True):
    """--atlas (a custom label image) for territory commands; --no-territories for cluster tables."""
    group = parser.add_argument_group("atlas")
    if custom:
        group.add_argument(
            "--atlas", metavar="NIFTI",
            help="integer label image with a label table (.tsv/.csv/.txt) of the same stem beside it; "
            "default: the arterial territory atlas of Liu et al. (2023)",
        )
    else:
        group.add_argument(
            "--no-territories", action="store_true",
            help="do not label clusters with arterial territories (no atlas needed)",
        )
    _data_dir_option(group)


def _add(subparsers, parent, name, help, description):
    return subparsers.add_parser(
        name, parents=[parent], help=help, description=description, epilog=_EPILOG,
        formatter_class=_Formatter,
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other lsm error."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    """The :class:`argparse.ArgumentParser` of the ``lsm`` command."""
    parser = _Parser(
        prog="lsm",
        # no prefix matching at the top level: it would read a subcommand's --v (CFWER) as
        # an ambiguous --version/--verbose
        allow_abbrev=False,
        description="Lesion-symptom mapping for stroke research: VLSM with permutation "
        "inference, arterial-territory lesion load, lesion descriptors and clinical correlations.",
        epilog="Run 'lsm <command> --help' for the options of a command.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"lsm {__version__}")
    _global_options(parser, suppress=False)
    parent = argparse.ArgumentParser(add_help=False)
    _global_options(parent, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    sub.required = True

    # demo ------------------------------------------------------------------------------
    p = _add(
        sub, parent, "demo", "run the whole pipeline on a synthetic cohort (no download)",
        "Build a small synthetic cohort with a planted lesion-deficit region, run a voxel-wise "
        "t-test with max-statistic FWE permutation correction, and write the maps, the cluster "
        "table, the overlap map and an HTML report (report.html).",
    )
    _output_options(p, default=Path("lsm_demo"))
    p.add_argument("--n-subjects", type=int, default=200, help="size of the synthetic cohort")
    p.add_argument("--n-permutations", type=int, default=1000, help="permutations (FWE)")
    p.add_argument("--random-state", type=int, default=0, help="seed of the simulation and permutations")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel workers (results do not depend on it)")
    p.set_defaults(func=_cmd_demo)

    # vlsm ------------------------------------------------------------------------------
    p = _add(
        sub, parent, "vlsm", "voxel-based lesion-symptom mapping",
        "Voxel-wise test of a score between lesioned and spared subjects, with permutation "
        "inference. Writes the maps (NIfTI + JSON), vlsm.json, the cluster table, the null "
        "distribution, the list of excluded subjects and report.html.",
    )
    _cohort_options(p, phenotype_required=True)
    _output_options(p)
    g = p.add_argument_group("analysis (as in lsm.vlsm)")
    g.add_argument("-s", "--score", required=True, help="phenotype column to map (e.g. nihss)")
    g.add_argument("--method", default="ttest",
                   help="ttest, welch, brunner_munzel, regression (with covariates) or liebermeister")
    g.add_argument("--covariates", nargs="+", default=None, metavar="COLUMN",
                   help="phenotype columns entering the model (method regression)")
    g.add_argument("--lesion-volume", default="none", choices=["none", "covariate", "dtlvc"],
                   help="lesion-volume control with method regression: volume as a covariate, or "
                   "direct total lesion volume control (dtlvc)")
    g.add_argument("--volume-transform", default="linear", choices=["linear", "log"],
                   help="how lesion volume enters the model with --lesion-volume covariate: ml or log10 ml")
    g.add_argument("--n-permutations", type=int, default=5000, help="permutations")
    g.add_argument("--correction", default="fwe",
                   help="fwe, cfwer, fdr_bh, fdr_by, cluster_size, cluster_mass, tfce or none")
    g.add_argument("--cluster-forming-p", type=float, default=None, metavar="P",
                   help="uncorrected p forming clusters (cluster_size, cluster_mass); a p-value, not a size")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level")
    g.add_argument("--alternative", default="two-sided", help="two-sided, greater or less")
    g.add_argument("--min-lesioned", default=None, metavar="N",
                   help="test voxels lesioned (and spared) in at least N subjects, or this fraction of "
                   "them (a number < 1); default 0.05")
    g.add_argument("--v", type=int, default=None, help="correction cfwer: false positive voxels tolerated")
    g.add_argument("--random-state", type=int, default=0, help="seed of the permutations")
    g.add_argument("--no-report", action="store_true", help="do not write report.html")
    _atlas_options(p, custom=False)
    p.set_defaults(func=_cmd_vlsm)
    _add_svr_lsm(sub, parent)

    # territory-load ----------------------------------------------------------------------
    p = _add(
        sub, parent, "territory-load", "lesion load in each arterial territory",
        "Lesion load of each subject in each territory of the arterial atlas (levels 1 and/or 2), "
        "as a TSV table per level, and a TSV summary of the distribution of lesions across "
        "territories and hemispheres.",
    )
    _cohort_options(p, phenotype_required=False)
    _output_options(p)
    p.add_argument("--level", type=int, nargs="+", default=[1, 2], choices=[1, 2],
                   help="territory level(s)")
    p.add_argument("--measure", default="territory_fraction", choices=list(_LOAD_DESCRIPTIONS),
                   help="territory_fraction: lesioned share of the territory; lesion_fraction: share of "
                   "the lesion in the territory; ml: lesioned volume")
    _atlas_options(p)
    p.set_defaults(func=_cmd_territory_load)

    # descriptors ---------------------------------------------------------------------------
    p = _add(
        sub, parent, "descriptors", "lesion volume, components, hemisphere, centroid, territory",
        "One row per subject: lesion volume, connected components, hemisphere, centroid and "
        "dominant territory (lsm.lesion_descriptors).",
    )
    _cohort_options(p, phenotype_required=False)
    _output_options(p)
    p.add_argument("--min-component-size", type=int, default=1,
                   help="connected components smaller than this many voxels are not counted")
    p.add_argument("--hemisphere-threshold", type=float, default=0.95,
                   help="share of the lesion volume on one side to call it left or right")
    _atlas_options(p)
    p.set_defaults(func=_cmd_descriptors)

    # overlap -------------------------------------------------------------------------------
    p = _add(
        sub, parent, "overlap", "lesion overlap (frequency) map",
        "Number and fraction of subjects lesioned in each voxel (NIfTI + JSON); with --by, one "
        "fraction map per value of a phenotype column.",
    )
    _cohort_options(p, phenotype_required=False)
    _output_options(p)
    p.add_argument("--by", metavar="COLUMN", help="one map per distinct value of this phenotype column")
    p.set_defaults(func=_cmd_overlap)

    # correlate -----------------------------------------------------------------------------
    p = _add(
        sub, parent, "correlate", "lesion volume vs score, and territory-level mapping",
        "Correlation between lesion volume and a score (lsm.volume_score_correlation), with a "
        "BCa bootstrap interval and a scatter plot; with --territory-level, also the "
        "permutation test of each territory's load against the score (lsm.territory_lsm).",
    )
    _cohort_options(p, phenotype_required=True)
    _output_options(p)
    g = p.add_argument_group("analysis")
    g.add_argument("-s", "--score", required=True, help="phenotype column (e.g. nihss)")
    g.add_argument("--method", default="spearman", help="spearman, pearson or kendall")
    g.add_argument("--covariates", nargs="+", default=None, metavar="COLUMN",
                   help="phenotype columns to partial out")
    g.add_argument("--volume-transform", default="linear", choices=["linear", "log"],
                   help="lesion volume in ml or log10 ml (the correlation, and the territory-level "
                   "test with --lesion-volume covariate)")
    g.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the interval (0: none)")
    g.add_argument("--territory-level", type=int, choices=[1, 2], default=None,
                   help="also test each territory's load at this atlas level")
    g.add_argument("--territory-method", default="spearman", choices=["spearman", "regression", "ordinal"],
                   help="statistic of the territory-level test: partial Spearman, OLS, or the "
                   "proportional-odds score test for an ordinal score such as mRS")
    g.add_argument("--lesion-volume", default="none", choices=["none", "covariate"],
                   help="covariate: lesion volume (as --volume-transform says) is a nuisance variable "
                   "of the territory-level test: which territory matters beyond size")
    g.add_argument("--n-permutations", type=int, default=5000,
                   help="permutations of the territory-level test")
    g.add_argument("--correction", default="fwe", choices=["fwe", "fdr_bh", "fdr_by", "none"],
                   help="correction deciding significance in the territory-level test")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level of the territory-level test")
    g.add_argument("--min-lesioned", default=None, metavar="N",
                   help="test territories lesioned (and spared) in at least N subjects, or this "
                   "fraction of them (a number < 1); default 0.05")
    g.add_argument("--random-state", type=int, default=0, help="seed of the bootstrap and permutations")
    _data_dir_option(p.add_argument_group("atlas"))
    p.set_defaults(func=_cmd_correlate)

    # report --------------------------------------------------------------------------------
    p = _add(
        sub, parent, "report", "HTML report of a saved VLSM result",
        "Write one self-contained HTML file (images embedded) from a folder written by "
        "'lsm vlsm' or VLSMResult.save(). Give the cohort (--lesions/--phenotype) to add its "
        "description, drop list and overlap map.",
    )
    p.add_argument("result", type=Path, help="folder of a saved VLSM result")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML file to write (default: RESULT/report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace the HTML file if it exists")
    g = p.add_argument_group("cohort of the analysis (optional; resampled to the result's grid)")
    g.add_argument("-l", "--lesions", nargs="+", metavar="PATH", help="lesion masks: a folder, a quoted glob, or files")
    g.add_argument("-p", "--phenotype", metavar="FILE", help="phenotype table (.tsv, .csv or .xlsx)")
    g.add_argument("--id-column", default="participant_id", help="phenotype column holding subject IDs")
    g.add_argument("--mask-threshold", type=float, default=None, metavar="T",
                   help="voxels > T are lesioned; default: masks must be 0/1")
    g.add_argument("--dictionary", metavar="JSON", help="data dictionary merged over the bundled one")
    g.add_argument("--coerce", action="store_true", help="turn invalid phenotype values into missing values")
    g.add_argument("--n-jobs", type=int, default=1, help="parallel workers reading the masks")
    p.add_argument("--title", default=None, help="title of the report")
    _atlas_options(p, custom=False)
    p.set_defaults(func=_cmd_report)

    # register --------------------------------------------------------------------------
    from .registration._cli import add_register_parser

    add_register_parser(sub, parent, _add)
    return parser


# ------------------------------------------------------------------------------ helpers
def _progress(args):
    """``verbose`` for the library: progress bars only on an interactive terminal."""
    return 0 if args.quiet or not sys.stderr.isatty() else 1


def _say(args, message):
    if not args.quiet:
        print(message)


def _lesions_arg(values):
    """One folder or glob stays a string (as load_cohort takes it); several values are files."""
    return values[0] if len(values) == 1 else list(values)


def _check_output_free(path, overwrite):
    """Fail before any work when the output exists and --overwrite was not given."""
    from ._utils import _check_target

    _check_target(path, overwrite)


def _phenotype_of_masks(lesions, id_column):
    """A phenotype with only the subject IDs of the masks (territory loads need no scores)."""
    import pandas as pd

    from .cohort import _collect_lesion_sources

    subjects = list(_collect_lesion_sources(lesions))
    return pd.DataFrame({id_column: subjects})


def _load(args):
    """The cohort of --lesions/--phenotype with the loading options."""
    from .cohort import load_cohort

    if args.voxel_size is not None and args.voxel_size <= 0:
        raise ValueError(f"--voxel-size must be a positive number of mm, got {args.voxel_size}.")
    lesions = _lesions_arg(args.lesions)
    phenotype = args.phenotype
    id_column = args.id_column
    if phenotype is None:
        phenotype = _phenotype_of_masks(lesions, id_column)
    target = args.target_img if args.target_img is not None else args.voxel_size
    cohort = load_cohort(
        lesions,
        phenotype,
        id_column=id_column,
        target_img=target,
        dictionary=args.dictionary,
        coerce=args.coerce,
        threshold=args.mask_threshold,
        n_jobs=args.n_jobs,
        verbose=_progress(args),
    )
    if not args.quiet:
        print(f"cohort: {len(cohort)} subjects on a {cohort.shape} grid of {cohort.voxel_size[0]:g} mm voxels"
              f"{f' ({len(cohort.excluded)} left out, listed with their reasons)' if len(cohort.excluded) else ''}")
    return cohort


def _atlas(args):
    """'arterial' (the library's default atlas, found through --data-dir/LSM_DATA) or --atlas."""
    if args.atlas is not None:
        if not Path(args.atlas).exists():
            raise FileNotFoundError(f"Atlas image {args.atlas!r} does not exist.")
        return args.atlas
    return "arterial"


def _write_excluded(cohort, folder, extra=()):
    """``excluded.tsv``: every subject left out, with the reason."""
    import pandas as pd

    from ._derivatives import write_tsv

    dropped = cohort.excluded.copy()
    if extra:
        more = pd.DataFrame(
            [{"subject": e.get("subject"), "source": "analysis", "reason": e.get("reason")} for e in extra]
        )
        dropped = pd.concat([dropped, more], ignore_index=True)
    write_tsv(
        dropped,
        folder / "excluded.tsv",
        {
            "subject": "Subject ID (BIDS sub-<label>).",
            "source": "Lesion mask file, 'phenotype', or 'analysis'.",
            "reason": "Why the subject was left out.",
        },
        index=False,
    )


def _write_description(folder, name, args, **extra):
    from ._derivatives import dataset_description, write_json

    desc = dataset_description(name, **extra)
    desc["GeneratedBy"][0]["Description"] = "lsm " + " ".join(args.argv)
    write_json(folder / "dataset_description.json", desc, overwrite=True)


# ----------------------------------------------------------------------------- commands
def _cmd_demo(args):
    from .demo import run_demo

    _check_output_free(args.output, args.overwrite)
    run = run_demo(
        args.output,
        n_subjects=args.n_subjects,
        n_permutations=args.n_permutations,
        random_state=args.random_state,
        overwrite=args.overwrite,
        n_jobs=args.n_jobs,
        verbose=_progress(args),
    )
    _say(args, run.summary())
    return EXIT_OK


def _none(value):
    """The command line's "none" -> None."""
    return None if value == "none" else value


def _min_lesioned(value, default=None):
    """--min-lesioned as an int (a count) or a float (a fraction); ``default`` when not given."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--min-lesioned must be a number of subjects or a fraction, got {value!r}.") from None
    return int(number) if number >= 1 and number == int(number) else number


def _cmd_vlsm(args):
    from ._derivatives import move_result_files
    from ._utils import atomic_output_dir
    from ._vlsm import check_vlsm_options, vlsm

    _check_output_free(args.output, args.overwrite)
    # bad options fail before minutes of reading masks
    lesion_volume = _none(args.lesion_volume)
    check_vlsm_options(args.method, args.correction, args.alternative, lesion_volume, args.covariates,
                       args.volume_transform, _min_lesioned(args.min_lesioned, 0.05), args.alpha,
                       args.n_permutations, args.cluster_forming_p or 0.001)
    options = {
        "method": args.method,
        "covariates": args.covariates,
        "n_permutations": args.n_permutations,
        "correction": args.correction,
        "alpha": args.alpha,
        "alternative": args.alternative,
        "random_state": args.random_state,
        "n_jobs": args.n_jobs,
        "verbose": _progress(args),
    }
    if lesion_volume is not None:
        options["lesion_volume"] = lesion_volume
        options["volume_transform"] = args.volume_transform
    if args.min_lesioned is not None:
        options["min_lesioned"] = _min_lesioned(args.min_lesioned)
    if args.v is not None:
        options["v"] = args.v
    if args.cluster_forming_p is not None:
        options["cluster_forming_p"] = args.cluster_forming_p
    cohort = _load(args)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        result = vlsm(cohort, args.score, **options)
        atlas = None if args.no_territories else "arterial"
        move_result_files(result, tmp, atlas=atlas)
        _write_excluded(cohort, tmp, result.excluded.to_dict("records"))
        if not args.no_report:
            result.to_html(tmp / "report.html", cohort=cohort, atlas=atlas)
        _write_description(tmp, f"lsm VLSM of {args.score!r}", args)
    _say(args, str(result.summary()))
    _say(args, f"lsm: wrote {args.output}/")
    return EXIT_OK


# svr-lsm ---------------------------------------------------------------------------------
def _add_svr_lsm(sub, parent):
    """The ``lsm svr-lsm`` subcommand (options named as lsm.svr_lsm's parameters)."""
    p = _add(
        sub, parent, "svr-lsm", "multivariate lesion-symptom mapping (SVR-LSM)",
        "Support vector regression of a score on all lesion maps at once (Zhang et al. 2014; the "
        "SVR-LSM GUI of DeMarco & Turkeltaub 2018), with the back-projected beta map tested by "
        "permutation of the score. Writes the maps (NIfTI + JSON), svrlsm.json, the null "
        "distribution, the excluded subjects and report.html. Report it beside the voxel-wise map "
        "of 'lsm vlsm'.",
    )
    _cohort_options(p, phenotype_required=True)
    _output_options(p)
    g = p.add_argument_group("analysis (as in lsm.svr_lsm)")
    g.add_argument("-s", "--score", required=True, help="phenotype column to map (e.g. nihss)")
    g.add_argument("--kernel", default="rbf", help="rbf or linear")
    g.add_argument("--C", dest="C", type=float, default=30.0, help="SVR cost")
    g.add_argument("--gamma", type=float, default=5.0,
                   help="RBF width, exp(-gamma*||xi-xj||^2) (libsvm); MATLAB's sigma is gamma = 1/sigma^2")
    g.add_argument("--epsilon", type=float, default=0.1,
                   help="half-width of the insensitive tube (units of the rescaled score)")
    g.add_argument("--standardize", action="store_true", help="z-score every voxel column (the GUI's default)")
    g.add_argument("--score-range", type=float, default=100.0,
                   help="rescale the score to this range before the fit (0: keep score units)")
    g.add_argument("--lesion-volume", default="both", metavar="MODE",
                   help="none, dtlvc, covariate, lesion, both or dtlvc+covariate")
    g.add_argument("--volume-transform", default="linear", help="linear (ml) or log (log10 ml)")
    g.add_argument("--covariates", nargs="+", default=None, metavar="COLUMN",
                   help="phenotype columns regressed out of the score")
    g.add_argument("--n-permutations", type=int, default=5000, help="permutations of the score")
    g.add_argument("--correction", default="fwe", help="fwe, cfwer or cluster_size")
    g.add_argument("--cluster-forming-p", type=float, default=0.005, metavar="P",
                   help="uncorrected p forming clusters (cluster_size)")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level")
    g.add_argument("--alternative", default="two-sided", help="two-sided, greater or less")
    g.add_argument("--min-lesioned", default="0.05", metavar="N",
                   help="use voxels lesioned (and spared) in at least N subjects, or this fraction of them")
    g.add_argument("--v", type=int, default=1, help="correction cfwer: false positive voxels tolerated")
    g.add_argument("--max-memory", type=float, default=4.0, metavar="GB", help="memory the analysis may use")
    g.add_argument("--random-state", type=int, default=0, help="seed of the permutations")
    g.add_argument("--no-report", action="store_true", help="do not write report.html")
    _data_dir_option(g)
    p.set_defaults(func=_cmd_svr_lsm)


def _cmd_svr_lsm(args):
    from ._derivatives import move_result_files
    from ._svr import check_svr_options, svr_lsm
    from ._utils import atomic_output_dir

    _check_output_free(args.output, args.overwrite)
    lesion_volume = None if args.lesion_volume.lower() == "none" else args.lesion_volume
    check_svr_options(args.kernel, args.correction, args.alternative, lesion_volume, args.covariates,
                      args.volume_transform)
    cohort = _load(args)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        result = svr_lsm(
            cohort, args.score, C=args.C, gamma=args.gamma, epsilon=args.epsilon, kernel=args.kernel,
            standardize=args.standardize, score_range=args.score_range or None,
            lesion_volume=lesion_volume, volume_transform=args.volume_transform, covariates=args.covariates,
            n_permutations=args.n_permutations, correction=args.correction, alpha=args.alpha, v=args.v,
            cluster_forming_p=args.cluster_forming_p, min_lesioned=_min_lesioned(args.min_lesioned),
            alternative=args.alternative, max_memory=args.max_memory, n_jobs=args.n_jobs,
            random_state=args.random_state, verbose=_progress(args),
        )
        move_result_files(result, tmp)
        _write_excluded(cohort, tmp, result.excluded.to_dict("records"))
        if not args.no_report:
            result.to_html(tmp / "report.html")
        _write_description(tmp, f"lsm SVR-LSM of {args.score!r}", args)
    _say(args, str(result.summary()))
    _say(args, f"lsm: wrote {args.output}/")
    return EXIT_OK


_LOAD_DESCRIPTIONS = {
    "territory_fraction": "Lesioned volume in the territory / volume of the territory.",
    "lesion_fraction": "Lesioned volume in the territory / lesion volume.",
    "ml": "Lesioned volume in the territory (ml).",
}


def _cmd_territory_load(args):
    from ._derivatives import write_json, write_tsv
    from ._utils import atomic_output_dir
    from .territory import territory_load, territory_summary

    _check_output_free(args.output, args.overwrite)
    cohort = _load(args)
    atlas = _atlas(args)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        for level in sorted(set(args.level)):
            loads = territory_load(cohort, atlas=atlas, level=level, measure=args.measure, n_jobs=args.n_jobs)
            what = _LOAD_DESCRIPTIONS.get(args.measure, args.measure)
            descriptions = {c: f"{c}: {what}" for c in loads.columns}
            descriptions["outside_ml"] = "Lesioned volume outside every territory (ml)."
            descriptions["lesion_volume_ml"] = "Lesion volume on the cohort grid (ml)."
            stem = f"level-{level}_measure-{args.measure.replace('_', '')}_territoryload"
            write_tsv(loads, tmp / f"{stem}.tsv", descriptions)
            write_json(tmp / f"{stem}_meta.json", dict(loads.attrs))
            summary = territory_summary(cohort, level=level, atlas=atlas, n_jobs=args.n_jobs)
            write_tsv(summary.table, tmp / f"level-{level}_territorysummary.tsv", _SUMMARY_DESCRIPTIONS)
            _say(args, str(summary))
        _write_excluded(cohort, tmp)
        _write_description(tmp, "lsm arterial-territory lesion load", args)
    _say(args, f"lsm: wrote {args.output}/")
    return EXIT_OK


def _cmd_descriptors(args):
    from ._derivatives import write_tsv
    from ._utils import atomic_output_dir
    from .territory import lesion_descriptors

    _check_output_free(args.output, args.overwrite)
    cohort = _load(args)
    atlas = _atlas(args)
    table = lesion_descriptors(
        cohort, atlas=atlas, min_component_size=args.min_component_size,
        hemisphere_threshold=args.hemisphere_threshold, n_jobs=args.n_jobs,
    )
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        write_tsv(table, tmp / "lesion_descriptors.tsv", {
            "volume_ml": "Lesion volume on the cohort grid (ml).",
            "n_voxels": "Lesioned voxels on the cohort grid.",
            "n_components": "26-connected components of at least --min-component-size voxels.",
            "hemisphere": "left, right or bilateral (rule of --hemisphere-threshold); n/a for an "
                          "empty lesion (no voxel on the cohort grid).",
            "left_fraction": "Share of the lesion volume at world x < 0.",
            "right_fraction": "Share of the lesion volume at world x > 0.",
            "centroid_x": "Mean world x of the lesion voxels (mm).",
            "centroid_y": "Mean world y of the lesion voxels (mm).",
            "centroid_z": "Mean world z of the lesion voxels (mm).",
            "dominant_level1": "Level-1 territory holding the most lesioned voxels.",
            "dominant_level1_fraction": "Share of the lesion in that territory.",
            "dominant_level2": "Level-2 territory holding the most lesioned voxels.",
            "dominant_level2_fraction": "Share of the lesion in that territory.",
        })
        _write_excluded(cohort, tmp)
        _write_description(tmp, "lsm lesion descriptors", args)
    if not args.quiet:
        counts = table["hemisphere"].value_counts() if "hemisphere" in table else {}
        print(f"{len(table)} lesions; median volume {table['volume_ml'].median():.2f} ml; "
              + ", ".join(f"{k} {v}" for k, v in dict(counts).items()))
    _say(args, f"lsm: wrote {args.output}/")
    return EXIT_OK


def _bids_value(value):
    label = re.sub(r"[^0-9A-Za-z]", "", str(value))
    return label or "missing"


def _cmd_overlap(args):
    from ._derivatives import write_nifti
    from ._utils import atomic_output_dir
    from .territory import overlap_map

    _check_output_free(args.output, args.overwrite)
    cohort = _load(args)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        n = len(cohort)
        write_nifti(overlap_map(cohort, normalize=False), tmp / "desc-count_overlap.nii.gz",
                    f"Number of subjects (of {n}) lesioned in each voxel.", n_subjects=n)
        write_nifti(overlap_map(cohort, normalize=True), tmp / "desc-fraction_overlap.nii.gz",
                    f"Fraction of the {n} subjects lesioned in each voxel.", n_subjects=n)
        if args.by:
            maps = overlap_map(cohort, normalize=True, by=args.by)
            seen = set()
            for value, img in maps.items():
                label = _bids_value(value)
                if label in seen:
                    raise ValueError(f"Values of column {args.by!r} collide as file names ({label!r}).")
                seen.add(label)
                write_nifti(img, tmp / f"{_bids_value(args.by)}-{label}_desc-fraction_overlap.nii.gz",
                            f"Fraction of subjects with {args.by} = {value} lesioned in each voxel.",
                            column=args.by, value=str(value))
        _write_excluded(cohort, tmp)
        _write_description(tmp, "lsm lesion overlap map", args)
    _say(args, f"{len(cohort)} subjects; lsm: wrote {args.output}/")
    return EXIT_OK


_TERRITORY_LSM_DESCRIPTIONS = {
    "territory": "Arterial territory (atlas abbreviation).",
    "n_lesioned": "Subjects with a lesion load > 0 in the territory.",
    "mean_load": "Mean lesion load (lesioned share of the territory) over the subjects.",
    "tested": "Whether the territory was tested (else see not_tested).",
    "r": "(Partial) correlation between the territory load and the score.",
    "t": "t statistic of r (n/a for an ordinal score).",
    "p_parametric": "Parametric p-value of t (n/a for an ordinal score).",
    "p_uncorrected": "Permutation p-value of r, uncorrected.",
    "p_fwe": "Permutation p-value corrected across territories (maximum statistic).",
    "p_fdr_bh": "Benjamini-Hochberg FDR-adjusted p_uncorrected.",
    "p_fdr_by": "Benjamini-Yekutieli FDR-adjusted p_uncorrected.",
    "p_corrected": "The corrected p-value used for significance (chosen by --correction).",
    "significant": "p_corrected <= alpha (--alpha).",
    "not_tested": "Why the territory was not tested (empty when tested).",
}


_SUMMARY_DESCRIPTIONS = {
    "abbrev": "Territory abbreviation in the atlas label table.",
    "territory": "Territory name without its side (e.g. MCA).",
    "hemisphere": "Side of the territory (left, right or midline).",
    "n_involved": "Subjects with at least one lesioned voxel in the territory.",
    "percent_involved": "n_involved as a percentage of the cohort.",
    "n_dominant": "Subjects whose lesion lies mostly in the territory.",
    "percent_dominant": "n_dominant as a percentage of the cohort.",
    "lesioned_ml": "Lesioned ml summed over subjects.",
    "median_ml_involved": "Median lesioned ml in the territory among the involved subjects.",
}

_CORRELATION_DESCRIPTIONS = {
    "score": "Phenotype column correlated with the lesion volume.",
    "method": "Correlation coefficient: spearman, pearson or kendall.",
    "partial": "True when covariates were partialled out of both variables.",
    "covariates": "Covariates partialled out (comma-separated; n/a when none).",
    "volume_transform": "Lesion volume in ml (linear) or log10 ml (log).",
    "n": "Subjects in the analysis.",
    "r": "Correlation coefficient (partial when covariates are given).",
    "p": "Two-sided p-value of r.",
    "ci_low": "Lower bound of the bootstrap (BCa) confidence interval of r.",
    "ci_high": "Upper bound of the bootstrap (BCa) confidence interval of r.",
    "ci_level": "Confidence level of the interval.",
    "n_excluded": "Subjects left out of the analysis (missing score or covariate); listed in "
                  "excluded.tsv with source 'analysis'.",
}


def _cmd_correlate(args):
    from matplotlib.figure import Figure  # not pyplot: the caller's backend and figures stay as they are

    from ._derivatives import write_tsv
    from ._utils import atomic_output_dir
    from .clinical import territory_lsm, volume_score_correlation

    _check_output_free(args.output, args.overwrite)
    cohort = _load(args)
    with atomic_output_dir(args.output, overwrite=args.overwrite) as tmp:
        corr = volume_score_correlation(
            cohort, args.score, method=args.method, covariates=args.covariates,
            volume_transform=args.volume_transform, n_boot=args.n_boot, random_state=args.random_state,
        )
        write_tsv(
            corr.to_dataframe(), tmp / "volumescore_correlation.tsv", _CORRELATION_DESCRIPTIONS, index=False,
            Description="Correlation between lesion volume and a clinical score.",
            Parameters={"score": args.score, "method": args.method, "covariates": args.covariates,
                        "volume_transform": args.volume_transform, "n_boot": args.n_boot,
                        "random_state": args.random_state},
            Summary=str(corr.summary()),
        )
        excluded = corr.excluded.to_dict("records")  # missing score or covariate
        fig = Figure(figsize=(5, 4))
        corr.plot(ax=fig.add_subplot())
        fig.savefig(tmp / "volumescore_scatter.png", dpi=100, bbox_inches="tight")
        _say(args, str(corr.summary()))
        if args.territory_level is not None:
            terr = territory_lsm(
                cohort, args.score, level=args.territory_level, covariates=args.covariates,
                method=args.territory_method,
                lesion_volume=_none(args.lesion_volume), volume_transform=args.volume_transform,
                correction=args.correction, alpha=args.alpha,
                min_lesioned=_min_lesioned(args.min_lesioned, 0.05),
                n_permutations=args.n_permutations, random_state=args.random_state, n_jobs=args.n_jobs,
            )
            write_tsv(terr.to_dataframe(), tmp / f"level-{args.territory_level}_territorylsm.tsv",
                      _TERRITORY_LSM_DESCRIPTIONS,
                      Description="Lesion load of each arterial territory vs a score, "
                                  "FWE-corrected across territories (lsm.territory_lsm).",
                      Parameters={"score": args.score, "level": args.territory_level,
                                  "measure": terr.measure, "method": terr.method,
                                  "covariates": args.covariates,
                                  "lesion_volume": _none(args.lesion_volume),
                                  "volume_transform": args.volume_transform,
                                  "correction": args.correction, "alpha": args.alpha,
                                  "min_lesioned_count": terr.params["min_lesioned_count"],
                                  "n_permutations": args.n_permutations,
                                  "random_state": args.random_state})
            _say(args, str(terr.summary()))
            listed = {e["subject"] for e in excluded}
            excluded += [e for e in terr.excluded.to_dict("records") if e["subject"] not in listed]
        _write_excluded(cohort, tmp, excluded)
        _write_description(tmp, f"lsm lesion volume vs {args.score!r}", args)
    _say(args, f"lsm: wrote {args.output}/")
    return EXIT_OK


def _cmd_report(args):
    from .results import VLSMResult

    result = VLSMResult.load(args.result)
    output = args.output if args.output is not None else args.result / "report.html"
    _check_output_free(output, args.overwrite)
    cohort = cohort_excluded = None
    if args.lesions:
        if not args.phenotype:
            raise ValueError("--lesions needs --phenotype (the cohort of the analysis).")
        # the cohort on the grid of the result, whatever the grid of its masks
        args.target_img, args.voxel_size = result.mask_img, None
        cohort = _load(args)
    elif (args.result / "excluded.tsv").is_file():
        # the drop list lsm vlsm saved beside the result (its 'analysis' rows are in the
        # result's provenance and shown separately)
        import pandas as pd

        cohort_excluded = pd.read_csv(args.result / "excluded.tsv", sep="\t", dtype=str, keep_default_na=False)
        if "source" in cohort_excluded:
            cohort_excluded = cohort_excluded[cohort_excluded["source"] != "analysis"]
    atlas = None if args.no_territories else "arterial"
    result.to_html(output, cohort=cohort, overwrite=args.overwrite, title=args.title, atlas=atlas,
                   cohort_excluded=cohort_excluded)
    _say(args, f"lsm: wrote {output}")
    return EXIT_OK


# --------------------------------------------------------------------------------- main
def _input_paths(args):
    """(flag, path) of every input file or folder named on the command line."""
    for value in (getattr(args, "lesions", None) or []) + (getattr(args, "images", None) or []):
        text = str(value)
        if any(ch in text for ch in "*?["):
            # a glob: the folder part before its first wildcard component
            parts = Path(text).parts
            stop = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
            text = str(Path(*parts[:stop])) if stop else "."
        yield "--lesions", text
    for flag, attr in (("--phenotype", "phenotype"), ("--dictionary", "dictionary"),
                       ("--atlas", "atlas"), ("--target-img", "target_img"), ("result", "result")):
        value = getattr(args, attr, None)
        if isinstance(value, (str, os.PathLike)):
            yield flag, str(value)


def _check_output_spares_inputs(args):
    """Refuse an output that is, or contains, one of the inputs.

    Replacing it (--overwrite) would delete the inputs.
    """
    output = getattr(args, "output", None)
    if output is None:
        return
    out = Path(output).resolve()
    for flag, text in _input_paths(args):
        path = Path(text).resolve()
        if path == out or out in path.parents:
            raise ValueError(
                f"The output {str(output)!r} is or contains the input {text!r} ({flag}): writing "
                "there would replace it. Choose an output folder outside the inputs."
            )


#: Library parameter -> command-line option, for messages raised by the library.
_PARAMETER_FLAGS = {
    "method": "--method", "correction": "--correction", "alternative": "--alternative",
    "covariates": "--covariates", "lesion_volume": "--lesion-volume", "alpha": "--alpha",
    "v": "--v", "min_lesioned": "--min-lesioned", "n_permutations": "--n-permutations",
    "random_state": "--random-state", "n_jobs": "--n-jobs", "cluster_forming_p": "--cluster-forming-p",
    "volume_transform": "--volume-transform", "atlas": "--atlas",
    "id_column": "--id-column", "target_img": "--target-img", "dictionary": "--dictionary",
    "threshold": "--mask-threshold", "by": "--by", "measure": "--measure", "level": "--level",
    "n_boot": "--n-boot", "data_dir": "--data-dir",
}


def _as_flags(text):
    """Say ``--min-lesioned=3`` where the library says ``min_lesioned=3``."""
    text = text.replace("overwrite=True (or --overwrite on the command line)", "--overwrite")
    text = re.sub(r"\bcoerce=True\b", "--coerce", text)
    text = text.replace("(dictionary=...)", "(--dictionary FILE)")
    for name, flag in _PARAMETER_FLAGS.items():
        text = re.sub(rf"(?<![\w.-]){name}=(?=[\s,;)]|\.(?!\d)|$)", flag, text)  # "pass data_dir= or"
        if "_" in name:  # not an English word: every whole-word use is the parameter
            text = re.sub(rf"(?<![\w.'-]){name}\b", flag, text)
        text = re.sub(rf"(?<![\w.-]){name}=", f"{flag}=", text)
        text = re.sub(rf"(?:the )?'{name}' parameter", f"the {flag} option", text)
    return text


def _one_line(exc):
    from ._utils import display_path

    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    # name the output the user asked for, not the temporary folder it is written into
    return display_path(_as_flags(re.sub(r"\s+", " ", text).strip()))


class _LogFormatter(logging.Formatter):
    """``lsm: message``, naming final output paths instead of temporary folders."""

    def format(self, record):
        from ._utils import display_path

        return display_path(_as_flags(super().format(record)))


class _OnceFilter(logging.Filter):
    """Let each distinct warning through once per command.

    For example "atlas unavailable" would otherwise be printed by both the cluster table
    and the report.
    """

    def __init__(self):
        super().__init__()
        self._seen = set()

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        key = (record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def _configure_logging(args):
    if args.debug:
        level = logging.DEBUG
    elif args.quiet:
        level = logging.ERROR  # --quiet: nothing but errors
    elif args.verbose:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter("lsm: %(message)s"))
    handler.addFilter(_OnceFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python warnings as one ``lsm: warning: ...`` line, through the lsm logger's handler.

    Its :class:`_OnceFilter` prints each distinct one once per command.
    """
    logger.warning("warning: %s", _one_line(message))


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that outputs being written are cleaned up.

    Like KeyboardInterrupt, it is not an Exception.
    """


def _on_sigterm(signum, frame):
    raise _Terminated()


def _catch_sigterm():
    """Turn SIGTERM into :class:`_Terminated` for this command.

    Returns the previous handler, or None when not in the main thread (where handlers
    cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    return signal.SIG_DFL if old is None else old  # None: a handler not set from Python


def main(argv=None):
    """Entry point of the ``lsm`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 1 on a user error (one line on stderr), 2 on a usage error,
        130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM, e.g. a SLURM time
        limit). An interrupted or terminated command leaves no partial output.
    """
    from .exceptions import LSMError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in argv]
    # --data-dir acts as LSM_DATA for this command only: restored below, so that
    # main() called in-process (tests, notebooks) leaves the environment unchanged.
    old_data_env = os.environ.get("LSM_DATA")
    old_logger_state = logger.level, logger.propagate
    if getattr(args, "data_dir", None):
        os.environ["LSM_DATA"] = str(args.data_dir)
    handler = _configure_logging(args)
    old_showwarning = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _show_warning
    old_sigterm = _catch_sigterm()
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            _check_output_spares_inputs(args)
            return args.func(args)
    except _Terminated:
        print("lsm: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("lsm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (LSMError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"lsm: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if args.debug:
            raise
        print(f"lsm: error: unexpected {type(exc).__name__}: {_one_line(exc)} "
              "(run again with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        warnings.showwarning = old_showwarning
        logger.removeHandler(handler)
        logger.setLevel(old_logger_state[0])
        logger.propagate = old_logger_state[1]
        if old_data_env is None:
            os.environ.pop("LSM_DATA", None)
        else:
            os.environ["LSM_DATA"] = old_data_env


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
