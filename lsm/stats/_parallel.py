"""One wrapper around joblib, with a serial fast path.

Every parallel call site of the engine goes through :func:`parallel_map`, so the
backend can be swapped from the outside (``joblib.parallel_config(backend="dask")``
or ``backend="threading"``) without touching the engine. Workers only ever receive
pre-drawn permutations and return small arrays, and the caller reduces them in a
fixed order, so results do not depend on ``n_jobs`` nor on the backend.
"""

import logging

import joblib

from .._validation import check_n_jobs

__all__ = ["parallel_map", "effective_n_jobs"]

logger = logging.getLogger("lsm")


def effective_n_jobs(n_jobs):
    """Number of workers joblib would use for ``n_jobs`` (honours ``parallel_config``)."""
    return joblib.effective_n_jobs(check_n_jobs(n_jobs))


def _backend_forced():
    """True when the caller set a backend with ``joblib.parallel_config``."""
    backend, _ = joblib.parallel.get_active_backend()
    return not isinstance(backend, joblib._parallel_backends.LokyBackend)


def parallel_map(func, tasks, *, n_jobs=1, verbose=0, desc=None, leave=False):
    """Apply ``func(*task)`` to each task and return the results in task order.

    Parameters
    ----------
    func : callable
        Module-level function (picklable for process backends).
    tasks : list of tuple
        Positional arguments of each call.
    n_jobs : int
        Number of workers; 1 runs serially in this process (unless a backend was
        forced with ``joblib.parallel_config``), -1 uses every core.
    verbose : int
        > 0 shows a tqdm progress bar over tasks.
    desc : str or None
        Label of the progress bar.
    leave : bool
        Keep the finished progress bar on screen (default: erase it).

    Returns
    -------
    results : list
        ``[func(*task) for task in tasks]``, always in the order of ``tasks``.
    """
    tasks = list(tasks)
    n_jobs = check_n_jobs(n_jobs)
    n_workers = effective_n_jobs(n_jobs)
    if n_workers == 1 and not _backend_forced() or len(tasks) <= 1:
        iterator = tasks
        if verbose:
            from tqdm.auto import tqdm

            iterator = tqdm(tasks, desc=desc, leave=leave)
        return [func(*task) for task in iterator]
    logger.debug("running %d tasks on %d workers", len(tasks), n_workers)
    backend, _ = joblib.parallel.get_active_backend()
    calls = (joblib.delayed(func)(*task) for task in tasks)
    if not (verbose and getattr(backend, "supports_return_generator", False)):
        # Not every backend (e.g. "multiprocessing") can stream results.
        return list(joblib.Parallel(n_jobs=n_jobs)(calls))
    from tqdm.auto import tqdm

    results = joblib.Parallel(n_jobs=n_jobs, return_as="generator")(calls)
    return list(tqdm(results, total=len(tasks), desc=desc, leave=leave))
