"""Where independent fits run: the one place that runs many of them.

Tasks run in this process (``workers=0``, for debugging), on a local Dask cluster of
processes (the default), on a running Dask scheduler (``cluster="tcp://HOST:8786"``), or
on SLURM through dask-jobqueue (``cluster="slurm"``). Every task runs with one torch
thread, so a task's result does not depend on where it ran. Dask, not a scheduler of our
own: it is pure Python, well kept, and runs on a laptop and on a university cluster
alike.

A task's own mistake (a :class:`~spicedsl.errors.SpiceError`) is its outcome, not a
crash: the other tasks go on. A task whose worker dies is run again on another worker
(the scheduler allows ``distributed.scheduler.allowed-failures`` deaths, 3 by default),
and one that raises another exception is retried ``RETRIES`` times.

>>> with open_executor(workers=0) as executor:
...     outcomes = executor.run([Task("square", pow, (3, 2))], progress=False)
...     [(o.task.key, o.result, o.error) for o in outcomes]
[('square', 9, None)]
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from spicedsl.errors import SpiceError, UsageError
from spicedsl.runtime.progress import Progress

#: Retries of a task that raised an exception other than a SpiceError.
RETRIES = 2
#: Seconds between redraws of the progress line while tasks run.
REFRESH_S = 1.0
#: Seconds to wait for a running scheduler to answer.
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Task:
    """``function(*arguments)``, named ``key`` (unique among the tasks of a run).

    ``function`` must be importable by name (a module-level function of an installed
    package): remote workers receive its name, not its code. ``arguments`` may hold
    values from :meth:`Executor.shared`.
    """

    key: str
    function: Callable[..., object]
    arguments: tuple


@dataclass(frozen=True)
class Outcome:
    """What a task gave: its ``result``, or an ``error`` message; how many seconds it
    ran, and on which worker (``host:pid``)."""

    task: Task
    result: object | None
    error: str | None
    seconds: float
    worker: str


def run_task(function: Callable[..., object], arguments: tuple):
    """Run one task where it landed, with one torch thread; its result or its mistake's
    message, its duration, and where it ran."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        result, error = function(*arguments), None
    except SpiceError as mistake:
        result, error = None, mistake.render()
    return result, error, time.perf_counter() - start, f"{socket.gethostname()}:{os.getpid()}"


class Executor:
    """Runs tasks in this process, one after the other."""

    def shared(self, value: object) -> object:
        """``value``, made ready to be an argument of many tasks (sent once)."""
        return value

    def run(self, tasks: Sequence[Task], progress: bool = True) -> Iterator[Outcome]:
        """Run ``tasks``; yield each one's :class:`Outcome` as it finishes."""
        bar = _TaskProgress(len(tasks), progress)
        for task in tasks:
            bar.show(running=1)
            outcome = Outcome(task, *run_task(task.function, task.arguments))
            bar.finished(outcome.error is not None)
            yield outcome
        bar.close()


class DaskExecutor(Executor):
    """Runs tasks on a Dask cluster through ``client`` (a ``distributed.Client``)."""

    def __init__(self, client) -> None:
        self.client = client

    def shared(self, value: object) -> object:
        """A future of ``value``: workers fetch it once each, and the scheduler makes it
        again if the worker that holds it dies (scattered data would be lost)."""
        return self.client.submit(_identity, value, pure=False)

    def run(self, tasks: Sequence[Task], progress: bool = True) -> Iterator[Outcome]:
        from distributed import TimeoutError as WaitTimeout
        from distributed import wait

        futures = {
            self.client.submit(
                run_task, task.function, task.arguments, key=task.key, retries=RETRIES
            ): task
            for task in tasks
        }
        bar = _TaskProgress(len(tasks), progress)
        pending = set(futures)
        try:
            while pending:
                bar.show(running=min(len(pending), self._threads()))
                try:
                    done, pending = wait(pending, timeout=REFRESH_S, return_when="FIRST_COMPLETED")
                except WaitTimeout:
                    continue
                for future in done:
                    outcome = self._outcome(futures[future], future)
                    bar.finished(outcome.error is not None)
                    yield outcome
        finally:
            self.client.cancel(list(pending))
        bar.close()

    def _threads(self) -> int:
        return sum(self.client.nthreads().values())

    @staticmethod
    def _outcome(task: Task, future) -> Outcome:
        if future.status == "finished":
            return Outcome(task, *future.result())
        if future.status == "error":
            error = future.exception()
            return Outcome(task, None, f"{type(error).__name__}: {error}", 0.0, "")
        return Outcome(task, None, f"the task was {future.status}", 0.0, "")


