"""Data-directory resolution, manifest, downloads (local HTTP server) and hash checks.

No test touches the internet: downloads come from an http.server thread on 127.0.0.1
serving a temporary copy of a few files.
"""

import hashlib
import shutil
from pathlib import Path

import pytest

from lsm.datasets import _fetch
from lsm.datasets._fetch import dataset_files, fetch_dataset, file_sha256, get_data_dir
from lsm.exceptions import DataFetchError, HashMismatchError


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def toy_manifest(monkeypatch):
    """A two-dataset manifest of tiny synthetic files, patched into the fetch module."""
    contents = {
        "toy/a.txt": b"alpha\n",
        "toy/sub/b.bin": bytes(range(256)) * 4,
        "toy/LICENSE": b"licence text\n",
    }
    files = {}
    for key, data in contents.items():
        rel = key.split("/", 1)[1]
        files[rel] = {"sha256": _sha(data), "size": len(data), "source": f"up/{rel}"}
    files["LICENSE"]["optional"] = True
    manifest = {"version": 1, "datasets": {"toy": {"upstream": None, "files": files}}}
    monkeypatch.setattr(_fetch, "_manifest", lambda: manifest)
    return contents


def _serve(www, contents, dataset_prefix=True):
    for key, data in contents.items():
        path = www / key if dataset_prefix else www / "up" / key.split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("LSM_DATA", raising=False)
    assert get_data_dir() == Path("~/lsm_data").expanduser()
    monkeypatch.setenv("LSM_DATA", str(tmp_path / "env"))
    assert get_data_dir() == tmp_path / "env"
    # The argument wins over the environment.
    assert get_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_dir("~/x") == Path.home() / "x"


def test_download_from_mirror(http_root, toy_manifest, tmp_path, monkeypatch):
    www, url, requests = http_root
    _serve(www, toy_manifest)
    monkeypatch.delenv("LSM_DATA_URL", raising=False)
    root = fetch_dataset("toy", data_dir=tmp_path / "cache", url=url, n_jobs=2)
    assert root == tmp_path / "cache" / "toy"
    assert (root / "a.txt").read_bytes() == b"alpha\n"
    assert (root / "sub" / "b.bin").read_bytes() == toy_manifest["toy/sub/b.bin"]
    assert not (root / "LICENSE").exists()  # optional files are not fetched
    assert sorted(requests) == ["/toy/a.txt", "/toy/sub/b.bin"]
    # Second call: everything cached, nothing requested.
    requests.clear()
    fetch_dataset("toy", data_dir=tmp_path / "cache", url=url, verify=True)
    assert requests == []
    # Only the missing file is downloaded again.
    (root / "a.txt").unlink()
    fetch_dataset("toy", data_dir=tmp_path / "cache", url=url)
    assert requests == ["/toy/a.txt"]


def test_download_url_from_environment(http_root, toy_manifest, tmp_path, monkeypatch):
    www, url, _ = http_root
    _serve(www, toy_manifest)
    monkeypatch.setenv("LSM_DATA_URL", url + "/")
    fetch_dataset("toy", data_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "toy" / "a.txt").is_file()


def test_download_from_upstream_paths(http_root, toy_manifest, tmp_path, monkeypatch):
    # Without a mirror the manifest's upstream + per-file source path is used.
    www, url, requests = http_root
    _serve(www, toy_manifest, dataset_prefix=False)
    monkeypatch.delenv("LSM_DATA_URL", raising=False)
    _fetch._manifest()["datasets"]["toy"]["upstream"] = url
    fetch_dataset("toy", data_dir=tmp_path / "cache", n_jobs=1)
    assert sorted(requests) == ["/up/a.txt", "/up/sub/b.bin"]


def test_hash_mismatch_names_file_and_leaves_cache_clean(http_root, toy_manifest, tmp_path):
    www, url, _ = http_root
    tampered = dict(toy_manifest)
    tampered["toy/sub/b.bin"] = b"not the right bytes"
    _serve(www, tampered)
    with pytest.raises(HashMismatchError, match=r"'sub/b.bin'.*'toy'.*sha256.*Retry"):
        fetch_dataset("toy", data_dir=tmp_path / "cache", url=url, n_jobs=1)
    assert not (tmp_path / "cache" / "toy" / "sub" / "b.bin").exists()
    # HashMismatchError is a DataFetchError and an OSError.
    assert issubclass(HashMismatchError, DataFetchError)
    assert issubclass(HashMismatchError, OSError)


