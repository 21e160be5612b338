"""Peak resident memory of this process plus its children (joblib/loky workers).

Shared by the benchmark scripts (they run as ``python benchmarks/<name>.py``, so this
folder is on ``sys.path``). psutil comes with the ``bench`` extra (and with distributed).
"""

import threading

import psutil


def own_peak_mib():
    """Exact peak resident memory (MiB) of this process alone, from the kernel.

    Linux's ``VmHWM`` (high-water mark of this address space since it was created) is
    preferred to ``getrusage().ru_maxrss``: the latter survives fork + exec, so a child
    started by a large parent reports the parent's size as its own peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere


def rss_mib(proc=None):
    """Resident memory (MiB) of ``proc`` (default: this process) plus all its children."""
    proc = proc or psutil.Process()
    total = proc.memory_info().rss
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:  # a worker may exit while listed
            pass
    return total / 2**20


class PeakMemory:
    """Context manager sampling :func:`rss_mib` every ``interval`` seconds.

    Attributes after the block: ``baseline`` (MiB at entry) and ``peak`` (MiB).
    """

    def __init__(self, interval=0.02):
        self.interval = interval
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.baseline = self.peak = 0.0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self._proc))
            self._stop.wait(self.interval)

    def __enter__(self):
        self.baseline = self.peak = rss_mib(self._proc)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self._proc))