def _identity(value: object) -> object:
    return value


class _TaskProgress:
    """Finished, running and failed tasks and the time left, on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = Progress(total, "tasks", enabled and total > 0, unit="tasks", every_update=True)
        self.done = self.failed = 0
        self.running = 0

    def show(self, running: int) -> None:
        if running != self.running or self.bar.enabled:
            self.running = running
            self.bar.update(self.done, running=running, failed=self.failed)

    def finished(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        self.running = min(self.running, self.bar.total - self.done)
        self.bar.update(self.done, running=self.running, failed=self.failed)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def open_executor(workers: int | None = None, cluster: str | None = None) -> Iterator[Executor]:
    """The executor that ``workers`` and ``cluster`` ask for; closed on leaving.

    Parameters
    ----------
    workers : int, optional
        0 runs the tasks in this process. Otherwise the number of worker processes: of a
        local cluster (by default one per core), or of SLURM workers to start (by
        default those of one job). A running scheduler has the workers it has.
    cluster : str, optional
        ``None`` for a local cluster, ``"tcp://HOST:PORT"`` (or any Dask address) for a
        running scheduler, or ``"slurm"`` for dask-jobqueue's ``SLURMCluster`` with the
        settings of Dask's configuration (``jobqueue.slurm``: ``cores``, ``memory``,
        ``walltime``, ``queue``, ``account``, ...).
    """
    if workers is not None and workers < 0:
        raise UsageError("--workers must be 0 (this process) or more")
    if workers == 0:
        if cluster is not None:
            raise UsageError("--workers 0 runs in this process; leave out --cluster")
        yield Executor()
        return
    if cluster is not None and cluster != "slurm" and workers is not None:
        raise UsageError("a running scheduler has its own workers; leave out --workers")
    with _quiet_dask():
        if cluster is None:
            made = _local_cluster(workers)
        elif cluster == "slurm":
            made = _slurm_cluster(workers)
        else:
            made = None
        try:
            with _client(made if made is not None else cluster) as client:
                yield DaskExecutor(client)
        finally:
            if made is not None:
                made.close()


@contextmanager
def _client(cluster):
    """A ``distributed.Client`` of a cluster object or a scheduler address; closed on
    leaving."""
    from distributed import Client

    try:
        client = Client(cluster, timeout=f"{CONNECT_TIMEOUT_S}s")
    except ValueError as error:
        raise UsageError(
            f"--cluster {cluster}: {error}\n"
            "hint: give a scheduler address such as tcp://HOST:8786, or 'slurm'"
        ) from None
    except OSError as error:
        raise SpiceError(f"cannot reach the Dask scheduler: {error}") from None
    try:
        yield client
    finally:
        client.close()


def _local_cluster(workers: int | None):
    """A cluster of ``workers`` processes (one per core by default), one thread each."""
    from dask.system import CPU_COUNT
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers or CPU_COUNT,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        preload=[__name__],  # runs dask_setup in each worker process
    )


def dask_setup(worker) -> None:
    """Dask's hook, run as each local worker process starts: the workers ignore Ctrl-C.

    Ctrl-C in a terminal reaches every process of the command, and stopping the workers
    is the client's job (it closes the cluster); they would print tracebacks instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _slurm_cluster(workers: int | None):
    """A dask-jobqueue ``SLURMCluster`` from Dask's configuration, with one worker
    process per core, scaled to ``workers`` workers (one job's by default)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UsageError(
            "--cluster slurm needs dask-jobqueue\nhint: pip install 'spicedsl[slurm]'"
        ) from None
    import dask.config

    cores = dask.config.get("jobqueue.slurm.cores", None)
    if cores is None or dask.config.get("jobqueue.slurm.memory", None) is None:
        raise UsageError(
            "--cluster slurm needs the size of a job in Dask's configuration: "
            "jobqueue.slurm.cores and jobqueue.slurm.memory\nhint: write them to "
            "~/.config/dask/jobqueue.yaml (see README, 'Model comparison')"
        )
    processes = dask.config.get("jobqueue.slurm.processes", None) or cores
    cluster = SLURMCluster(processes=processes)
    cluster.scale(n=workers or processes)
    return cluster


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's own log messages (workers lost, connections closed) only when they are
    errors: the progress line and the results tell the user what happened."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
