"""Small shared helpers: option checking, atomic outputs, random states."""

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from .exceptions import OutputExistsError

__all__ = ["atomic_output_dir", "atomic_write_text",
           "display_path"]

#: Subfolder of an output folder that :func:`lsm._derivatives.move_result_files` saves a
#: result into before moving its files up.
RESULT_SUBDIR = ".vlsm-result"
# the temporary sibling ".<name>.tmp-<random>" of atomic_output_dir / atomic_write_text
_TMP_NAME = re.compile(r"(?<![^/\\\s'\"])\.([^/\\'\"\n]+?)\.tmp-[A-Za-z0-9_]+")


def display_path(text):
    """``text`` (a path or a message) with the temporary names of atomic outputs replaced.

    ``.out.tmp-x1y2/report.html`` becomes ``out/report.html`` and the
    ``.vlsm-result`` subfolder is dropped, so that messages name the final output path
    the user asked for, never the temporary folder renamed into place at the end.
    """
    text = _TMP_NAME.sub(r"\1", str(text))
    return re.sub(rf"[/\\]{re.escape(RESULT_SUBDIR)}(?=$|[/\\\s'\"])", "", text)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"Output {str(path)!r} already exists. Pass overwrite=True (or --overwrite on the "
            "command line) to replace it, or choose another path."
        )
    return path


@contextlib.contextmanager
def atomic_output_dir(path, overwrite=False):
    """Write a folder atomically.

    Yields a temporary sibling folder; on success it replaces ``path`` in one rename
    (the old folder, if any and ``overwrite=True``, is removed only afterwards). On any
    exception the temporary folder is deleted and ``path`` is left untouched.
    """
    path = _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if not overwrite:
        # The output may have appeared while we were writing (another run with the same
        # output, e.g. a SLURM array): never replace it without overwrite=True. os.rename
        # of a folder fails onto a non-empty folder or a file, so this holds to the end.
        try:
            if path.exists() or path.is_symlink():
                raise FileExistsError(path)
            os.rename(tmp, path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (isinstance(exc, FileExistsError) or exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR)):
                raise
            raise OutputExistsError(
                f"Output {str(path)!r} appeared while this result was being written (another "
                "run writing to the same path?); it was left as it is. Pass overwrite=True "
                "(--overwrite) to replace it, or choose another path."
            ) from None
        return path
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    return path


def atomic_write_text(path, text, overwrite=False, encoding="utf-8"):
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        if overwrite:
            os.replace(tmp, path)
        else:
            # a hard link fails if the path exists by now (no-replace), then drop the temp name
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(
                    f"Output {str(path)!r} appeared while it was being written (another run "
                    "writing to the same path?); it was left as it is. Pass overwrite=True to "
                    "replace it, or choose another path."
                ) from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
