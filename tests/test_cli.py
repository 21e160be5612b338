"""The ``lsm`` command line, run as a real subprocess on tiny synthetic cohorts.

Each test writes a small synthetic cohort (4 mm grid) as a folder of ``sub-*_lesion.nii.gz``
masks and a ``participants.tsv``, runs ``lsm ...`` (the console script, or
``python -m lsm``) and checks the exit status, the messages and the files written against
numbers computed here independently (brute-force sums over the masks, scipy.stats).
"""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lsm
from lsm.simulate import make_synthetic_cohort

from cli_helpers import _env, console_script, error_line, run_lsm

SUBCOMMANDS = ["demo", "vlsm", "territory-load", "descriptors", "overlap", "correlate", "report"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A synthetic study on disk: lesions/, participants.tsv and a 4-territory atlas."""
    root = tmp_path_factory.mktemp("study")
    cohort = make_synthetic_cohort(40, random_state=3)
    (root / "lesions").mkdir()
    masks = {}
    for subject in cohort.subjects:
        nib.save(cohort.lesion_img(subject), root / "lesions" / f"{subject}_lesion.nii.gz")
        masks[subject] = cohort.lesion_mask(subject)
    phenotype = cohort.phenotype.copy()
    phenotype["nihss"] = phenotype["nihss"].astype(int)
    phenotype["mrs"] = phenotype["mrs"].astype(int)
    # one phenotype row without a mask: must be listed in excluded.tsv
    extra = pd.DataFrame({"score": [1.0], "nihss": [2], "mrs": [1], "age": [50.0], "sex": ["F"]},
                         index=pd.Index(["sub-999"], name="participant_id"))
    pd.concat([phenotype, extra]).to_csv(root / "participants.tsv", sep="\t", na_rep="n/a")

    # a tiny atlas on the same grid: 4 quadrants (front/back x left/right), 2 level-2 groups
    affine, shape = cohort.affine, cohort.shape
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    labels = np.where(xyz[:, 0] < 0, 1, 2) + np.where(xyz[:, 1] < 0, 2, 0)
    labels = labels.reshape(shape).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, affine), root / "quadrants.nii.gz")
    pd.DataFrame({
        "index": [1, 2, 3, 4], "abbrev": ["FL", "FR", "BL", "BR"],
        "level2_index": [1, 2, 1, 2], "level2_abbrev": ["L", "R", "L", "R"],
        "hemisphere": ["left", "right", "left", "right"],
    }).to_csv(root / "quadrants.tsv", sep="\t", index=False)
    return {"root": root, "cohort": cohort, "masks": masks, "labels": labels,
            "phenotype": phenotype}


# --------------------------------------------------------------------------- the basics
def test_console_script_version():
    exe = console_script()
    if exe is None:
        pytest.skip("the 'lsm' console script is not installed (pip install . creates it)")
    proc = run_lsm("--version", exe=exe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"lsm {lsm.__version__}"


def test_top_level_help_lists_every_subcommand():
    proc = run_lsm("--help")
    assert proc.returncode == 0
    for name in SUBCOMMANDS:
        assert f"\n    {name}" in proc.stdout, name


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name):
    proc = run_lsm(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: lsm {name}")
    assert "--output" in proc.stdout and "--quiet" in proc.stdout and "--debug" in proc.stdout
    if name not in ("demo", "report"):
        for option in ("--lesions", "--phenotype", "--id-column", "--target-img", "--voxel-size"):
            assert option in proc.stdout, option


def test_no_subcommand_is_a_usage_error():
    proc = run_lsm()
    assert proc.returncode == 2
    assert proc.stderr == "lsm: error: the following arguments are required: <command> (see 'lsm --help')\n"


def test_missing_required_option_is_a_usage_error():
    proc = run_lsm("vlsm", "--lesions", "x")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("lsm vlsm: error:")
    assert "--phenotype" in proc.stderr and "--output" in proc.stderr and "lsm vlsm --help" in proc.stderr
    proc = run_lsm("overlap", "--lesions", "x", "-o", "y", "--no-such-option")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--no-such-option" in proc.stderr


# --------------------------------------------------------------------------- user errors
def test_missing_lesion_folder_one_line_error(tmp_path):
    proc = run_lsm("overlap", "--lesions", tmp_path / "nowhere", "--output", tmp_path / "out")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "nowhere" in line and "does not exist" in line
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = run_lsm("--debug", "overlap", "--lesions", tmp_path / "nowhere", "--output", tmp_path / "out")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "nowhere" in proc.stderr


def test_missing_id_column_names_the_column(study, tmp_path):
    root = study["root"]
    proc = run_lsm("overlap", "-l", root / "lesions", "-p", root / "participants.tsv",
                   "--id-column", "patient", "-o", tmp_path / "out")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "'patient'" in line and "participant_id" in line


def test_bad_voxel_size_names_the_option(study, tmp_path):
    proc = run_lsm("overlap", "-l", study["root"] / "lesions", "--voxel-size", "-2", "-o", tmp_path / "o")
    assert proc.returncode == 1
    assert "--voxel-size" in error_line(proc)


def test_out_of_range_phenotype_value_names_subject_and_column(study, tmp_path):
    table = study["phenotype"].copy()
    table.loc["sub-005", "nihss"] = 99
    bad = tmp_path / "bad.tsv"
    table.to_csv(bad, sep="\t")
    proc = run_lsm("overlap", "-l", study["root"] / "lesions", "-p", bad, "-o", tmp_path / "o")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "sub-005" in line and "nihss" in line and "99" in line


def test_output_is_not_overwritten_without_flag(study, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = run_lsm("overlap", "-l", study["root"] / "lesions", "-o", out)
    assert proc.returncode == 1
    assert "--overwrite" in error_line(proc)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    proc = run_lsm("overlap", "-l", study["root"] / "lesions", "-o", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "keep.txt").exists() and (out / "desc-count_overlap.nii.gz").is_file()


# ------------------------------------------------------------------------------ outputs
def test_overlap_maps_match_brute_force(study, tmp_path):
    out = tmp_path / "overlap"
    # options before and after the subcommand; a glob pattern as lesions; no terminal: no bars
    proc = run_lsm("--quiet", "overlap", "-l", str(study["root"] / "lesions" / "sub-*_lesion.nii.gz"),
                   "-p", study["root"] / "participants.tsv", "--by", "sex", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --quiet
    assert "it/s" not in proc.stderr and "%|" not in proc.stderr
    masks = study["masks"]
    expected = np.sum([m.astype(int) for m in masks.values()], axis=0)
    count = nib.load(out / "desc-count_overlap.nii.gz")
    np.testing.assert_array_equal(np.asarray(count.dataobj), expected)
    np.testing.assert_allclose(count.affine, study["cohort"].affine)
    fraction = np.asarray(nib.load(out / "desc-fraction_overlap.nii.gz").dataobj)
    np.testing.assert_allclose(fraction, expected / len(masks), rtol=1e-6)
    sexes = study["phenotype"]["sex"]
    for sex in ("F", "M"):
        group = [masks[s] for s in sexes.index[sexes == sex]]
        got = np.asarray(nib.load(out / f"sex-{sex}_desc-fraction_overlap.nii.gz").dataobj)
        np.testing.assert_allclose(got, np.mean(group, axis=0), rtol=1e-6)
        sidecar = json.loads((out / f"sex-{sex}_desc-fraction_overlap.json").read_text())
        assert sidecar["value"] == sex and sidecar["Description"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "lsm"
    dropped = pd.read_csv(out / "excluded.tsv", sep="\t")
    assert dropped["subject"].tolist() == ["sub-999"]
    assert "without a lesion mask" in dropped["reason"].iloc[0]


def test_territory_load_matches_brute_force(study, tmp_path):
    out = tmp_path / "loads"
    root = study["root"]
    proc = run_lsm("territory-load", "-l", root / "lesions", "--atlas", root / "quadrants.nii.gz",
                   "--level", "1", "2", "-o", out)
    assert proc.returncode == 0, proc.stderr
    labels = study["labels"]
    level1 = pd.read_csv(out / "level-1_measure-territoryfraction_territoryload.tsv", sep="\t",
                         index_col="participant_id")
    level2 = pd.read_csv(out / "level-2_measure-territoryfraction_territoryload.tsv", sep="\t",
                         index_col="participant_id")
    assert len(level1) == len(study["masks"])  # no phenotype: every mask is a subject
    for subject, mask in study["masks"].items():
        for value, name in zip((1, 2, 3, 4), ("FL", "FR", "BL", "BR")):
            expected = (mask & (labels == value)).sum() / (labels == value).sum()
            assert level1.loc[subject, name] == pytest.approx(expected)
        for values, name in (((1, 3), "L"), ((2, 4), "R")):
            region = np.isin(labels, values)
            assert level2.loc[subject, name] == pytest.approx((mask & region).sum() / region.sum())
    summary = pd.read_csv(out / "level-2_territorysummary.tsv", sep="\t", index_col=0)
    involved_left = sum(bool((m & np.isin(labels, (1, 3))).any()) for m in study["masks"].values())
    assert summary.loc["L", "n_involved"] == involved_left
    sidecar = json.loads((out / "level-1_measure-territoryfraction_territoryload.json").read_text())
    assert "FL" in sidecar and sidecar["FL"]["Description"]


def test_descriptors_match_brute_force(study, tmp_path):
    out = tmp_path / "desc"
    root = study["root"]
    proc = run_lsm("descriptors", "-l", root / "lesions", "-p", root / "participants.tsv",
                   "--atlas", root / "quadrants.nii.gz", "-o", out)
    assert proc.returncode == 0, proc.stderr
    # the phenotype row without a mask is reported as one warning line
    assert "lsm: warning: 1 subject(s) excluded" in proc.stderr
    assert "Warning" not in proc.stderr and "warnings.warn" not in proc.stderr
    table = pd.read_csv(out / "lesion_descriptors.tsv", sep="\t", index_col="participant_id")
    cohort = study["cohort"]
    voxel_ml = abs(np.linalg.det(cohort.affine[:3, :3])) / 1000
    for subject, mask in study["masks"].items():
        assert table.loc[subject, "n_voxels"] == mask.sum()
        assert table.loc[subject, "volume_ml"] == pytest.approx(mask.sum() * voxel_ml)
        ijk = np.argwhere(mask)
        centroid = (ijk @ cohort.affine[:3, :3].T + cohort.affine[:3, 3]).mean(axis=0)
        np.testing.assert_allclose(table.loc[subject, ["centroid_x", "centroid_y", "centroid_z"]],
                                   centroid, atol=1e-6)


def test_correlate_matches_scipy(study, tmp_path):
    out = tmp_path / "corr"
    root = study["root"]
    proc = run_lsm("correlate", "-l", root / "lesions", "-p", root / "participants.tsv",
                   "--score", "score", "--n-boot", "0", "-o", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "volumescore_correlation.tsv", sep="\t")
    volumes = [m.sum() for m in study["masks"].values()]
    scores = study["phenotype"].loc[list(study["masks"]), "score"]
    rho, p = stats.spearmanr(volumes, scores)
    assert table["r"].iloc[0] == pytest.approx(rho, abs=1e-10)
    assert table["p"].iloc[0] == pytest.approx(p, rel=1e-6)
    assert (out / "volumescore_scatter.png").stat().st_size > 1000


def _run_on_terminal(*args):
    """Run ``python -m lsm`` with stderr on a pseudo-terminal; returns (status, stdout, stderr)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    # a new pseudo-terminal is 0 columns wide, and tqdm fits its bar to the width
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "lsm", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=slave, env=_env(), text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the child has exited and closed its end
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read()
    status = proc.wait()
    os.close(master)
    return status, out, b"".join(chunks).decode("utf-8", errors="replace")


def test_progress_bars_only_on_a_terminal(study, tmp_path):
    root = study["root"]
    for n_jobs in ("1", "2"):  # loading in parallel shows its bar too
        status, _, err = _run_on_terminal("vlsm", "-l", root / "lesions", "-p", root / "participants.tsv",
                                          "-s", "score", "--n-permutations", "50", "--no-report",
                                          "--no-territories", "--n-jobs", n_jobs, "-o", tmp_path / f"a{n_jobs}")
        assert status == 0, err
        assert "Loading lesion masks" in err and "100%" in err, (n_jobs, err)
        assert "permutation" in err.lower()
    status, out, err = _run_on_terminal("--quiet", "vlsm", "-l", root / "lesions", "-p",
                                        root / "participants.tsv", "-s", "score", "--n-permutations",
                                        "50", "--no-report", "--no-territories", "-o", tmp_path / "b")
    assert status == 0, err
    assert err == "" and out == ""


# ---------------------------------------------------------------------------------- vlsm
def test_vlsm_outputs_match_the_library(study, tmp_path):
    out = tmp_path / "vlsm"
    root = study["root"]
    proc = run_lsm("vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "score",
                   "--n-permutations", "100", "--random-state", "7", "--no-territories",
                   "--no-report", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "VLSM Results" in proc.stdout
    saved = lsm.VLSMResult.load(out)
    direct = lsm.vlsm(study["cohort"], "score", n_permutations=100, random_state=7)
    for name in ("z", "p", "p_corrected", "significant", "n_lesioned"):
        np.testing.assert_allclose(np.asarray(getattr(saved, name).dataobj),
                                   np.asarray(getattr(direct, name).dataobj), err_msg=name)
    # one voxel against scipy's Student t-test, independently of lsm
    masks = study["masks"]
    scores = study["phenotype"].loc[list(masks), "score"].to_numpy()
    n_les = np.asarray(saved.n_lesioned.dataobj)
    voxel = np.unravel_index(np.argmax(np.abs(np.asarray(saved.z.dataobj))), n_les.shape)
    hit = np.array([m[voxel] for m in masks.values()])
    t, _ = stats.ttest_ind(scores[hit], scores[~hit])
    assert np.asarray(saved.stat.dataobj)[voxel] == pytest.approx(t, rel=1e-6)
    for name in ("dataset_description.json", "excluded.tsv", "vlsm_clusters.tsv", "vlsm_null.tsv"):
        assert (out / name).is_file(), name
    assert not (out / "report.html").exists()  # --no-report
    assert pd.read_csv(out / "excluded.tsv", sep="\t")["subject"].tolist() == ["sub-999"]

    # report: the HTML file of the saved folder (default RESULT/report.html), refused a second
    # time without --overwrite
    proc = run_lsm("report", out, "--no-territories")
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.html").read_text()
    assert text.lstrip().lower().startswith("<!doctype html") and "</html>" in text
    # without the cohort, the drop list saved beside the result is shown
    assert "sub-999" in text and "phenotype row without a lesion mask" in text
    assert "Cohort of 40 subjects" not in text
    proc = run_lsm("report", out)
    assert proc.returncode == 1 and "--overwrite" in error_line(proc)
    # with the cohort: its description and drop list enter the report
    proc = run_lsm("report", out, "--no-territories", "--overwrite", "-l", root / "lesions", "-p",
                   root / "participants.tsv", "--title", "CLI report test")
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.html").read_text()
    assert "CLI report test" in text and "sub-999" in text and "Cohort of 40 subjects" in text
    proc = run_lsm("report", out, "--overwrite", "-l", root / "lesions")
    assert proc.returncode == 1 and "--phenotype" in error_line(proc)


def test_vlsm_bad_method_names_the_parameter(study, tmp_path):
    root = study["root"]
    proc = run_lsm("vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "score",
                   "--method", "magic", "-o", tmp_path / "out")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "--method" in line and "magic" in line
    assert "cohort:" not in proc.stdout  # refused before reading any mask
    proc = run_lsm("vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "score",
                   "--lesion-volume", "dtlvc", "-o", tmp_path / "out")  # dTLVC needs regression
    assert proc.returncode == 1 and "cohort:" not in proc.stdout
    assert "dtlvc" in error_line(proc)
    assert not (tmp_path / "out").exists()


def test_vlsm_unknown_score_column(study, tmp_path):
    root = study["root"]
    proc = run_lsm("vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "gait",
                   "-o", tmp_path / "out")
    assert proc.returncode == 1
    assert "gait" in error_line(proc)


# ----------------------------------------------------------------------------- real data
def test_territory_load_on_soop_masks_matches_reference(shared_data_dir, tmp_path):
    """20 real SOOP masks given as a file list, the arterial atlas from --data-dir, checked
    against the independent artery_reference.tsv computed by the SOOP authors."""
    soop = shared_data_dir / "soop"
    reference = pd.read_csv(soop / "artery_reference.tsv", sep="\t", index_col="participant_id")
    files = sorted((soop / "lesions").glob("bwsrsub-*_lesion.nii.gz"))[:20]
    out = tmp_path / "loads"
    proc = run_lsm("territory-load", "-l", *files, "-p", soop / "participants.tsv", "--level", "1",
                   "--data-dir", shared_data_dir, "-o", out)
    assert proc.returncode == 0, proc.stderr
    loads = pd.read_csv(out / "level-1_measure-territoryfraction_territoryload.tsv", sep="\t",
                        index_col="participant_id")
    dropped = pd.read_csv(out / "excluded.tsv", sep="\t")
    assert len(loads) + (dropped["source"] != "phenotype").sum() == len(files)
    # labels 11, 12, 25, 26, 29, 30 are truncated by the reference's cropped grid; its
    # right-side names of 10/12/14/16 repeat the left ones, so match columns by label number
    by_label = {int(c.split("_")[0]): c for c in reference.columns if c.split("_")[0].isdigit()}
    atlas_names = pd.read_csv(shared_data_dir / "arterial_atlas" / "labels_level-1.tsv", sep="\t",
                              index_col="index")["abbrev"]
    compared = 0
    for label, column in by_label.items():
        if label in (11, 12, 25, 26, 29, 30):
            continue
        np.testing.assert_allclose(loads[atlas_names[label]], reference.loc[loads.index, column],
                                   atol=1e-12, err_msg=atlas_names[label])
        compared += 1
    assert compared == 25
    np.testing.assert_allclose(loads["lesion_volume_ml"], reference.loc[loads.index, "lesion_volume"] / 1000)


def test_main_in_process_records_the_command(study, tmp_path, capsys):
    """lsm.cli.main(argv) returns the exit status; the command line lands in the provenance."""
    from lsm.cli import main

    out = tmp_path / "o"
    argv = ["overlap", "-l", str(study["root"] / "lesions"), "-o", str(out)]
    assert main(argv) == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Description"] == "lsm " + " ".join(argv)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lsm: error: Output") and "--overwrite" in err


def test_correlate_territory_level_matches_the_library(shared_data_dir, study, tmp_path, monkeypatch):
    """--territory-level runs lsm.territory_lsm with the arterial atlas found via --data-dir."""
    import warnings

    from lsm.exceptions import LSMWarning

    out = tmp_path / "corr"
    root = study["root"]
    proc = run_lsm("correlate", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "score",
                   "--n-boot", "0", "--territory-level", "2", "--n-permutations", "200",
                   "--data-dir", shared_data_dir, "-o", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "level-2_territorylsm.tsv", sep="\t", index_col=0)
    monkeypatch.setenv("LSM_DATA", str(shared_data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        direct = lsm.territory_lsm(study["cohort"], "score", level=2, n_permutations=200, random_state=0)
    expected = direct.to_dataframe()
    assert list(table.index) == list(expected.index)
    np.testing.assert_allclose(table["r"], expected["r"], rtol=1e-10)
    np.testing.assert_allclose(table["p_fwe"], expected["p_fwe"], rtol=1e-10)
    # the table's sidecar describes every column (was an empty {}) and the analysis
    sidecar = json.loads((out / "level-2_territorylsm.json").read_text())
    columns = ["territory", *table.columns]
    assert all(sidecar[c]["Description"] for c in columns), set(columns) - set(sidecar)
    assert sidecar["Parameters"]["method"] == direct.method == "spearman"
    assert sidecar["Parameters"]["level"] == 2 and sidecar["Parameters"]["n_permutations"] == 200

    # the issue-5 question from the shell: which territory matters beyond lesion size (OLS)
    out2 = tmp_path / "corr2"
    proc = run_lsm("correlate", "-l", root / "lesions", "-p", root / "participants.tsv", "--score", "score",
                   "--n-boot", "0", "--territory-level", "2", "--n-permutations", "200",
                   "--territory-method", "regression", "--lesion-volume", "covariate",
                   "--volume-transform", "log",
                   "--data-dir", shared_data_dir, "-o", out2)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out2 / "level-2_territorylsm.tsv", sep="\t", index_col=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LSMWarning)
        direct = lsm.territory_lsm(study["cohort"], "score", level=2, method="regression",
                                   lesion_volume="covariate", volume_transform="log",
                                   n_permutations=200, random_state=0)
    np.testing.assert_allclose(table["p_fwe"], direct.to_dataframe()["p_fwe"], rtol=1e-10)
    np.testing.assert_allclose(table["t"], direct.to_dataframe()["t"], rtol=1e-10)
    sidecar = json.loads((out2 / "level-2_territorylsm.json").read_text())
    assert sidecar["Parameters"]["method"] == "regression" and sidecar["Parameters"]["lesion_volume"] == "covariate"
    assert sidecar["Parameters"]["volume_transform"] == "log"


def test_messages_never_name_temporary_folders(study, tmp_path):
    """Outputs are written into a hidden '.<name>.tmp-*' folder renamed at the end: no message
    (default or --verbose) names it or the '.vlsm-result' subfolder; they name the output."""
    root = study["root"]
    lesions, pheno, atlas = root / "lesions", root / "participants.tsv", root / "quadrants.nii.gz"
    commands = {
        "demo": ["demo", "--n-subjects", "40", "--n-permutations", "20"],
        "vlsm": ["vlsm", "-l", lesions, "-p", pheno, "-s", "nihss", "--n-permutations", "20",
                 "--no-territories"],
        "territory-load": ["territory-load", "-l", lesions, "--atlas", atlas],
        "descriptors": ["descriptors", "-l", lesions, "--atlas", atlas],
        "overlap": ["overlap", "-l", lesions, "-p", pheno, "--by", "sex"],
        "correlate": ["correlate", "-l", lesions, "-p", pheno, "-s", "nihss", "--n-boot", "20"],
    }
    assert set(commands) | {"report"} == set(SUBCOMMANDS)
    for verbosity in ([], ["-v"]):
        tag = "".join(verbosity)
        runs = {name: (tmp_path / f"{name}{tag}", args) for name, args in commands.items()}
        runs["report"] = (tmp_path / f"report{tag}.html",
                          ["report", tmp_path / f"vlsm{tag}", "--no-territories"])
        for name, (out, args) in runs.items():
            proc = run_lsm(*verbosity, *args, "-o", out)
            text = proc.stdout + proc.stderr
            assert proc.returncode == 0, (name, proc.stderr)
            assert ".tmp-" not in text and ".vlsm-result" not in text, (name, verbosity, text)
            assert str(out) in text, (name, verbosity, text)  # the final output is named
    _check_every_tsv_is_bids(tmp_path)


def _check_every_tsv_is_bids(folder):
    """Every TSV has a JSON sidecar describing each of its columns, and 'n/a', never an
    empty cell, for a missing value."""
    tables = sorted(folder.rglob("*.tsv"))
    assert len(tables) >= 10, tables
    for tsv in tables:
        sidecar = json.loads(tsv.with_suffix(".json").read_text())
        table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
        undescribed = [c for c in table.columns
                       if not (isinstance(sidecar.get(c), dict) and sidecar[c].get("Description"))]
        assert not undescribed, (tsv.name, undescribed)
        assert not (table == "").any().any(), tsv.name


def test_error_while_writing_names_the_output_not_the_temporary_folder(study, tmp_path, capsys,
                                                                       monkeypatch):
    import lsm.results as results_mod
    from lsm.cli import main

    def disk_full(img, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(results_mod, "_write_nifti", disk_full)
    out = tmp_path / "out"
    argv = ["vlsm", "-l", str(study["root"] / "lesions"), "-p", str(study["root"] / "participants.tsv"),
            "-s", "nihss", "--n-permutations", "20", "--no-territories", "-o", str(out)]
    assert main(argv) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("lsm: warning:")]
    assert len(err) == 1 and err[0].startswith("lsm: error:"), err
    err = err[0]
    assert ".tmp-" not in err and ".vlsm-result" not in err, err
    assert f"{out / 'vlsm_stat-stat_statmap.nii.gz'}" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("before", [None, "/somewhere/else"])
def test_data_dir_option_does_not_leak_into_the_environment(study, tmp_path, monkeypatch, capsys, before):
    """--data-dir acts as LSM_DATA for one command; main() in-process restores the variable
    (here the folder holds no atlas, so the command fails naming that folder)."""
    from lsm.cli import main

    if before is None:
        monkeypatch.delenv("LSM_DATA", raising=False)
    else:
        monkeypatch.setenv("LSM_DATA", before)
    argv = ["descriptors", "-l", str(study["root"] / "lesions"), "-o", str(tmp_path / "o"),
            "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 1
    assert str(tmp_path / "data" / "arterial_atlas") in capsys.readouterr().err
    assert os.environ.get("LSM_DATA") == before


def test_a_warning_is_printed_once_per_command(study, tmp_path):
    """Without the atlas both the cluster table and the report would warn: one line only."""
    proc = run_lsm("vlsm", "-l", study["root"] / "lesions", "-p", study["root"] / "participants.tsv",
                   "-s", "score", "--n-permutations", "20", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert text.count("atlas unavailable") == 1, text


def test_main_in_process_restores_the_logger(study, tmp_path):
    import logging

    from lsm.cli import main

    log = logging.getLogger("lsm")
    before = (log.level, log.propagate, list(log.handlers))
    assert main(["--quiet", "overlap", "-l", str(study["root"] / "lesions"), "-o", str(tmp_path / "o")]) == 0
    assert (log.level, log.propagate, list(log.handlers)) == before


@pytest.mark.parametrize("where", ["same", "parent", "glob-parent"])
def test_output_that_holds_the_inputs_is_refused_even_with_overwrite(study, tmp_path, capsys, where):
    """--overwrite must never delete the lesion masks: an output that is (or contains) an
    input folder is refused before anything is read or written."""
    import shutil

    from lsm.cli import main

    lesions = tmp_path / "study" / "masks"
    shutil.copytree(study["root"] / "lesions", lesions)
    before = sorted(p.name for p in lesions.iterdir())
    lesion_arg = str(lesions / "*.nii.gz") if where == "glob-parent" else str(lesions)
    output = lesions if where == "same" else tmp_path / "study"
    argv = ["overlap", "-l", lesion_arg, "-o", str(output), "--overwrite"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is or contains the input" in err, err
    assert sorted(p.name for p in lesions.iterdir()) == before
    # an output folder inside the lesion folder is fine (nothing is replaced)
    assert main(["--quiet", "overlap", "-l", str(lesions), "-o", str(lesions / "derivatives")]) == 0


def test_errors_name_command_line_options_not_library_parameters(study, tmp_path):
    root = study["root"]
    base = ["vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "-s", "score", "--no-report",
            "--no-territories"]
    proc = run_lsm(*base, "--min-lesioned", "1", "-o", tmp_path / "a")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "--min-lesioned" in line and "min_lesioned" not in line, line
    proc = run_lsm(*base, "--n-jobs", "0", "-o", tmp_path / "b")
    assert proc.returncode == 1 and "--n-jobs" in error_line(proc)
    proc = run_lsm("overlap", "-l", root / "lesions", "-p", root / "participants.tsv", "--by", "nope",
                   "-o", tmp_path / "c")
    assert proc.returncode == 1 and "--by" in error_line(proc)


def test_cfwer_v_option_and_quiet_silences_warnings(study, tmp_path):
    """--v (CFWER) is not mistaken for an abbreviation of --version/--verbose; --quiet prints
    nothing, not even the atlas-unavailable warning."""
    root = study["root"]
    proc = run_lsm("--quiet", "vlsm", "-l", root / "lesions", "-p", root / "participants.tsv", "-s", "score",
                   "--correction", "cfwer", "--v", "3", "--n-permutations", "20", "--no-report",
                   "-o", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert lsm.VLSMResult.load(tmp_path / "a").params["v"] == 3


def test_repeated_python_warning_is_shown_once(capsys):
    import argparse
    import logging

    from lsm import cli

    log = logging.getLogger("lsm")
    state = log.level, log.propagate
    # the logging set-up of one command (as main() does)
    handler = cli._configure_logging(argparse.Namespace(debug=False, quiet=False, verbose=False))
    try:
        for _ in range(3):
            cli._show_warning(UserWarning("loads are approximate"), UserWarning, "x.py", 1)
        cli._show_warning(UserWarning("another one"), UserWarning, "x.py", 2)
    finally:
        log.removeHandler(handler)
        log.setLevel(state[0])
        log.propagate = state[1]
    assert capsys.readouterr().err.splitlines() == ["lsm: warning: loads are approximate",
                                                     "lsm: warning: another one"]


def test_correlate_leaves_the_callers_matplotlib_backend_alone(study, tmp_path):
    """Called in-process (a notebook, a script), the command must not switch the backend."""
    import matplotlib
    import matplotlib.pyplot as plt

    from lsm.cli import main

    root = study["root"]
    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        figures = plt.get_fignums()
        status = main(["-q", "correlate", "-l", str(root / "lesions"), "-p", str(root / "participants.tsv"),
                       "--score", "score", "--n-boot", "0", "-o", str(tmp_path / "corr")])
        assert status == 0
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # no figure left open in the caller's pyplot
    finally:
        matplotlib.use(before)
    assert (tmp_path / "corr" / "volumescore_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