def test_failed_download_mentioning_hash_is_not_a_hash_mismatch(toy_manifest, tmp_path):
    # a mirror URL that cannot be parsed (port out of range) whose path happens to say "hash":
    # a download error naming the file, not a claim that the file's sha256 differs
    url = "http://127.0.0.1:99999/hashed-mirror"
    with pytest.raises(DataFetchError, match=r"Could not download 'a.txt'.*hashed-mirror") as info:
        fetch_dataset("toy", data_dir=tmp_path / "cache", url=url, n_jobs=1)
    assert not isinstance(info.value, HashMismatchError)
    assert not (tmp_path / "cache" / "toy" / "a.txt").exists()


def test_corrupted_cached_file_detected_with_verify(toy_manifest, tmp_path):
    root = tmp_path / "cache" / "toy"
    for key, data in toy_manifest.items():
        (root / key.split("/", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        (root / key.split("/", 1)[1]).write_bytes(data)
    assert fetch_dataset("toy", data_dir=tmp_path / "cache", verify=True) == root
    (root / "a.txt").write_bytes(b"changed\n")
    # Present files are used as is by default...
    fetch_dataset("toy", data_dir=tmp_path / "cache")
    # ...and checked on request.
    with pytest.raises(HashMismatchError, match=r"a\.txt.*delete it"):
        fetch_dataset("toy", data_dir=tmp_path / "cache", verify=True)


def test_missing_file_without_source_or_network(toy_manifest, tmp_path, monkeypatch):
    monkeypatch.delenv("LSM_DATA_URL", raising=False)
    with pytest.raises(DataFetchError, match="No download source is known for 'a.txt'"):
        fetch_dataset("toy", data_dir=tmp_path / "cache", n_jobs=1)
    # A server that is not there: a DataFetchError naming the file and what to do.
    with pytest.raises(DataFetchError, match=r"Could not download 'a.txt'.*LSM_DATA"):
        fetch_dataset("toy", data_dir=tmp_path / "cache", url="http://127.0.0.1:9", n_jobs=1)


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="'dataset' parameter"):
        dataset_files("nope")


def test_bundled_manifest_is_consistent():
    # Every dataset of the real manifest: hashes are hex sha256, sources are given for
    # datasets with an upstream, and derived atlas images carry a voxel hash.
    manifest = _fetch._manifest()
    assert set(manifest["datasets"]) == {"arterial_atlas", "soop", "lesymap"}
    soop = dataset_files("soop")
    assert sum(rel.startswith("lesions/") for rel in soop) == 1449
    assert soop["lesion_mean.nii.gz"]["source"] == "NIfTI/lesion_mean_1449.nii.gz"
    assert sum(rel.startswith("lesions/") for rel in dataset_files("lesymap")) == 131
    for name, entry in manifest["datasets"].items():
        for rel, f in entry["files"].items():
            assert len(f["sha256"]) == 64 and int(f["sha256"], 16) >= 0
            if entry["upstream"]:
                assert f["source"]
            if rel.startswith("atlas-Arterial"):
                assert len(f["array_sha256"]) == 64


def test_shared_data_matches_manifest(shared_data_dir):
    # The shared folder is what the manifest was built from: every required file is
    # present with its recorded hash (checks the fetchers' 'use as is' path too).
    for dataset in ("arterial_atlas", "lesymap"):
        assert fetch_dataset(dataset, data_dir=shared_data_dir, verify=True) == shared_data_dir / dataset
    soop = dataset_files("soop")
    for rel in ("participants.tsv", "artery_reference.tsv", "lesions/bwsrsub-1000_lesion.nii.gz"):
        assert file_sha256(shared_data_dir / "soop" / rel) == soop[rel]["sha256"]


def test_lesymap_download_through_local_server(shared_data_dir, http_root, tmp_path):
    # A mirror serving a copy of the real LESYMAP folder: every required file is
    # downloaded and accepted by the real manifest's sha256; optional ones are skipped.
    from lsm.datasets import fetch_lesymap_example

    www, url, requests = http_root
    shutil.copytree(shared_data_dir / "lesymap", www / "lesymap")
    files = fetch_lesymap_example(data_dir=tmp_path / "cache", url=url)
    assert len(files.lesions) == 131 and files.parcellation.is_file()
    assert len(requests) == len(dataset_files("lesymap")) == 134
    assert "/lesymap/LICENSE" not in requests
    for rel in ("behavior.txt", "template/ch2.nii.gz", "lesions/Subject_131.nii.gz"):
        assert file_sha256(files.root / rel) == file_sha256(shared_data_dir / "lesymap" / rel)
