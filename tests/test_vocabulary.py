"""One vocabulary: a parameter name means the same thing with the same default everywhere."""

import inspect
import subprocess
import sys

import pytest

import lsm
import lsm.stats
from lsm import cli
from lsm._docs import docdict

PUBLIC = [lsm.vlsm, lsm.stats.voxelwise_test, lsm.territory_lsm, lsm.volume_score_correlation,
          lsm.outcome_model, lsm.territory_load, lsm.lesion_descriptors, lsm.territory_summary,
          lsm.load_cohort]

#: The shared default of each vocabulary parameter, wherever a function takes it.
DEFAULTS = {"min_lesioned": 0.05, "n_permutations": 5000, "alternative": "two-sided", "alpha": 0.05,
            "random_state": None, "n_jobs": 1, "verbose": 0, "cluster_forming_p": 0.001,
            "volume_transform": "linear", "lesion_volume": None, "covariates": None,
            "atlas": "arterial", "correction": "fwe"}


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_shared_parameters_share_their_default(func):
    params = inspect.signature(func).parameters
    for name, default in DEFAULTS.items():
        if name in params:
            assert params[name].default == default, (func.__name__, name, params[name].default)
    # the 0.1 dialects are gone
    assert not {"log_volume", "cluster_threshold", "dropped"} & set(params), func.__name__


@pytest.mark.parametrize("func", [lsm.vlsm, lsm.territory_lsm, lsm.volume_score_correlation,
                                  lsm.outcome_model], ids=lambda f: f.__name__)
def test_docstrings_use_the_shared_text(func):
    doc = func.__doc__
    assert "%(" not in doc
    params = inspect.signature(func).parameters
    for name in ("min_lesioned", "random_state", "volume_transform", "n_permutations"):
        if name in params:
            first_line = docdict[name].splitlines()[0]
            assert first_line in doc, (func.__name__, name)


def _options(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {o: a for a in sub.choices[command]._actions for o in a.option_strings}


def test_cli_options_are_the_kebab_case_of_the_parameters():
    vlsm = _options("vlsm")
    assert vlsm["--lesion-volume"].choices == ["none", "covariate", "dtlvc"]
    assert vlsm["--volume-transform"].choices == ["linear", "log"]
    assert "--cluster-forming-p" in vlsm and "--cluster-threshold" not in vlsm
    assert "--min-lesioned" in vlsm
    corr = _options("correlate")
    assert corr["--lesion-volume"].choices == ["none", "covariate"]
    assert corr["--volume-transform"].choices == ["linear", "log"]
    assert corr["--correction"].choices == ["fwe", "fdr_bh", "fdr_by", "none"]
    assert "--log-volume" not in corr and "--territory-lesion-volume" not in corr


def test_cohort_dropped_is_renamed():
    from lsm.simulate import make_synthetic_cohort

    cohort = make_synthetic_cohort(n_subjects=12, random_state=0)
    assert list(cohort.excluded.columns) == ["subject", "source", "reason"]
    with pytest.raises(AttributeError, match="renamed Cohort.excluded"):
        cohort.dropped  # noqa: B018
    # atlas=None is "no atlas" everywhere: an error where labels are needed
    for func in (lsm.territory_load, lsm.lesion_descriptors, lsm.territory_summary):
        with pytest.raises(ValueError, match="'atlas' parameter.*got None"):
            func(cohort, atlas=None)
    with pytest.raises(ValueError, match="'atlas' parameter.*got None"):
        lsm.outcome_model(cohort, "score", ["MCAL"], atlas=None)


def test_docstring_filling_survives_python_OO():
    code = ("import lsm, lsm.clinical, lsm._vlsm, lsm.territory, lsm.results, lsm.cli; "
            "assert lsm.territory_lsm.__doc__ is None")
    subprocess.run([sys.executable, "-OO", "-c", code], check=True)
