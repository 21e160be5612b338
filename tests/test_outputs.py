"""Every writer of lsm: interrupted saves leave nothing behind, and outputs are never
overwritten without ``overwrite=True`` (``--overwrite`` on the command line).

A fault injector makes the k-th low-level write of a writer fail (``nibabel.save``,
``Path.write_text``/``write_bytes``, ``DataFrame.to_csv``, ``Figure.savefig``, and the
file object of :func:`lsm._utils.atomic_write_text`), as a full disk or a killed job
would. After each fault the output folder must hold exactly what it held before: no
partial result folder, no temporary file, an older result intact byte for byte.

Writers covered: ``VLSMResult.save``, ``VLSMResult.to_html`` / ``lsm.report.make_report``,
``lsm.demo.run_demo``, and the command line ``lsm vlsm``, ``territory-load``,
``descriptors``, ``overlap``, ``correlate``, ``report`` and ``demo``.
"""

import contextlib
import os
import pathlib
import warnings

import matplotlib.figure
import nibabel
import numpy as np
import pandas as pd
import pytest

import lsm
from lsm.exceptions import OutputExistsError
from lsm.simulate import make_synthetic_cohort


class Fault(OSError):
    """The simulated failure (an OSError, like a full disk)."""


class FaultInjector:
    """Count low-level writes under ``root``; raise :class:`Fault` at the ``fail_at``-th."""

    def __init__(self, monkeypatch, root, fail_at=None):
        self.root = os.path.realpath(root)
        self.fail_at = fail_at
        self.count = 0
        self.where = []
        self._patch(monkeypatch)

    def _hit(self, what, target):
        if target is not None:
            try:
                path = os.path.realpath(os.fspath(target))
            except TypeError:  # a buffer (BytesIO): an in-memory figure, not a file
                return
            if not path.startswith(self.root + os.sep):
                return
        self.count += 1
        self.where.append(what)
        if self.fail_at is not None and self.count == self.fail_at:
            raise Fault(f"disk full (simulated) at write {self.count} ({what})")

    def _patch(self, mp):
        def wrap(owner, name, target_of):
            real = getattr(owner, name)

            def wrapper(*args, **kwargs):
                self._hit(f"{getattr(owner, '__name__', owner)}.{name}", target_of(args, kwargs))
                return real(*args, **kwargs)

            mp.setattr(owner, name, wrapper)

        wrap(nibabel, "save", lambda a, k: a[1] if len(a) > 1 else k.get("filename"))
        wrap(pathlib.Path, "write_text", lambda a, k: a[0])
        wrap(pathlib.Path, "write_bytes", lambda a, k: a[0])
        wrap(pd.DataFrame, "to_csv", lambda a, k: a[1] if len(a) > 1 else k.get("path_or_buf"))
        wrap(matplotlib.figure.Figure, "savefig", lambda a, k: a[1] if len(a) > 1 else k.get("fname"))
        # atomic_write_text writes through os.fdopen on a temporary file in the target folder
        wrap(os, "fdopen", lambda a, k: None)


