"""Build ``manifest.json`` from a folder laid out as the project's ``shared/data``.

Run once when the reference data change::

    python -m lsm.datasets._make_manifest /path/to/shared/data

For each file it records size and sha256, and the path of the same file in its public
upstream repository (the shared files are byte copies of the upstream files, renamed
into our layout). The arterial-atlas images and label tables are *derived* (reoriented,
resampled, corrected), so for them the manifest also records a hash of the voxel array
(:func:`lsm.datasets._atlas.array_sha256`), which :func:`install_arterial_atlas` checks
after deriving them from the NITRC release.
"""

import json
import sys
from pathlib import Path

from ._fetch import _MANIFEST_PATH, file_sha256

SOOP_COMMIT = "45f40a9631bba7ef18914b36d52c28eff50a8151"
UPSTREAMS = {
    "soop": f"https://raw.githubusercontent.com/neurolabusc/StrokeOutcomeOptimizationProjectDemo/{SOOP_COMMIT}",
    # LESYMAP's example data have not changed since 2018; the sha256 catches any drift.
    "lesymap": "https://raw.githubusercontent.com/dorianps/LESYMAP/master",
    # NITRC serves the atlas only after a login: no anonymous URL (see install_arterial_atlas).
    "arterial_atlas": None,
}
OPTIONAL = {"LICENSE", "UPSTREAM_README.md", "ArterialAtlasLables_original.txt",
            "ArterialAtlas_original-header_1mm.nii.gz"}


def _soop_source(rel):
    fixed = {
        "participants.tsv": "Scripts/participants.tsv",
        "artery_reference.tsv": "Scripts/artery.tsv",
        "lesion_mean.nii.gz": "NIfTI/lesion_mean_1449.nii.gz",
        "LICENSE": "LICENSE",
        "UPSTREAM_README.md": "README.md",
    }
    if rel in fixed:
        return fixed[rel]
    if rel.startswith(("lesions/", "atlas/")):
        return "NIfTI/" + rel.split("/", 1)[1]
    raise ValueError(f"No upstream path known for soop/{rel}")


def _lesymap_source(rel):
    fixed = {"behavior.txt": "inst/extdata/behavior/behavior.txt", "LICENSE": "LICENSE",
             "UPSTREAM_README.md": "README.md"}
    if rel in fixed:
        return fixed[rel]
    if rel.startswith(("lesions/", "template/")):
        return "inst/extdata/" + rel
    raise ValueError(f"No upstream path known for lesymap/{rel}")


def build_manifest(shared_data):
    """Return the manifest dict for the folder ``shared_data``."""
    import nibabel as nib

    from ._atlas import array_sha256

    shared_data = Path(shared_data)
    out = {"version": 1, "datasets": {}}
    for dataset, upstream in UPSTREAMS.items():
        files = {}
        for path in sorted((shared_data / dataset).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(shared_data / dataset).as_posix()
            entry = {"sha256": file_sha256(path), "size": path.stat().st_size}
            if rel in OPTIONAL:
                entry["optional"] = True
            if dataset == "soop":
                entry["source"] = _soop_source(rel)
            elif dataset == "lesymap":
                entry["source"] = _lesymap_source(rel)
            elif rel.startswith("atlas-Arterial"):
                entry["derived"] = True
                entry["array_sha256"] = array_sha256(nib.load(path))
            elif rel.startswith("labels_level-"):
                entry["derived"] = True
            files[rel] = entry
        out["datasets"][dataset] = {"upstream": upstream, "files": files}
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m lsm.datasets._make_manifest <shared/data folder>")
    manifest = build_manifest(argv[0])
    _MANIFEST_PATH.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    n = sum(len(d["files"]) for d in manifest["datasets"].values())
    print(f"wrote {_MANIFEST_PATH} ({n} files)")


if __name__ == "__main__":
    main()
