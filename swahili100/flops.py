"""FLOPs per token and the peak FLOP/s that MFU is measured against.

MFU = achieved model FLOP/s / (peak FLOP/s per device × devices), PaLM convention (Chowdhery et
al. 2022, appendix B). Accelerators use their published dense bf16 peak. A CPU has no published
peak for this purpose, so its peak is measured: a jitted float32 matmul large enough to reach the
cores' FMA throughput, timed once per host and cached, so CPU MFU never exceeds 100 %.
"""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp

from swahili100 import fs
from swahili100 import model as model_lib

# Dense bf16 FLOP/s per chip, by substring of `device.device_kind` (first match wins).
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
              "TPU v5": 459e12, "TPU v6": 918e12, "TPU7x": 2307e12, "H200": 989e12,
              "H100": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}
# HBM per chip in bytes, for the ahead-of-time memory check.
HBM_BYTES = {"TPU v4": 32 << 30, "TPU v5 lite": 16 << 30, "TPU v5e": 16 << 30,
             "TPU v5p": 95 << 30, "TPU v5": 95 << 30, "TPU v6": 32 << 30, "H200": 141 << 30,
             "H100": 80 << 30, "A100": 80 << 30, "L4": 24 << 30, "T4": 16 << 30}
CPU_PEAK_MATMUL = 3072  # side of the float32 matmul that measures a CPU's peak


def flops_per_token(model_cfg, seq_len: int) -> float:
  """Training FLOPs per token, 6P + 12·L·N·H·T (the codebase's letters, docs/ARCHITECTURE.md).

  P counts every parameter that takes part in a matmul per token: all parameters minus the input
  embedding lookup, except that a tied embedding counts once as the output head. L·N·H·T is
  layers × query heads × head dim × sequence length (attention scores and values, forward and
  backward, counting the full T×T matrix as PaLM does, although causal masking skips half).
  PaLM writes the same formula 6N + 12·L·H·Q·T; aot's report keeps that name for its key.
  """
  m = model_cfg
  n = model_lib.num_params(m) - (0 if m.tie_embeddings else m.vocab_size * m.d_model)
  return 6 * n + 12 * m.num_layers * m.num_heads * m.head_dim * seq_len


def _lookup(table: dict, device):
  return _by_kind(table, getattr(device, "device_kind", "") or "")


def _by_kind(table: dict, kind: str):
  for key, value in table.items():
    if key.lower() in kind.lower():
      return value
  return None


def hbm_bytes(device) -> int | None:
  return _lookup(HBM_BYTES, device)


def published_peak(device_kind: str) -> float | None:
  """The table's dense bf16 FLOP/s of one chip of `device_kind` (e.g. "TPU v5 lite"), or None."""
  return _by_kind(PEAK_FLOPS, device_kind)


def peak_flops(device) -> float:
  """Peak FLOP/s of one device: the published figure, the measured one on CPU, else NaN."""
  value = _lookup(PEAK_FLOPS, device)
  if value is not None:
    return value
  if device.platform == "cpu":
    return measured_cpu_peak() / max(1, jax.local_device_count())
  return float("nan")


def _cpu_key() -> str:
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   model)
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{platform.node()}|{model}|{cores} cores|jax {jax.__version__}"


def measured_cpu_peak(n: int = CPU_PEAK_MATMUL, reps: int = 5) -> float:
  """FLOP/s of this host's CPU (all its cores together) on a float32 [n, n] matmul, measured once
  and cached in the user cache folder (keyed by host, CPU model, cores and jax version)."""
  path = os.path.join(fs.cache_dir(), "cpu_peak_flops.json")
  key = _cpu_key()
  try:
    with open(path, encoding="utf-8") as f:
      cache = json.load(f)
  except (OSError, ValueError):
    cache = {}
  if key in cache:
    return float(cache[key])
  cpu = jax.devices("cpu")[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), cpu)
  matmul = jax.jit(jnp.dot)
  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  cache[key] = 2 * n**3 / best
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(cache, f, indent=1)
  os.replace(path + ".tmp", path)
  return cache[key]
