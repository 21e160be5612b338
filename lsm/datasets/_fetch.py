"""Data directory resolution, the file manifest, downloads and sha256 checks.

Every dataset lives in ``<data_dir>/<dataset>/`` in the layout of the project's
``shared/data`` folder (``arterial_atlas/``, ``soop/``, ``lesymap/``). The manifest
(``manifest.json`` beside this module, built by :mod:`lsm.datasets._make_manifest`
from that folder) lists, per dataset, each file's path in the layout, its size and
sha256, and where it comes from upstream.

A folder that already holds a dataset's files is used as is (nothing is downloaded).
Missing files are downloaded with :mod:`pooch`, which writes to a temporary file,
checks the sha256 and only then moves the file into place, so an interrupted or
tampered download never lands in the cache.

Where files are downloaded from, first match wins:

1. the ``url=`` argument of a fetcher;
2. the ``LSM_DATA_URL`` environment variable: a mirror laid out like ``shared/data``
   (``<url>/<dataset>/<path>``), e.g. an institutional copy or a local test server;
3. the dataset's public upstream recorded in the manifest: SOOP at a pinned GitHub
   commit, LESYMAP from its master branch (its example data has not changed in years; a
   changed file would fail the sha256 check, never be used). The arterial atlas has no
   anonymous upstream (NITRC asks for a login): see ``install_arterial_atlas``.
"""

import hashlib
import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from .._utils import _umask
from ..exceptions import DataFetchError, HashMismatchError

__all__ = ["get_data_dir", "dataset_files", "fetch_dataset", "file_sha256", "DATA_ENV", "URL_ENV"]

logger = logging.getLogger("lsm")

DATA_ENV = "LSM_DATA"
URL_ENV = "LSM_DATA_URL"
_MANIFEST_PATH = Path(__file__).with_name("manifest.json")


