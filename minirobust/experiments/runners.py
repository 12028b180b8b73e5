"""Where a sweep's runs execute: a local process pool (the default) or a Dask cluster.

Both have one method, ``map(fn, tasks)``: ``tasks`` is {key: argument}; it yields
``(key, fn(argument))`` as runs finish, each key once. A runner only schedules: each run is a
pure function of its configuration that writes its own folder and resumes from its own
checkpoint, so a run that dies with its worker is simply started again and continues where its
last checkpoint left it.

Each worker gets one BLAS thread and one Numba thread (the machine's cores are shared by the
workers, not fought over by their thread pools), and the driver's backend (``--backend`` /
``MINIROBUST_BACKEND``): with ``gpu`` every worker trains on the GPU, all of them sharing the card.
Workers of an existing Dask cluster (``--scheduler``) keep their own environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from ..backend import get_backend
from ..errors import MinirobustError

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def worker_environment() -> dict:
    """The environment a worker process starts with: one thread per pool, the driver's backend."""
    return {**ONE_THREAD, "MINIROBUST_BACKEND": get_backend()}


class SweepError(MinirobustError, RuntimeError):
    """A sweep cannot finish (a run keeps failing, or the runner cannot start)."""


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables for the processes started inside the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _exit_with_parent():
    """Worker initializer: stop when the driver dies (a killed driver must not leave workers
    training into run folders that its next invocation will use)."""
    parent = os.getppid()

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            threading.Event().wait(0.5)

    threading.Thread(target=watch, daemon=True).start()


class LocalRunner:
    """A pool of ``workers`` processes on this machine (spawned: no state shared with the driver).

    A worker killed mid-run breaks the pool; the runs not yet reported are then started again in
    a new pool (up to ``max_restarts`` times), resuming from their checkpoints.
    """

    name = "local"

    def __init__(self, workers: int = 2, max_restarts: int = 3):
        if int(workers) < 1:
            raise SweepError(f"workers must be >= 1, got {workers}")
        self.workers, self.max_restarts = int(workers), int(max_restarts)
        self.restarts = 0  # how many times a broken pool was started again

    def map(self, fn, tasks: dict):
        pending = dict(tasks)
        context = multiprocessing.get_context("spawn")
        while pending:
            workers = min(self.workers, len(pending))
            with _environment(worker_environment()), ProcessPoolExecutor(workers, mp_context=context,
                                                                         initializer=_exit_with_parent) as pool:
                futures = {pool.submit(fn, arg): key for key, arg in pending.items()}
                try:
                    for future in as_completed(futures):
                        key = futures[future]
                        result = future.result()
                        del pending[key]
                        yield key, result
                except BrokenProcessPool:
                    self.restarts += 1
                    if self.restarts > self.max_restarts:
                        raise SweepError(f"the worker pool broke {self.restarts} times (workers killed?); "
                                         f"{len(pending)} runs unfinished") from None


class DaskRunner:
    """Runs on a Dask cluster: a ``LocalCluster`` of ``workers`` processes on loopback by
    default, the cluster at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``) when given, or an
    existing ``client``. Dask reschedules the runs of a worker that dies (``retries`` more)."""

    name = "dask"

    def __init__(self, workers: int = 2, scheduler: str | None = None, client=None, retries: int = 3):
        self.workers, self.scheduler, self.client, self.retries = int(workers), scheduler, client, int(retries)

    def _connect(self):
        try:
            from dask.distributed import Client, LocalCluster  # noqa: PLC0415
        except ImportError as exc:
            raise SweepError("the dask runner needs dask.distributed: pip install 'minirobust[dask]'") from exc
        if self.client is not None:
            return self.client, None
        if self.scheduler is not None:
            try:
                return Client(self.scheduler, timeout=CONNECT_TIMEOUT_S), None
            except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, or not an address
                raise SweepError(f"--scheduler {self.scheduler}: cannot connect ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no reason given'})") from None
        failure = None
        for _ in range(2):  # a worker killed while the cluster starts fails the start: try once more
            cluster = None
            try:
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None, env=worker_environment())
                return Client(cluster), cluster
            except (RuntimeError, OSError, TimeoutError) as exc:
                failure = exc
                if cluster is not None:
                    cluster.close()
        raise SweepError(f"the local Dask cluster did not start twice ({type(failure).__name__}: "
                         f"{str(failure).splitlines()[0] if str(failure) else 'no reason given'})")

    def map(self, fn, tasks: dict):
        from dask.distributed import as_completed as dask_completed  # noqa: PLC0415

        client, cluster = self._connect()
        try:
            futures = {client.submit(fn, arg, key=f"minirobust-run-{key}", pure=False, retries=self.retries): key
                       for key, arg in tasks.items()}
            for future in dask_completed(list(futures)):
                yield futures[future], future.result()
        finally:
            if client is not self.client:
                client.close()
            if cluster is not None:
                cluster.close()


CONNECT_TIMEOUT_S = 5  # a scheduler that does not answer in this time is reported, not waited for


def check_scheduler_address(address):
    """``tcp://HOST:PORT`` (or tls://, ws://, wss://, inproc://, ucx://), or a one-line error: an empty
    string once started a local cluster without a word, 'garbage' raised a ValueError traceback."""
    if address is None:
        return
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "tls", "ws", "wss", "inproc", "ucx") or not rest.strip():
        raise SweepError(f"--scheduler {address!r}: expected an address such as tcp://10.0.0.5:8786")


RUNNERS = {"local": LocalRunner, "dask": DaskRunner}


def make_runner(name: str = "local", workers: int = 2, scheduler: str | None = None):
    if name not in RUNNERS:
        raise SweepError(f"unknown runner {name!r}: choose local or dask")
    if name == "local":
        if scheduler is not None:
            raise SweepError("--scheduler is for the dask runner")
        return LocalRunner(workers)
    check_scheduler_address(scheduler)
    return DaskRunner(workers, scheduler)
