"""Oracle fan-out: each calculation runs as one Ray task with its own resource request.

An oracle that computes (a CHGNet relaxation, a DFT job) calls :func:`submit_task` once per
request in ``submit`` and keeps the handles; ``poll`` asks :func:`finished` (or
:meth:`TaskHandle.ready`), which never blocks; ``collect`` takes :meth:`TaskHandle.result` of the
finished ones. A cluster so evaluates a batch in parallel and the answers reach the ledger as
they finish, in any order. A task whose worker process dies is re-run (``max_retries``); an
exception raised by the function is not (it is the answer: a failed calculation).

``fn`` must be importable on the workers (a function of an installed package) or defined in the
caller's script (Ray pickles it by value).
"""

from __future__ import annotations

__all__ = ["TaskFailed", "TaskHandle", "finished", "submit_task"]

from collections.abc import Callable, Sequence
from typing import Any

from discovery.compute.scoring import ComputeError

_REMOTE: dict[Callable[..., Any], Any] = {}


class TaskFailed(ComputeError):
    """The task's function raised, or its worker was lost more often than ``max_retries``."""


class TaskHandle:
    """One submitted task; ``ref`` is its Ray ``ObjectRef``."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def ready(self) -> bool:
        """True once the task has finished (an answer or an error); never blocks."""
        import ray

        done, _ = ray.wait([self.ref], num_returns=1, timeout=0)
        return bool(done)

    def result(self, timeout_s: float | None = None) -> Any:
        """The function's return value; waits up to ``timeout_s`` seconds (None: no limit).

        Raises:
            TaskFailed: the function raised (the message carries its error) or the task was
                lost; ``TimeoutError`` (Ray's ``GetTimeoutError``) when the time ran out.
        """
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            return ray.get(self.ref, timeout=timeout_s)
        except GetTimeoutError:
            raise
        except RayError as exc:
            raise TaskFailed(str(exc)) from exc

    def cancel(self) -> None:
        """Stop the task (kills its worker process if it is running)."""
        import ray

        ray.cancel(self.ref, force=True)


def submit_task(
    fn: Callable[..., Any],
    /,
    *args: Any,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_retries: int = 2,
    address: str | None = None,
    **kwargs: Any,
) -> TaskHandle:
    """Run ``fn(*args, **kwargs)`` as a Ray task that needs ``num_cpus`` CPUs and ``num_gpus``
    GPUs (fractions allowed); returns at once.

    Ray is connected first when this process is not connected yet (``address`` as in the
    campaign's ``compute.address``: None starts a local instance, ``"auto"`` or ``host:port``
    joins a cluster). The task is re-run up to ``max_retries`` times if its worker dies.
    """
    import ray

    from discovery.compute.cluster import connect

    connect(address)
    remote = _REMOTE.get(fn)
    if remote is None:
        remote = _REMOTE[fn] = ray.remote(fn)
    ref = remote.options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries).remote(
        *args, **kwargs
    )
    return TaskHandle(ref)


def finished(handles: Sequence[TaskHandle]) -> list[int]:
    """Positions of the handles whose task has finished, in one non-blocking check."""
    import ray

    if not handles:
        return []
    refs = [h.ref for h in handles]
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    ready = set(done)
    return [i for i, r in enumerate(refs) if r in ready]