def snapshot(root):
    """Relative path -> bytes of every file (hidden ones included) under ``root``."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_cohort(n_subjects=24, shape=(10, 12, 10), voxel_size=8.0, random_state=2)


@pytest.fixture(scope="module")
def result(cohort):
    return lsm.vlsm(cohort, "nihss", n_permutations=20, min_lesioned=3, random_state=0)


@pytest.fixture(scope="module")
def inputs(cohort, tmp_path_factory):
    """The synthetic cohort as files: masks folder and participants.tsv."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "masks").mkdir()
    for s in cohort.subjects:
        nibabel.save(cohort.lesion_img(s), folder / "masks" / f"{s}_lesion.nii.gz")
    cohort.phenotype.reset_index().to_csv(folder / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return folder


@pytest.fixture(scope="module")
def saved_result(result, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "res"
    result.save(path, atlas=None)
    return path


def _cli(argv):
    from lsm.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["-q", *argv])


class CLIError(Exception):
    pass


def cli_writer(argv_of):
    def write(root, overwrite, ctx):
        argv = argv_of(root / "out", ctx) + (["--overwrite"] if overwrite else [])
        status = _cli(argv)
        if status != 0:
            raise CLIError(f"exit {status}")

    return write


# writer name -> (write(root, overwrite, ctx), fault positions to try: "all" or a tuple
# of "first"/"middle"/"last")
WRITERS = {
    "VLSMResult.save": (
        lambda root, overwrite, ctx: ctx["result"].save(root / "out", overwrite=overwrite, atlas=None),
        "all",
    ),
    "VLSMResult.to_html": (
        lambda root, overwrite, ctx: ctx["result"].to_html(
            root / "out.html", cohort=ctx["cohort"], overwrite=overwrite, atlas=None
        ),
        "all",
    ),
    "lsm.demo.run_demo": (
        lambda root, overwrite, ctx: __import__("lsm.demo", fromlist=["run_demo"]).run_demo(
            root / "out", n_subjects=24, n_permutations=10, overwrite=overwrite
        ),
        ("middle", "last"),
    ),
    "cli vlsm": (
        cli_writer(lambda out, ctx: [
            "vlsm", "-l", str(ctx["inputs"] / "masks"), "-p", str(ctx["inputs"] / "participants.tsv"),
            "-s", "nihss", "--n-permutations", "10", "--min-lesioned", "3", "--no-report", "-o", str(out),
        ]),
        ("first", "middle", "last"),
    ),
    "cli overlap": (
        cli_writer(lambda out, ctx: [
            "overlap", "-l", str(ctx["inputs"] / "masks"), "-p", str(ctx["inputs"] / "participants.tsv"),
            "--by", "sex", "-o", str(out),
        ]),
        ("first", "middle", "last"),
    ),
    "cli descriptors": (
        cli_writer(lambda out, ctx: ["descriptors", "-l", str(ctx["inputs"] / "masks"), "-o", str(out)]),
        ("middle",),
    ),
    "cli territory-load": (
        cli_writer(lambda out, ctx: ["territory-load", "-l", str(ctx["inputs"] / "masks"), "-o", str(out)]),
        ("middle",),
    ),
    "cli correlate": (
        cli_writer(lambda out, ctx: [
            "correlate", "-l", str(ctx["inputs"] / "masks"), "-p", str(ctx["inputs"] / "participants.tsv"),
            "-s", "nihss", "--n-boot", "20", "--n-permutations", "20", "-o", str(out),
        ]),
        ("middle", "last"),
    ),
    "cli report": (
        cli_writer(lambda out, ctx: ["report", str(ctx["saved"]), "-o", str(out)]),
        ("last",),
    ),
    "cli demo": (
        cli_writer(lambda out, ctx: ["demo", "--n-subjects", "24", "--n-permutations", "10", "-o", str(out)]),
        ("middle",),
    ),
}
# writers that fetch the arterial atlas (real data) to label territories
NEEDS_ATLAS = {"cli territory-load", "cli descriptors", "cli correlate", "cli report"}


@pytest.fixture
def ctx(request, cohort, result, inputs, saved_result):
    if request.node.callspec.params["name"] in NEEDS_ATLAS:
        data = request.getfixturevalue("shared_data_dir")
        request.getfixturevalue("monkeypatch").setenv("LSM_DATA", str(data))
    return {"cohort": cohort, "result": result, "inputs": inputs, "saved": saved_result}


def _expect_failure(write, root, overwrite, ctx):
    with pytest.raises((Fault, CLIError)):
        write(root, overwrite, ctx)


def _positions(spec, n):
    if spec == "all":
        return list(range(1, n + 1))
    pick = {"first": 1, "middle": max(1, (n + 1) // 2), "last": n}
    return sorted({pick[p] for p in spec})


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_interrupted_write_leaves_nothing(name, ctx, tmp_path, monkeypatch):
    write, spec = WRITERS[name]
    # count the writes of a complete run
    done = tmp_path / "complete"
    done.mkdir()
    with monkeypatch.context() as mp:
        counter = FaultInjector(mp, done)
        write(done, False, ctx)
    assert counter.count >= 1, f"{name} wrote nothing that the injector saw"
    assert snapshot(done), f"{name} produced no output"
    for k in _positions(spec, counter.count):
        root = tmp_path / f"fault-{k}"
        root.mkdir()
        with monkeypatch.context() as mp:
            inj = FaultInjector(mp, root, fail_at=k)
            _expect_failure(write, root, False, ctx)
        assert inj.count == k
        left = sorted(p.name for p in root.iterdir())
        assert left == [], f"{name}: fault at write {k} ({inj.where[-1]}) left {left}"


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_existing_output_is_never_overwritten_without_permission(name, ctx, tmp_path, monkeypatch):
    write, _ = WRITERS[name]
    with monkeypatch.context() as mp:
        counter = FaultInjector(mp, tmp_path)
        write(tmp_path, False, ctx)
    before = snapshot(tmp_path)
    assert before
    # 1. without overwrite: a named error (OutputExistsError / exit status 1), nothing touched
    if name.startswith("cli "):
        with pytest.raises(CLIError):
            write(tmp_path, False, ctx)
    else:
        with pytest.raises(OutputExistsError, match="overwrite=True"):
            write(tmp_path, False, ctx)
    assert snapshot(tmp_path) == before
    # 2. overwrite=True interrupted mid-way: the old output survives intact
    k = _positions(("middle",), counter.count)[0]
    with monkeypatch.context() as mp:
        FaultInjector(mp, tmp_path, fail_at=k)
        _expect_failure(write, tmp_path, True, ctx)
    assert snapshot(tmp_path) == before, f"{name}: an interrupted overwrite (write {k}) changed the old output"
    # 3. overwrite=True completes: the output is replaced, nothing else is left
    write(tmp_path, True, ctx)
    assert set(snapshot(tmp_path)) == set(before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_refusal_names_the_output_and_the_flag(inputs, tmp_path, capsys):
    out = tmp_path / "ov"
    argv = ["overlap", "-l", str(inputs / "masks"), "-o", str(out)]
    assert _cli(argv) == 0
    capsys.readouterr()
    assert _cli(argv) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err


@contextlib.contextmanager
def _no_leftovers(folder):
    before = set(os.listdir(folder))
    yield
    assert set(os.listdir(folder)) == before


def test_keyboard_interrupt_mid_save_leaves_nothing(result, tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt, not an Exception) during a save is cleaned up too."""
    real = nibabel.save
    calls = {"n": 0}

    def interrupted(img, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(img, path, *a, **k)

    monkeypatch.setattr(nibabel, "save", interrupted)
    with _no_leftovers(tmp_path), pytest.raises(KeyboardInterrupt):
        result.save(tmp_path / "res", atlas=None)
    assert calls["n"] == 3
    np.testing.assert_equal(sorted(os.listdir(tmp_path)), [])


def test_output_that_appears_during_the_write_is_not_replaced(tmp_path):
    """Two runs aimed at one output (e.g. a SLURM array): the later one must not replace
    the earlier one's folder or file without overwrite=True."""
    from lsm._utils import atomic_output_dir, atomic_write_text

    folder = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="appeared while"):
        with atomic_output_dir(folder) as tmp:
            (tmp / "mine.txt").write_text("mine")
            folder.mkdir()
            (folder / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind
    assert [p.name for p in folder.iterdir()] == ["theirs.txt"]

    target = tmp_path / "table.tsv"
    real_fdopen = os.fdopen

    def fdopen_then_race(fd, *args, **kwargs):
        target.write_text("theirs")  # the other run finishes first
        return real_fdopen(fd, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fdopen", fdopen_then_race)
        with pytest.raises(OutputExistsError, match="appeared while"):
            atomic_write_text(target, "mine")
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "table.tsv"]
    # with permission both are replaced
    with atomic_output_dir(folder, overwrite=True) as tmp:
        (tmp / "mine.txt").write_text("mine")
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    atomic_write_text(target, "mine", overwrite=True)
    assert target.read_text() == "mine"


def test_sigterm_mid_save_leaves_nothing(tmp_path):
    """A SLURM time limit sends SIGTERM: the command stops with status 143 and the output
    being written is removed, like on Ctrl-C (here the signal arrives at the 3rd file)."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys, nibabel\n"
        "real, calls = nibabel.save, []\n"
        "def save(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "nibabel.save = save\n"
        "from lsm.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "work" / "demo"
    proc = subprocess.run([sys.executable, "-c", code, "--quiet", "demo", "--n-subjects", "40",
                           "--n-permutations", "20", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.strip() == "lsm: terminated"
    assert os.listdir(tmp_path / "work") == []
