"""Ahead-of-time compile of the real train and eval steps for a TPU topology, on any machine.

    swahili100 aot --config configs/swahili_base.py --topology v5e-8 [--tokens-per-s 4e5] \
        [--fast] [--config.model.remat=dots ...]

The steps are built by `engine.build`, exactly as `swahili100 train` builds them, on a mesh of
compile-only TPU devices from `jax.experimental.topologies` (libtpu from `pip install
'swahili100[tpu]'`; no TPU needed), under `jax.set_mesh`, so `attention=auto` picks splash and
Mosaic lowers for real. Prints one JSON line: topology, device kind, mesh, bytes per device
(arguments, outputs, temporaries, total) against the chip's HBM, `fits`, FLOPs per step from the
compiled cost analysis next to the 6P + 12·L·N·H·T formula (PaLM's 6N + 12LHQT), and the MFU a
stated tokens/s needs.
Exit 0 when the step fits, 1 when it does not (the message says by how much and what to try).
"""

import argparse
import dataclasses
import functools
import json
import math
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import topologies

from swahili100 import config_lib, engine, flops, lm, sharding


@dataclasses.dataclass(frozen=True)
class Topology:
  """A slice as libtpu names it (see MaxText's accelerator_to_spec_map.py for the same table)."""
  name: str                         # e.g. "v5e:2x4"
  chip_config: str                  # "megacore" (v4, v5p: one device per chip) or "default"
  chips_per_host: tuple[int, int, int]


TOPOLOGIES = {
    "v4-8": Topology("v4:2x2x1", "megacore", (2, 2, 1)),
    "v4-16": Topology("v4:2x2x2", "megacore", (2, 2, 1)),
    "v4-32": Topology("v4:2x2x4", "megacore", (2, 2, 1)),
    "v5e-8": Topology("v5e:2x4", "default", (2, 4, 1)),   # v5litepod-8: one host, 8 chips
    "v5e-16": Topology("v5e:4x4", "default", (2, 2, 1)),
    "v5e-32": Topology("v5e:4x8", "default", (2, 2, 1)),  # 8 hosts of 4 chips
    "v5p-8": Topology("v5:2x2x1", "megacore", (2, 2, 1)),
    "v5p-16": Topology("v5:2x2x2", "megacore", (2, 2, 1)),
    "v6e-8": Topology("v6e:2x4", "default", (2, 4, 1)),
    "v6e-16": Topology("v6e:4x4", "default", (2, 2, 1)),
    "v6e-32": Topology("v6e:4x8", "default", (2, 2, 1)),
}
ALIASES = {"v5litepod-8": "v5e-8", "v5litepod-16": "v5e-16", "v5litepod-32": "v5e-32"}
# The device kind libtpu reports, by the generation in Topology.name (tests/test_ladder.py checks
# `chips` against the kinds and counts that tests/test_aot.py reads from libtpu).
DEVICE_KINDS = {"v4": "TPU v4", "v5e": "TPU v5 lite", "v5": "TPU v5", "v6e": "TPU v6 lite"}


def devices(topology: str):
  name = ALIASES.get(topology, topology)
  if name not in TOPOLOGIES:
    raise config_lib.ConfigError(f"--topology {topology!r}: expected one of "
                                 f"{', '.join(TOPOLOGIES)} (or {', '.join(ALIASES)})")
  t = TOPOLOGIES[name]
  return topologies.get_topology_desc(platform="tpu", topology_name=t.name,
                                      chip_config_name=t.chip_config,
                                      chips_per_host_bounds=t.chips_per_host,
                                      num_slices=1).devices


def chips(topology: str) -> tuple[str, int]:
  """(device kind, chips) of a TOPOLOGIES or ALIASES name, from the table alone: no libtpu."""
  generation, _, shape = TOPOLOGIES[ALIASES.get(topology, topology)].name.partition(":")
  return DEVICE_KINDS[generation], math.prod(int(x) for x in shape.split("x"))


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  out = {"arguments": int(m.argument_size_in_bytes), "outputs": int(m.output_size_in_bytes),
         "temporaries": int(m.temp_size_in_bytes), "aliased": int(m.alias_size_in_bytes),
         "code": int(m.generated_code_size_in_bytes)}
  # donated arguments (params, optimizer state) are reused for the outputs: count them once
  out["total"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  return out


def _per_device_bytes(tree) -> int:
  """Bytes of one device's shards of a tree of sharded ShapeDtypeStructs."""
  return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree))


def _out_of_memory(e: Exception, arguments: int) -> dict | None:
  """The memory report of a compile XLA refused for want of HBM (it names the temporaries it
  needed), or None for another error."""
  found = re.search(r"HLO temporaries \(([\d.]+)([KMGT])\)", str(e))
  if "RESOURCE_EXHAUSTED" not in str(e) or not found:
    return None
  temporaries = int(float(found.group(1)) * 1024 ** " KMGT".index(found.group(2)))
  return {"arguments": arguments, "outputs": arguments, "aliased": arguments,
          "temporaries": temporaries, "code": 0, "total": arguments + temporaries,
          "compile_error": str(e).splitlines()[0][:300]}


def _flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


# XLA's lowest optimisation effort: the same program and Mosaic kernels, compiled ~4x faster;
# its memory estimate is within a few % of the default compile's (docs/benchmarks.md).
FAST = {"exec_time_optimization_effort": -1.0}


