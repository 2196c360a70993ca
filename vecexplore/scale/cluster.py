"""Connecting to a Ray cluster and planning the CLIP actor pool.

``vecexplore build --engine ray`` runs the embed stage and the thumbnail scan as
Ray Data pipelines (:mod:`vecexplore.scale.embed`, :mod:`vecexplore.scale.scan`);
this module gets the cluster: an existing one (``--ray-address HOST:PORT``,
``ray://HOST:PORT``, ``auto``, or ``$RAY_ADDRESS``), else a new local instance
that listens on 127.0.0.1 only.

Ray is imported inside the functions (the ``ray`` extra): ``import vecexplore``
never pulls it in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vecexplore.errors import ConfigError

log = logging.getLogger(__name__)

#: Ray's switch (read when ``ray`` is imported) that makes a node's IP the loopback
#: address, as Ray does on macOS and Windows; set for a local instance only, so that
#: none of its servers listens beyond 127.0.0.1.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_CONNECT_TIMEOUT = 5.0
#: At most this many CPUs per CPU actor: torch's intra-op threads stop paying off past it.
_MAX_ACTOR_CPUS = 4


@dataclass(frozen=True)
class ActorPlan:
    """The CLIP actor pool of a cluster.

    Attributes:
        device: ``"cuda"`` (one actor per GPU) or ``"cpu"``.
        actors: pool size.
        cpus_per_actor: CPUs each actor reserves (its torch threads on CPU).
        gpus_per_actor: 1 on GPU, 0 on CPU.
    """

    device: str
    actors: int
    cpus_per_actor: int
    gpus_per_actor: int

    def __post_init__(self):
        if self.device not in ("cpu", "cuda") or self.actors < 1 or self.cpus_per_actor < 1:
            raise ValueError(f"ActorPlan: bad plan {self}")


def plan_actors(resources: dict[str, float], node_cpus: Sequence[float], device: str = "auto") -> ActorPlan:
    """One actor per GPU, or, without GPUs (or with ``device="cpu"``), CPU actors that
    take half of the cluster's CPUs and leave the other half to decoding.

    Args:
        resources: the cluster's total resources (``ray.cluster_resources()``).
        node_cpus: CPUs of each alive node (an actor lives on one node).
        device: ``auto``, ``cpu`` or ``cuda`` (the ``--device`` option).

    Raises:
        ConfigError: ``cuda`` without GPUs in the cluster, ``mps``, ``cuda:N`` or an unknown device.
    """
    name = device.strip().lower()
    gpus = int(resources.get("GPU", 0))
    if name.startswith("cuda:"):
        raise ConfigError(f"--device {device}: with --engine ray the actors take whole GPUs of the "
                          "cluster; use --device cuda (or auto)")
    if name == "mps":
        raise ConfigError("--device mps: Apple MPS is not a Ray resource; use --device auto, cpu or cuda with --engine ray")
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: expected auto, cpu or cuda with --engine ray")
    if name == "cuda" and gpus == 0:
        raise ConfigError("--device cuda: the Ray cluster has no GPU; use --device auto or cpu")
    if name != "cpu" and gpus > 0:
        return ActorPlan("cuda", actors=gpus, cpus_per_actor=1, gpus_per_actor=1)
    total = int(resources.get("CPU", 0))
    if total < 1:
        raise ConfigError("the Ray cluster has no CPU to run the model on")
    smallest = int(min(node_cpus)) if len(node_cpus) else total
    per_actor = max(1, min(_MAX_ACTOR_CPUS, smallest // 2))
    return ActorPlan("cpu", actors=max(1, (total // 2) // per_actor), cpus_per_actor=per_actor, gpus_per_actor=0)


def check_address(address: str) -> None:
    """Refuse, within seconds, an address where no Ray head answers.

    ``ray.init`` would retry an unreachable head for minutes; one TCP connect tells
    a typo or a stopped cluster apart at once. ``auto`` and ``local`` are Ray's own.

    Raises:
        ConfigError: a malformed address or nothing listening there.
    """
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by "
                          "default), ray://HOST:PORT (Ray Client, 10001) or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({reason}); start one with "
                          "`ray start --head` or check the address") from None


def _import_ray(local: bool):
    if local:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    from vecexplore.extras import require

    require("ray", what="--engine ray")
    import ray

    if local:
        with contextlib.suppress(Exception):  # imported before the variable was set: same effect
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = os.environ[LOOPBACK_ENV] not in ("0", "false", "False")
    return ray


def start_local(num_cpus: int | None = None, num_gpus: int | None = None):
    """Start a Ray instance on this machine, every server on 127.0.0.1, no dashboard.

    Returns the ``ray`` module; the caller shuts it down (``ray.shutdown()``).
    """
    ray = _import_ray(local=True)
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level=logging.WARNING)
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator:
    """A Ray connection for one build: yields the ``ray`` module.

    An existing connection of this process (a notebook, a test) is used as it is
    and left open. Otherwise ``address`` (or ``$RAY_ADDRESS``) is connected to, or
    a local instance is started; either is shut down at the end.

    Raises:
        ConfigError: the address is malformed, unreachable, or Ray refuses it.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address in (None, "local")
    if not local:
        check_address(address)
    ray = _import_ray(local)
    if ray.is_initialized():
        log.info("using this process's Ray connection")
        yield ray
        return
    try:
        if local:
            start_local()
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ImportError as exc:  # ray:// needs Ray Client's grpcio
        raise ConfigError(f"--ray-address {address}: Ray Client needs pip install 'ray[client]' ({exc})") from None
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = "a local Ray instance" if local else f"--ray-address {address}"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}: could not connect to Ray: {first}") from None
    try:
        resources = ray.cluster_resources()
        log.info("Ray cluster: %d CPUs, %d GPUs", int(resources.get("CPU", 0)), int(resources.get("GPU", 0)))
        yield ray
    finally:
        ray.shutdown()


def cluster_plan(device: str) -> ActorPlan:
    """:func:`plan_actors` for the connected cluster."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = [n.get("Resources", {}).get("CPU", 0) for n in nodes]
    return plan_actors(ray.cluster_resources(), [c for c in node_cpus if c > 0], device)


def quiet_data_context():
    """Ray Data's context for vecexplore's pipelines: its own progress bars off (ours
    are drawn from the results), order of results not kept (rows carry their index)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for attr in ("enable_operator_progress_bars", "print_on_execution_start"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": we said so
    return ctx


def path_dataset(paths, rows, block_rows: int):
    """A Ray Dataset of ``{"row": int64, "path": str}`` for ``rows`` of a path table, in blocks
    of ``block_rows`` (the unit of parallelism of the CPU tasks)."""
    import pandas as pd
    import ray.data

    frames = [
        pd.DataFrame({"row": rows[i : i + block_rows], "path": [paths[int(j)] for j in rows[i : i + block_rows]]})
        for i in range(0, len(rows), block_rows)
    ]
    return ray.data.from_pandas(frames)
