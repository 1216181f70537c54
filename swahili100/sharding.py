"""Device mesh, parameter and batch shardings: three axes ('data', 'fsdp', 'tensor').

    mesh = make_mesh(config.mesh)                       # sizes from config.mesh.{data,fsdp,tensor}
    check_batch(config.data.batch_size, mesh)
    shardings = param_shardings(params, mesh)           # params = nnx.split(model, nnx.Param)[1]
    params = jax.device_put(params, shardings)
    batch = shard_batch(local_batch_dict, mesh)         # rows split over ('data', 'fsdp')

Axes: 'data' replicates parameters and splits the batch; 'fsdp' splits the batch AND shards every
parameter (hence optimizer moments, which share the parameter tree) on its d_model dimension
(ZeRO-3 style; XLA gathers before use); 'tensor' splits attention heads and the MLP hidden
dimension (Megatron style). The mesh uses Auto axis types, so jit/GSPMD propagate everything
else (explicit axis types break `nnx.Embed`'s gather in this JAX version).

Parameter rules, matched on the last two names of a parameter path (kernels are [in, out]):

    embed.embedding          [V, D]      P('fsdp', None)
    *.q_proj/k_proj/v_proj   [D, N*H]    P('fsdp', 'tensor')
    *.o_proj.kernel          [N*H, D]    P('tensor', 'fsdp')
    *.gate_proj/up_proj      [D, F]      P('fsdp', 'tensor')
    *.down_proj.kernel       [F, D]      P('tensor', 'fsdp')
    lm_head.kernel           [D, V]      P('fsdp', 'tensor')
    *.scale (RMSNorm)        [D]         P()  replicated
    anything else                        P()  replicated

The embedding shards only its vocabulary dimension: with ('tensor', 'fsdp') or (None, 'fsdp')
GSPMD fully rematerializes the gather's gradient (an "Involuntary full rematerialization"
warning), and ('fsdp', 'tensor') gave different losses after a few AdamW steps on a 2x2x2 mesh.

A dimension whose size does not divide by its mesh axis size falls back to replication on that
dimension (e.g. k_proj with K*H = 64 on tensor = 3), so every rule is always valid.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from swahili100 import config_lib

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

RULES = {
    ("embed", "embedding"): ("fsdp", None),
    ("q_proj", "kernel"): ("fsdp", "tensor"),
    ("k_proj", "kernel"): ("fsdp", "tensor"),
    ("v_proj", "kernel"): ("fsdp", "tensor"),
    ("o_proj", "kernel"): ("tensor", "fsdp"),
    ("gate_proj", "kernel"): ("fsdp", "tensor"),
    ("up_proj", "kernel"): ("fsdp", "tensor"),
    ("down_proj", "kernel"): ("tensor", "fsdp"),
    ("lm_head", "kernel"): ("fsdp", "tensor"),
}


def mesh_shape(mesh_cfg: Any, device_count: int | None = None) -> tuple[int, int, int]:
  """Resolves config.mesh.{data,fsdp,tensor} (one may be -1) against the device count."""
  n = jax.device_count() if device_count is None else device_count
  sizes = [int(config_lib.get(mesh_cfg, a, 1)) for a in AXES]
  desc = ", ".join(f"config.mesh.{a}={s}" for a, s in zip(AXES, sizes))
  free = [i for i, s in enumerate(sizes) if s == -1]
  if len(free) > 1:
    raise config_lib.ConfigError(f"{desc}: at most one mesh axis may be -1 (take the remaining "
                                 "devices)")
  if any(s == 0 or s < -1 for s in sizes):
    raise config_lib.ConfigError(f"{desc}: mesh axis sizes must be positive or -1")
  fixed = int(np.prod([s for s in sizes if s != -1]))
  if free:
    if n % fixed:
      raise config_lib.ConfigError(f"{desc}: the fixed axes multiply to {fixed}, which does not "
                                   f"divide the {n} devices of jax.device_count()")
    sizes[free[0]] = n // fixed
  if int(np.prod(sizes)) != n:
    raise config_lib.ConfigError(f"{desc}: the mesh has {int(np.prod(sizes))} devices but "
                                 f"jax.device_count() is {n}; make data*fsdp*tensor equal {n} "
                                 f"(or set one axis to -1)")
  return tuple(sizes)


def make_mesh(mesh_cfg: Any, devices=None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh with Auto axis types from config.mesh."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)
  return jax.make_mesh(shape, AXES, axis_types=auto, devices=devices)


def batch_size_divisor(mesh: Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def check_batch(batch_size: int, mesh: Mesh) -> None:
  """Raises when the global batch does not split evenly over data*fsdp."""
  d = batch_size_divisor(mesh)
  if batch_size % d:
    raise config_lib.ConfigError(f"config.data.batch_size={batch_size} must divide by "
                                 f"config.mesh.data*config.mesh.fsdp = {mesh.shape['data']}*"
                                 f"{mesh.shape['fsdp']} = {d} (the rows are split over those axes)")


def _path_names(path) -> tuple:
  names = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        names.append(getattr(k, attr))
        break
  if names and names[-1] == "value":  # nnx.Variable's pytree child
    names = names[:-1]
  return tuple(names)


def spec_for(path_names: tuple, shape: tuple, mesh: Mesh) -> P:
  """PartitionSpec of one parameter by the rule table, replicating non-dividing dims."""
  rule = RULES.get(tuple(str(n) for n in path_names[-2:]))
  if rule is None or len(rule) != len(shape):
    return P()
  axes = [a if a is not None and dim % mesh.shape[a] == 0 else None
          for a, dim in zip(rule, shape)]
  return P(*axes)


def param_specs(params: Any, mesh: Mesh) -> Any:
  """PartitionSpecs in the structure of `params` (an nnx.State or any pytree of arrays)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: spec_for(_path_names(path), np.shape(x), mesh), params)


def param_shardings(params: Any, mesh: Mesh) -> Any:
  """NamedShardings in the structure of `params`; use for jax.device_put and jit shardings."""
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), param_specs(params, mesh),
                      is_leaf=lambda x: isinstance(x, P))


def abstract(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings`: what restores and compiles target."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """[B, T] arrays: rows over ('data', 'fsdp'), sequence replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, None))


def _batch_spec(x) -> P:
  return P(BATCH_AXES, *([None] * (np.ndim(x) - 1)))


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Global arrays from this process's rows (the global batch = rows of all processes); any
  pytree of [B_local, ...] arrays (a DPO batch nests two)."""
  def place(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(NamedSharding(mesh, _batch_spec(x)), x,
                                                  global_shape)
  return jax.tree.map(place, local_batch)


def shard_global_batch(batch: Any, mesh: Mesh) -> Any:
  """Global arrays from a batch every process holds whole (evaluation data): each process
  places only the rows its devices own."""
  def place(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, _batch_spec(x)),
                                        lambda index: x[index])
  return jax.tree.map(place, batch)
