"""Several processes as one job: `jax.distributed`, barriers with timeouts, coordinated preemption.

    distributed.initialize(config.mesh)    # before anything touches jax.devices()
    with distributed.Preemption() as stop:  # SIGTERM -> every process stops at the same step
      ... if stop.reached(step): save and exit 0

`config.mesh.coordinator_address` ("host:port"), `num_processes` and `process_id` start
`jax.distributed` explicitly (several OS processes on one machine, as the tests do, or any
cluster); left at their defaults ("", 0, -1) on a Cloud TPU slice or SLURM job with several
hosts, JAX detects them. CPU processes exchange collectives over gloo. A process that dies stops
sending heartbeats; after `config.mesh.heartbeat_timeout_s` the coordination service terminates
every other process with an error naming the lost task, so no job hangs on a dead peer.
"""

import os
import signal
import sys

import jax
import numpy as np
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from swahili100 import config_lib

_MULTIHOST_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS")


def _cluster_detected() -> bool:
  env = os.environ
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
  return (any(env.get(k) for k in _MULTIHOST_ENV) or len(hosts) > 1
          or int(env.get("SLURM_NTASKS", "1") or 1) > 1)


def initialize(mesh_cfg) -> bool:
  """Starts `jax.distributed` when the config or the environment asks for several processes;
  returns whether it did. Must run before the first `jax.devices()`."""
  address = config_lib.get(mesh_cfg, "coordinator_address", "") or None
  num = int(config_lib.get(mesh_cfg, "num_processes", 0) or 0)
  pid = int(config_lib.get(mesh_cfg, "process_id", -1))
  explicit = address is not None or num > 1
  asked = bool(config_lib.get(mesh_cfg, "distributed", False))
  if not explicit and not asked and not _cluster_detected():
    return False
  if explicit and (address is None or num < 1 or not 0 <= pid < num):
    raise config_lib.ConfigError(
        f"config.mesh.coordinator_address={address or ''!r}, num_processes={num}, "
        f"process_id={pid}: give all three (e.g. 127.0.0.1:8476, 2, 0..1), or none of them "
        "on a Cloud TPU slice, where JAX detects them")
  if jax.distributed.is_initialized():
    return True
  # CPU processes (tests, CPU clusters) need a collectives implementation; TPU/GPU ignore it.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = dict(
      initialization_timeout=int(config_lib.get(mesh_cfg, "init_timeout_s", 300)),
      heartbeat_timeout_seconds=int(config_lib.get(mesh_cfg, "heartbeat_timeout_s", 100)))
  if explicit:
    kwargs.update(coordinator_address=address, num_processes=num, process_id=pid)
  jax.distributed.initialize(**kwargs)
  return True


def is_main() -> bool:
  return jax.process_index() == 0


def barrier(name: str, timeout_s: float) -> None:
  """All processes wait here; raises after `timeout_s` (naming the barrier) instead of hanging."""
  if jax.process_count() == 1:
    return
  try:
    jax_distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))
  except Exception as e:  # noqa: BLE001 (XlaRuntimeError carries the coordination status)
    raise RuntimeError(f"process {jax.process_index()}: barrier {name!r} timed out after "
                       f"{timeout_s:.0f} s ({e}); another process is stuck or gone") from e


class Preemption:
  """Turns SIGTERM (the Cloud TPU maintenance or spot notice) into one agreed stop step.

  One process: a Python handler sets a flag, restored on exit. Several: JAX's preemption sync
  manager catches SIGTERM on whichever process gets it and every process's `reached(step)`
  returns True at the same step, so all save one consistent checkpoint. `reached` must be called
  by every process at every step.
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    self._multi = jax.process_count() > 1

  def __enter__(self):
    if not self._multi:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    if not self._multi:
      return self.requested
    if multihost_utils.reached_preemption_sync_point(step):
      self.requested = True
    return self.requested


def _identity(x):
  return x


def allgather(x) -> np.ndarray:
  """Every process's `x` (same shape and dtype everywhere), stacked in process order, on every
  process (a collective: all processes call it).

  multihost_utils.process_allgather reads the first local device's copy and returns while the
  other local devices' gathers may still be connecting (gloo on CPU); a process that then exits
  leaves its peer's CPU client joining a thread that waits on that connection forever (the
  two-process preflight hung so, ~1 run in 10 under load). Waiting for every copy ends that."""
  x_1x = np.expand_dims(np.asarray(x), 0)
  if jax.process_count() == 1:
    return x_1x
  devices = np.array(jax.devices()).reshape(jax.process_count(), jax.local_device_count())
  mesh = Mesh(devices, ("processes", "local"))
  x_px = jax.make_array_from_process_local_data(NamedSharding(mesh, P("processes")), x_1x)
  gathered = jax.jit(_identity, out_shardings=NamedSharding(mesh, P()))(x_px)
  return np.asarray(jax.block_until_ready(gathered).addressable_data(0))


def processes_with(flag: bool) -> list[int]:
  """The indices of the processes whose `flag` is true, on every process (a collective: all
  processes call it)."""
  return [int(i) for i in np.flatnonzero(allgather(np.int32(flag)))]


def warn(msg: str) -> None:
  """A warning printed once per job (by the main process)."""
  if is_main():
    print(f"warning: {msg}", file=sys.stderr, flush=True)