def get_data_dir(data_dir=None):
    """Folder holding the datasets.

    Parameters
    ----------
    data_dir : str or Path or None
        Explicit folder. When None, the ``LSM_DATA`` environment variable is used,
        else ``~/lsm_data``.

    Returns
    -------
    Path
        The folder (``~`` expanded; it is not created here).
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or Path("~") / "lsm_data"
    return Path(data_dir).expanduser()


@lru_cache(maxsize=1)
def _manifest():
    with open(_MANIFEST_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _dataset_entry(dataset):
    datasets = _manifest()["datasets"]
    if dataset not in datasets:
        raise ValueError(
            f"Invalid value for the 'dataset' parameter. Allowed values are "
            f"{', '.join(repr(d) for d in datasets)}, but got {dataset!r} instead."
        )
    return datasets[dataset]


def dataset_files(dataset, required_only=True):
    """Manifest entries of one dataset: ``{relative path: entry}``.

    Each entry holds ``sha256``, ``size`` and, for files with a public upstream,
    ``source`` (the path in the upstream repository). Files marked ``"optional"``
    (licences, READMEs, the original-header atlas) are skipped when ``required_only``.
    """
    files = _dataset_entry(dataset)["files"]
    if required_only:
        return {k: v for k, v in files.items() if not v.get("optional", False)}
    return dict(files)


def file_sha256(path, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_url(dataset, relpath, entry, url):
    """Download URL of one file, or None when no source is known."""
    if url is None:
        url = os.environ.get(URL_ENV) or None
    if url is not None:
        return f"{url.rstrip('/')}/{dataset}/{relpath}"
    upstream = _dataset_entry(dataset).get("upstream")
    if upstream is None or "source" not in entry:
        return None
    return upstream.rstrip("/") + "/" + entry["source"]


def _hash_mismatch(dataset, relpath, url, detail):
    return HashMismatchError(
        f"The file {relpath!r} of the {dataset!r} dataset downloaded from {url} does not "
        f"have the expected sha256 ({detail}). The upstream file may have changed or the "
        "download was corrupted: nothing was written to the cache. Retry; if it fails "
        f"again, download the file by hand into <data_dir>/{dataset}/{relpath} (see "
        "lsm/datasets/LAYOUTS.md) or point LSM_DATA_URL at a mirror of the data."
    )


def _download(dataset, relpath, entry, target_dir, url):
    from pooch.downloaders import choose_downloader  # local import: only needed to download

    file_url = _file_url(dataset, relpath, entry, url)
    if file_url is None:
        raise DataFetchError(
            f"No download source is known for {relpath!r} of the {dataset!r} dataset. "
            f"Put the file in {str(target_dir / relpath)!r}, or set LSM_DATA_URL to a "
            "mirror laid out like the project's shared/data folder."
        )
    dest = target_dir / relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.debug("Downloading %s", file_url)
    # The download goes to a temporary file next to its destination; lsm checks the sha256
    # itself (pooch reports a mismatch as a plain ValueError, like many other failures) and
    # moves the file into place only when it matches.
    fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    part = Path(part)
    try:
        try:
            downloader = choose_downloader(file_url, progressbar=False)
            downloader(file_url, str(part), None)
        except Exception as exc:  # requests/OSError/ValueError: network problems of every kind
            raise DataFetchError(
                f"Could not download {relpath!r} of the {dataset!r} dataset from {file_url}: "
                f"{type(exc).__name__}: {exc}. Check the network, or put the file in "
                f"{str(dest)!r} yourself (or set LSM_DATA to a folder that holds the data)."
            ) from exc
        digest = file_sha256(part)
        if digest != entry["sha256"]:
            raise _hash_mismatch(dataset, relpath, file_url, f"got {digest}, expected {entry['sha256']}")
        os.chmod(part, 0o666 & ~_umask())  # mkstemp makes it private (0600)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _verify_present(path, entry):
    digest = file_sha256(path)
    if digest == entry["sha256"]:
        return
    if "array_sha256" in entry:
        # Derived images (install_arterial_atlas) differ in compression, not in voxels.
        import nibabel as nib

        from ._atlas import array_sha256

        if array_sha256(nib.load(path)) == entry["array_sha256"]:
            return
    raise HashMismatchError(
        f"The cached file {str(path)!r} has sha256 {digest}, expected {entry['sha256']}. "
        "It is corrupted or from another release: delete it and call the fetcher again "
        "to download a fresh copy."
    )


def fetch_dataset(dataset, data_dir=None, url=None, verify=False, n_jobs=8, verbose=1):
    """Make sure every required file of ``dataset`` is present; return its folder.

    Parameters
    ----------
    dataset : {"arterial_atlas", "soop", "lesymap"}
        Dataset name (its folder in the data directory).
    data_dir : str or Path or None
        See :func:`get_data_dir`.
    url : str or None
        Base URL of a mirror laid out like ``shared/data``; overrides ``LSM_DATA_URL``
        and the upstream.
    verify : bool
        Also check the sha256 of files already present (downloaded files are always
        checked). A mismatch raises :class:`~lsm.exceptions.HashMismatchError`.
    n_jobs : int
        Parallel downloads.
    verbose : int
        Progress bar while downloading when > 0.

    Returns
    -------
    Path
        ``<data_dir>/<dataset>``.
    """
    root = get_data_dir(data_dir) / dataset
    files = dataset_files(dataset)
    missing = [rel for rel in files if not (root / rel).is_file()]
    if verify:
        for rel, entry in files.items():
            if rel not in missing:
                _verify_present(root / rel, entry)
    if not missing:
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFetchError(
            f"{len(missing)} file(s) of the {dataset!r} dataset are missing in {str(root)!r} "
            f"(e.g. {missing[0]!r}) and the folder cannot be written ({exc}). Pass "
            "data_dir=<a writable folder> or set LSM_DATA."
        ) from exc
    import pooch
    from tqdm.auto import tqdm

    source = _file_url(dataset, missing[0], files[missing[0]], url) or "(no source)"
    logger.info("Downloading %d file(s) of %r into %s (first: %s)", len(missing), dataset, root, source)
    jobs = max(1, min(int(n_jobs), len(missing)))
    bar = tqdm(total=len(missing), desc=f"lsm: {dataset}", unit="file",
               disable=not verbose or len(missing) < 2)
    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)  # one line per file is too chatty for 1,449 files
    try:
        if jobs == 1:
            for rel in missing:
                _download(dataset, rel, files[rel], root, url)
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_download, dataset, rel, files[rel], root, url) for rel in missing]
                for fut in futures:
                    fut.result()
                    bar.update()
    finally:
        pooch_logger.setLevel(level)
        bar.close()
    return root