def compile_steps(config, topology: str, fast: bool = False) -> dict:
  """Compiles the train and eval steps of `config` for `topology`; returns the report."""
  options = FAST if fast else None
  devs = devices(topology)
  mesh = sharding.make_mesh(config.mesh, devs)
  sharding.check_batch(config.data.batch_size, mesh)
  task = engine.Task("pretrain", loss_fn=functools.partial(lm.lm_loss,
                                                           z_loss=config.optim.z_loss),
                     dataset=None)   # compile only: the step never sees data
  d, m = config.data, config.model
  B, T = d.batch_size, d.seq_len
  with jax.set_mesh(mesh):
    prog = engine.build(config, mesh, task)
    model_cfg, state = prog.model_cfg, prog.abstract
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batch_s = sharding.batch_sharding(mesh)
    row = jax.ShapeDtypeStruct((B, T), jnp.int32, sharding=batch_s)
    batch = {k: row for k in ("inputs", "targets", "segment_ids", "positions", "mask")}
    t0 = time.perf_counter()
    lowered = prog.step_fn.lower(state, batch, None)
    try:
      train = lowered.compile(options)
      mem = None
    except jax.errors.JaxRuntimeError as e:  # does not fit: XLA says how much it needed
      mem = _out_of_memory(e, _per_device_bytes((state.params, state.opt_state)))
      if mem is None:
        raise
      train = None
    train_s = time.perf_counter() - t0
    eval_fn = jax.jit(functools.partial(lm.eval_step, graphdef=prog.graphdef),
                      in_shardings=(prog.shardings.params, batch_s, rep))
    table = jax.ShapeDtypeStruct((m.vocab_size,), jnp.int32, sharding=rep)
    t0 = time.perf_counter()
    evaluate = eval_fn.lower(state.params, batch, table).compile(options) if train else None
    eval_s = time.perf_counter() - t0
  device = devs[0]
  hbm = flops.hbm_bytes(device)
  mem = mem or _memory(train)
  per_token = flops.flops_per_token(model_cfg, T)
  compiled_flops = _flops(train) if train else None
  return {
      "topology": topology, "device_kind": device.device_kind, "devices": len(devs),
      "processes": len({x.process_index for x in devs}), "mesh": dict(mesh.shape),
      "attention": model_cfg.attention, "remat": model_cfg.remat, "dtype": model_cfg.dtype,
      "batch": B, "seq_len": T, "grad_accum": config.optim.grad_accum,
      "bytes_per_device": mem, "total_bytes": mem["total"],
      "hbm_bytes": hbm, "fits": hbm is not None and mem["total"] <= hbm,
      # XLA's cost analysis of the partitioned program is per device
      "flops_per_step": {"compiled": compiled_flops * len(devs) if compiled_flops else None,
                         "formula_6N_12LHQT": per_token * B * T},
      "peak_flops_per_device": flops.peak_flops(device),
      "eval_step_bytes_per_device": _memory(evaluate) if evaluate else None,
      "compile_s": {"train_step": round(train_s, 1), "eval_step": round(eval_s, 1)},
      "compile_effort": "fast" if fast else "default",
  }


def verdict(report: dict, tokens_per_s: float | None) -> str:
  """One sentence: fits or not (by how much, and the switches to try), and the MFU needed."""
  gib = 2 ** 30
  total, hbm = report["total_bytes"], report["hbm_bytes"]
  peak = report["peak_flops_per_device"] * report["devices"]
  per_token = report["flops_per_step"]["formula_6N_12LHQT"] / (report["batch"]
                                                               * report["seq_len"])
  if tokens_per_s:
    report["tokens_per_s"] = tokens_per_s
    report["mfu_needed"] = per_token * tokens_per_s / peak
  report["tokens_per_s_at_40pct_mfu"] = 0.4 * peak / per_token
  if report["fits"]:
    return (f"{report['topology']}: fits, {total / gib:.2f} of {hbm / gib:.0f} GiB per device"
            + (f"; {tokens_per_s:,.0f} tokens/s needs {report['mfu_needed']:.1%} MFU"
               if tokens_per_s else ""))
  tries = []  # the switches not already on, cheapest first
  if report["remat"] == "none":
    tries.append("--config.model.remat=dots (recompute activations in the backward pass)")
  tries.append(f"--config.optim.grad_accum={2 * report['grad_accum']} (micro-batches: "
               "activations of a smaller batch at a time)")
  if report["mesh"]["fsdp"] < report["devices"]:
    tries.append("--config.mesh.fsdp=-1 (shard parameters and optimizer state over every chip)")
  return (f"{report['topology']}: does NOT fit: {total / gib:.2f} GiB per device, "
          f"{(total - hbm) / gib:.2f} GiB over the {hbm / gib:.0f} GiB HBM; try "
          + ", or ".join(tries))


def main(argv: list[str] | None = None) -> int:
  # Compile-only: never opens a chip. The host backend is the CPU (on a TPU VM a running job
  # keeps its chips), and libtpu may be loaded by several such processes at once.
  jax.config.update("jax_platforms", "cpu")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  p = argparse.ArgumentParser(prog="swahili100 aot", description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="config file, e.g. configs/swahili_base.py")
  p.add_argument("--topology", required=True, help=f"one of {', '.join(TOPOLOGIES)}")
  p.add_argument("--tokens-per-s", type=float, default=None,
                 help="a throughput to price: prints the MFU it needs")
  p.add_argument("--fast", action="store_true",
                 help="XLA's lowest optimisation effort: ~4x faster to compile, memory within a "
                 "few %% (what the tests use); the default compiles as training does")
  args, overrides = p.parse_known_args(argv)
  try:
    config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
    report = compile_steps(config, args.topology, args.fast)
  except config_lib.ConfigError as e:
    print(f"swahili100 aot: error: {e}", file=sys.stderr)
    return 2
  print(verdict(report, args.tokens_per_s), file=sys.stderr)
  print(json.dumps(report))
  return 0 if report["fits"] else 1


if __name__ == "__main__":
  sys.exit(main())
