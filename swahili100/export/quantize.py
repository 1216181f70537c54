"""Weight-only groupwise int4/int8 quantization of a checkpoint's projection kernels.

    swahili100 quantize --checkpoint runs/x/checkpoints/200 --precision int4 --group-size 64 \
        --output runs/x-int4 [--method rtn|mse|gptq] [--quantize-lm-head] [--eval-batches 8]

Every attention/MLP `nnx.Linear` is replaced in place by a `QuantLinear` holding unsigned codes
(int4: two nibbles per uint8, packed along the input dim; int8: one uint8 each) with a float32
scale and a uint8 zero point per group of `group_size` input rows and output column
(asymmetric): w = (q - zero) * scale, dequantized on the fly inside the jitted forward. The
embedding stays float32 (a gather, and with tied embeddings also the output head); lm_head is
quantized only with --quantize-lm-head. `--method mse` searches, per group, the clipping ratio
of the [min, max] range that minimises the weight's squared error (a cheap calibration-free
improvement over round-to-nearest, `rtn`); `--method gptq` is calibrated: GPTQ error
compensation with input Hessians from `--calib-batches` training batches.

The output folder holds `config.json` (the run's config plus a `quant` block),
`quantized.safetensors` and `quant_report.json` (validation loss and bits-per-byte before and
after). `inference.load(folder)` sees the `quant` block and calls `quantized.load`, so
`swahili100 generate/evaluate --checkpoint folder` run the quantized model directly.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from swahili100 import checkpoint, loader, quantized
from swahili100.evals import bpb

REPORT = "quant_report.json"
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)


def quantize_kernel(w_IO: np.ndarray, bits: int, group_size: int, method: str = "rtn"):
  """(codes [I, O] uint8, scale [I/g, O] f32, zero [I/g, O] uint8): asymmetric groupwise."""
  d_in, d_out = w_IO.shape
  if d_in % group_size:
    raise ValueError(f"input dim {d_in} is not a multiple of --group-size {group_size}")
  qmax = 2 ** bits - 1
  w = np.asarray(w_IO, np.float32).reshape(d_in // group_size, group_size, d_out)
  wmin, wmax = np.minimum(w.min(1), 0.0), np.maximum(w.max(1), 0.0)  # keep 0 exact
  best = None
  for r in (CLIP_RATIOS if method == "mse" else (1.0,)):
    lo, hi = wmin * r, wmax * r
    scale = np.maximum(hi - lo, 1e-12) / qmax
    zero = np.clip(np.round(-lo / scale), 0, qmax)
    q = np.clip(np.round(w / scale[:, None]) + zero[:, None], 0, qmax)
    err = (((q - zero[:, None]) * scale[:, None] - w) ** 2).sum(1)
    if best is None:
      best = [q, scale, zero, err]
    else:
      take = err < best[3]
      best[0] = np.where(take[:, None], q, best[0])
      best[1], best[2], best[3] = (np.where(take, scale, best[1]), np.where(take, zero, best[2]),
                                   np.where(take, err, best[3]))
  q, scale, zero, _ = best
  return q.reshape(d_in, d_out).astype(np.uint8), scale.astype(np.float32), zero.astype(np.uint8)


def quantize_kernel_gptq(w_IO: np.ndarray, hessian_II: np.ndarray, bits: int, group_size: int,
                        grid: str = "mse", damp: float = 0.01):
  """GPTQ (Frantar et al. 2022): quantize input rows one at a time and spread each row's
  rounding error over the rows not yet quantized, weighted by the inverse of the calibration
  Hessian H = E[x x^T]. Group scale/zero are fixed when a group starts (on the already
  error-compensated rows, `grid` = rtn or mse clip search). Same outputs as `quantize_kernel`."""
  d_in, d_out = w_IO.shape
  if d_in % group_size:
    raise ValueError(f"input dim {d_in} is not a multiple of --group-size {group_size}")
  qmax = 2 ** bits - 1
  W = np.array(w_IO, np.float64)
  H = np.array(hessian_II, np.float64)
  dead = np.diag(H) == 0
  H[dead, dead] = 1.0
  W[dead] = 0.0
  H[np.diag_indices(d_in)] += damp * np.mean(np.diag(H))
  U = np.linalg.cholesky(np.linalg.inv(H)).T  # upper: H^-1 = U^T U
  Q = np.zeros((d_in, d_out), np.uint8)
  scales = np.zeros((d_in // group_size, d_out), np.float32)
  zeros = np.zeros((d_in // group_size, d_out), np.uint8)
  for i in range(d_in):
    g = i // group_size
    if i % group_size == 0:
      _, scales[g], zeros[g] = quantize_kernel(W[i:i + group_size], bits, group_size, grid)
    scale, zero = scales[g].astype(np.float64), zeros[g].astype(np.float64)
    q = np.clip(np.round(W[i] / scale) + zero, 0, qmax)
    Q[i] = q
    err = (W[i] - (q - zero) * scale) / U[i, i]
    W[i + 1:] -= np.outer(U[i, i + 1:], err)
  return Q, scales, zeros


def calibration_hessians(model, batches, paths) -> dict[tuple[str, ...], np.ndarray]:
  """E[x x^T] of the inputs of each linear at `paths`, from a float forward over `batches`."""
  sums = {p: [0.0, 0] for p in paths}

  class Recorder(nnx.Module):

    def __init__(self, lin, key):
      self.lin, self.key = lin, key

    def __call__(self, x):
      x_ND = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
      sums[self.key][0] = sums[self.key][0] + x_ND.T @ x_ND
      sums[self.key][1] += x_ND.shape[0]
      return self.lin(x)

  originals = {p: quantized.get_path(model, p) for p in paths}
  for p, lin in originals.items():
    quantized.set_path(model, p, Recorder(lin, p))
  try:
    for b in batches:
      model(jnp.asarray(b["inputs"]), segment_ids_BT=jnp.asarray(b["segment_ids"]),
            positions_BT=jnp.asarray(b["positions"]))
  finally:
    for p, lin in originals.items():
      quantized.set_path(model, p, lin)
  return {p: h / max(n, 1) for p, (h, n) in sums.items()}


def quantize_linear(w_IO, bits: int, group_size: int, method: str = "rtn", dtype=jnp.float32):
  """A `QuantLinear` holding `w_IO` quantized by `method` (rtn or mse)."""
  q, scale, zero = quantize_kernel(np.asarray(w_IO), bits, group_size, method)
  return quantized.QuantLinear(quantized.pack_int4(q) if bits == 4 else q, scale, zero, bits,
                               group_size, dtype)


def quantize_model(model, bits: int, group_size: int, method: str = "rtn",
                   lm_head: bool = False, calib_batches=None):
  """Swaps the projections (and lm_head if asked) of `model` for `QuantLinear`s, in place.
  `method` gptq needs `calib_batches` (packed training batches) for its Hessians."""
  paths = quantized.linear_paths(model.config)
  if lm_head and not model.config.tie_embeddings:
    paths.append(("lm_head",))
  if method == "gptq":
    if calib_batches is None:
      raise ValueError("--method gptq needs calibration batches (--calib-batches > 0)")
    hessians = calibration_hessians(model, calib_batches, paths)
  for path in paths:
    lin = quantized.get_path(model, path)
    if method == "gptq":
      q, scale, zero = quantize_kernel_gptq(np.asarray(lin.kernel[...]), hessians[path], bits,
                                            group_size)
      new = quantized.QuantLinear(quantized.pack_int4(q) if bits == 4 else q, scale, zero, bits,
                                  group_size,
                        model.dtype)
    else:
      new = quantize_linear(lin.kernel[...], bits, group_size, method, model.dtype)
    quantized.set_path(model, path, new)
  return model


def train_batches(config, n: int) -> list[dict]:
  """The first `n` packed batches of the training stream (GPTQ calibration; not validation)."""
  manifest = loader.check_manifest(config)
  cfg = config.copy_and_resolve_references()
  cfg.data.prefetch = 0
  cfg.data.worker_count = 0
  it = iter(loader.train_dataset(cfg, manifest))
  return [next(it) for _ in range(n)]


def _float_paths(model) -> list[tuple[str, ...]]:
  paths = [("embed", "embedding"), ("final_norm", "scale")]
  for i in range(model.config.num_layers):
    paths += [("layers", str(i), "attn_norm", "scale"), ("layers", str(i), "mlp_norm", "scale")]
  if not model.config.tie_embeddings and not isinstance(model.lm_head, quantized.QuantLinear):
    paths.append(("lm_head", "kernel"))
  return paths


def save_quantized(model, config, out_dir: str, quant: dict) -> None:
  from safetensors.numpy import save_file  # noqa: PLC0415
  os.makedirs(out_dir, exist_ok=True)
  tensors = {".".join(p): np.asarray(quantized.get_path(model, p)[...])
             for p in _float_paths(model)}
  for path in quantized.linear_paths(model.config) + [("lm_head",)]:
    try:
      lin = quantized.get_path(model, path)
    except AttributeError:
      continue
    if isinstance(lin, quantized.QuantLinear):
      for name in ("qweight", "scale", "zero"):
        tensors[".".join(path + (name,))] = np.asarray(getattr(lin, name)[...])
  save_file(tensors, os.path.join(out_dir, quantized.WEIGHTS))
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.quant = ml_collections.ConfigDict(quant)
  with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
    f.write(cfg.to_json(indent=2))


def weight_bytes(model) -> int:
  return sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(nnx.state(model)))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="swahili100 quantize",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True, help="<workdir>/checkpoints/<step> or workdir")
  parser.add_argument("--precision", choices=("int4", "int8"), default="int4")
  parser.add_argument("--group-size", type=int, choices=(32, 64, 128), default=64)
  parser.add_argument("--method", choices=("rtn", "mse", "gptq"), default="mse",
                      help="rtn: round-to-nearest on [min, max]; mse: per-group clip search; "
                      "gptq: Hessian-weighted error compensation on calibration batches")
  parser.add_argument("--calib-batches", type=int, default=8,
                      help="gptq: training batches for the input statistics")
  parser.add_argument("--quantize-lm-head", action="store_true")
  parser.add_argument("--eval-batches", type=int, default=8,
                      help="validation batches for the before/after report (0 = skip)")
  parser.add_argument("--output", required=True)
  args = parser.parse_args(argv)
  try:
    config, model = checkpoint.load_model(args.checkpoint)
  except checkpoint.CheckpointError as e:
    print(f"swahili100 quantize: error: {e}", file=sys.stderr)
    return 2
  bits = 4 if args.precision == "int4" else 8
  report = {"checkpoint": os.path.abspath(args.checkpoint), "precision": args.precision,
            "group_size": args.group_size, "method": args.method,
            "lm_head": args.quantize_lm_head, "float_weight_bytes": weight_bytes(model)}
  if args.eval_batches:
    report["before"] = bpb.model_bpb(model, config, max_batches=args.eval_batches)
  t0 = time.perf_counter()
  calib = train_batches(config, args.calib_batches) if args.method == "gptq" else None
  quantize_model(model, bits, args.group_size, args.method, args.quantize_lm_head, calib)
  report["quantize_seconds"] = round(time.perf_counter() - t0, 3)
  report["quant_weight_bytes"] = weight_bytes(model)
  if args.eval_batches:
    report["after"] = bpb.model_bpb(model, config, max_batches=args.eval_batches)
    b, a = report["before"]["bpb"], report["after"]["bpb"]
    report["bpb_increase_pct"] = 100.0 * (a - b) / b
  save_quantized(model, config, args.output,
                 {"precision": args.precision, "bits": bits, "group_size": args.group_size,
                  "method": args.method, "lm_head": args.quantize_lm_head,
                  "source": report["checkpoint"]})
  with open(os.path.join(args.output, REPORT), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
