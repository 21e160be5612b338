"""Synthetic cohorts with a planted lesion-deficit effect (tests, demo, tutorials)."""

import warnings

import numpy as np
import pandas as pd

from ._validation import check_random_state
from .exceptions import DroppedSubjectsWarning

__all__ = ["make_synthetic_cohort", "synthetic_grid"]


def synthetic_grid(shape=(24, 28, 24), voxel_size=4.0):
    """Return a small RAS grid centred on the MNI origin: (affine, shape)."""
    shape = tuple(int(s) for s in shape)
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -voxel_size * (np.array(shape) - 1) / 2.0
    return affine, shape


def make_synthetic_cohort(
    n_subjects=80,
    *,
    shape=(24, 28, 24),
    voxel_size=4.0,
    effect_size=1.0,
    effect_center=(-20.0, 8.0, 8.0),
    effect_radius=10.0,
    lesion_radius=(6.0, 18.0),
    noise=1.0,
    random_state=None,
):
    """Build a small cohort whose score depends on damage to one region.

    Each subject gets one to three spherical lesions placed at random in the left or right
    hemisphere. The score ("deficit", higher is worse, like NIHSS) is::

        score = 2 + effect_size * 4 * (fraction of the effect region lesioned > 0)
                + 0.02 * (age - 65) + noise * N(0, 1)

    so lesioned subjects of the planted region have *higher* scores (positive t).

    Parameters
    ----------
    n_subjects : int
    shape, voxel_size : grid of the masks (RAS, centred on MNI 0, 0, 0)
    effect_size : float
        0 gives a cohort without any true effect.
    effect_center, effect_radius : planted region, world mm
    lesion_radius : (min, max) radius of lesion spheres in mm
    noise : float
        Standard deviation of the Gaussian noise.
    random_state : None, int or Generator

    Returns
    -------
    Cohort
        Phenotype columns ``score`` (float), ``nihss`` (integer 0-42, a rounded rescale of
        the score), ``mrs`` (0-6), ``age``, ``sex``. ``cohort.metadata`` holds
        ``truth_mask`` (bool 3D array), ``truth_img`` and the simulation parameters.
    """
    import nibabel as nib

    from .cohort import load_cohort

    rng = check_random_state(random_state)
    affine, shape = synthetic_grid(shape, voxel_size)
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    brain = ((xyz / (np.array(shape) * voxel_size / 2.1)) ** 2).sum(axis=1) <= 1.0
    truth = (((xyz - np.asarray(effect_center)) ** 2).sum(axis=1) <= effect_radius**2) & brain

    images, rows = {}, []
    brain_xyz = xyz[brain]
    for i in range(n_subjects):
        mask = np.zeros(xyz.shape[0], dtype=bool)
        for _ in range(rng.integers(1, 4)):
            centre = brain_xyz[rng.integers(brain_xyz.shape[0])]
            radius = rng.uniform(*lesion_radius)
            mask |= ((xyz - centre) ** 2).sum(axis=1) <= radius**2
        mask &= brain
        if not mask.any():
            mask[np.flatnonzero(brain)[rng.integers(brain.sum())]] = True
        subject = f"sub-{i + 1:03d}"
        images[subject] = nib.Nifti1Image(mask.reshape(shape).astype(np.uint8), affine)
        age = float(np.round(rng.uniform(35, 90)))
        hit = mask[truth].mean() if truth.any() else 0.0
        score = 2.0 + effect_size * 4.0 * float(hit > 0) + 0.02 * (age - 65) + noise * rng.standard_normal()
        rows.append(
            {
                "participant_id": subject,
                "score": score,
                "nihss": int(np.clip(np.round(score * 2), 0, 42)),
                "mrs": int(np.clip(np.round(score / 1.5), 0, 6)),
                "age": age,
                "sex": "M" if rng.random() < 0.5 else "F",
            }
        )
    phenotype = pd.DataFrame(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedSubjectsWarning)
        cohort = load_cohort(images, phenotype)
    truth3d = truth.reshape(shape)
    cohort.metadata.update(
        {
            "dataset": "synthetic",
            "truth_mask": truth3d,
            "truth_img": nib.Nifti1Image(truth3d.astype(np.uint8), affine),
            "effect_size": effect_size,
            "effect_center": tuple(effect_center),
            "effect_radius": effect_radius,
        }
    )
    return cohort
