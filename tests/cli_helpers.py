"""Run the ``lsm`` command line in a subprocess (shared by test_cli.py and test_demo.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _env(**extra):
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    # nothing run here needs the real data or a download: point the data folder nowhere
    env["LSM_DATA"] = str(Path(__file__).parent / "no-such-data-dir")
    env.update(extra)
    return env


def run_lsm(*args, cwd=None, env=None, exe=None):
    """Run the command line in a subprocess; returns the CompletedProcess."""
    cmd = [exe] if exe else [sys.executable, "-m", "lsm"]
    return subprocess.run(
        cmd + [str(a) for a in args], cwd=cwd, env=env or _env(), capture_output=True, text=True,
        timeout=300,
    )


def console_script():
    """The installed ``lsm`` executable: next to the interpreter, else on PATH."""
    here = Path(sys.executable).parent
    for name in ("lsm", "lsm.exe"):
        if (here / name).is_file():
            return str(here / name)
    return shutil.which("lsm")


def error_line(proc):
    """The stderr of a failed run must be exactly one line ``lsm: error: ...``."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("lsm: error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return errors[0]
