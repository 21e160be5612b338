"""Dataset fetchers and loaders for published stroke-lesion layouts.

Fetchers (nilearn style) read ``<data_dir>/<dataset>/`` in the layout of the project's
``shared/data`` folder and download missing files (sha256-checked) from the public
upstream or a mirror. ``data_dir`` defaults to the ``LSM_DATA`` environment variable,
else ``~/lsm_data``.

- :func:`fetch_arterial_atlas` - arterial territory atlas (Liu et al. 2023)
- :func:`fetch_soop`, :func:`load_soop` - 1,449 SOOP acute stroke lesions
- :func:`fetch_lesymap_example`, :func:`load_lesymap_example` - LESYMAP's 131 lesions
- :func:`load_jhu_stroke`, :func:`load_atlas_r2`, :func:`load_isles24` - loaders for
  folders in those datasets' published layouts (see ``LAYOUTS.md``)
"""

from ._atlas import ArterialAtlas, fetch_arterial_atlas, install_arterial_atlas
from ._fetch import fetch_dataset, get_data_dir
from ._layouts import load_atlas_r2, load_isles24, load_jhu_stroke
from ._lesymap import LesymapFiles, fetch_lesymap_example, load_lesymap_example
from ._soop import SOOPFiles, fetch_soop, load_soop

__all__ = [
    "ArterialAtlas",
    "fetch_arterial_atlas",
    "install_arterial_atlas",
    "fetch_dataset",
    "get_data_dir",
    "SOOPFiles",
    "fetch_soop",
    "load_soop",
    "LesymapFiles",
    "fetch_lesymap_example",
    "load_lesymap_example",
    "load_jhu_stroke",
    "load_atlas_r2",
    "load_isles24",
]
