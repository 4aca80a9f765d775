"""Executors: where independent jobs (segment encodes, RD points) run.

    LocalExecutor  in this process, one job after the other, in order (the default; what `nvc` always did)
    RayExecutor    as Ray tasks on a local Ray or a cluster (`--executor ray`, `--ray-address` / RAY_ADDRESS)

Both have `map(fn, items, **local_kwargs)`, yielding `(position, fn(item))` as jobs finish (local: in order), and
`device(name)`, the torch device jobs should use. A job function must be importable by name (a module-level
function) and its items plain data: Ray sends them through its object store. Ray is an optional dependency
(`pip install 'nvc-pipe[ray]'`); it is imported only when asked for.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import ConfigError, NvcError

if TYPE_CHECKING:
    import torch

EXECUTORS = ("local", "ray")
INSTALL_HINT = "--executor ray needs Ray: pip install 'nvc-pipe[ray]'"
MAX_RETRIES = 3  # a task whose worker process dies is run again this many times


def resolve_device(device: str) -> "torch.device":
    """The torch device for `--device` on this machine (ConfigError when CUDA is asked for and absent)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available (use --device cpu or auto)")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")


class LocalExecutor:
    """Runs jobs in this process, in order; `local_kwargs` (e.g. a progress tick) reach the job function."""

    name = "local"

    def device(self, device: str) -> "torch.device":
        return resolve_device(device)

    def map(self, fn: Callable, items: Iterable, **local_kwargs) -> Iterator[tuple[int, Any]]:
        for position, item in enumerate(items):
            yield position, fn(item, **local_kwargs)

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs each job as a Ray task (1 CPU, or 1 GPU when the device is CUDA), retried when its worker dies.

    Connects to `address` (or RAY_ADDRESS); with neither it starts a local Ray on this machine, stopped again by
    `close()`. A Ray this process already initialised (a test's, an application's) is used as it is. At most
    as many tasks are in flight as the cluster has slots (+1), so frames are read as they are needed; closing the
    iterator early (an error, Ctrl-C) cancels the tasks still running. `NVC_*` environment variables of this
    process are passed to the workers (they select weights, caches and test fault hooks).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.ray = import_ray()
        self._owned = False
        if not self.ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or "local"
            check_reachable(address)
            ray_log = logging.getLogger("ray")
            level = ray_log.level
            ray_log.setLevel(logging.ERROR)  # its start-up notes would break the CLI's one-line output
            try:
                self.ray.init(address=address, num_cpus=num_cpus if address == "local" else None,
                              include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"cannot connect to Ray at {address}: {str(exc).splitlines()[0]}") from None
            finally:
                ray_log.setLevel(level)
            self._owned = True
        self.gpu = False

    def _resources(self) -> dict:
        return self.ray.cluster_resources()

    def device(self, device: str) -> "torch.device":
        """The device of the workers: `auto` is CUDA when the cluster has GPUs; a CUDA index is Ray's to choose."""
        import torch

        gpus = self._resources().get("GPU", 0)
        if device == "auto":
            device = "cuda" if gpus else "cpu"
        if device.startswith("cuda"):
            if not gpus:
                raise ConfigError(f"--device {device}: the Ray cluster has no GPU (use --device cpu or auto)")
            self.gpu = True
            return torch.device("cuda")  # each task sees the one GPU Ray gave it (CUDA_VISIBLE_DEVICES)
        if device != "cpu":
            raise ConfigError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")
        return torch.device("cpu")

    def slots(self) -> int:
        res = self._resources()
        return max(1, int(res.get("GPU", 0) if self.gpu else res.get("CPU", 1)))

    def map(self, fn: Callable, items: Iterable, **_local_kwargs) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        env = {k: v for k, v in os.environ.items() if k.startswith("NVC_")}
        remote = ray.remote(fn).options(num_cpus=0 if self.gpu else 1, num_gpus=1 if self.gpu else 0,
                                        max_retries=MAX_RETRIES, retry_exceptions=False,
                                        **({"runtime_env": {"env_vars": env}} if env else {}))
        window = self.slots() + 1
        pending: dict = {}
        todo = enumerate(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    nxt = next(todo, None)
                    if nxt is None:
                        exhausted = True
                        break
                    position, item = nxt
                    pending[remote.remote(ray.put(item))] = position
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    position = pending.pop(ref)
                    yield position, self._get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _get(self, ref):
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, NvcError):
                raise cause from None
            raise RuntimeError(f"a Ray task failed: {cause!r}") from None
        except self.ray.exceptions.WorkerCrashedError:
            raise NvcError(f"a Ray worker died {MAX_RETRIES + 1} times running the same job") from None

    def close(self) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A `host:port` nobody listens on makes `ray.init` retry for minutes: refuse it in seconds instead."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "local", "auto", ray:// client addresses: Ray's own handling
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({exc.strerror or 'timed out'}; "
                          "start one with `ray start --head`, or check --ray-address / RAY_ADDRESS)") from None


def import_ray():
    """The `ray` module, or ConfigError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def check_available(name: str) -> None:
    """Fail fast (before any work) on an unknown executor or a missing Ray."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r} ({', '.join(EXECUTORS)})")
    if name == "ray":
        import_ray()


def make_executor(name: str = "local", address: str | None = None):
    check_available(name)
    return RayExecutor(address) if name == "ray" else LocalExecutor()
