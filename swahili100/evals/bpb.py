"""Validation loss and bits per UTF-8 byte of the token records' validation split."""

import jax
import jax.numpy as jnp
from flax import nnx

from swahili100 import lm, loader, sharding


def records_bpb(graphdef, params, config, manifest, mesh, max_batches: int = -1,
                token_bytes_V=None) -> dict:
  """{'loss', 'bpb', 'tokens', 'bytes'} over the validation split of `config.data.records_dir`
  (every process reads the same batches; each places its rows on its devices)."""
  if token_bytes_V is None:
    token_bytes_V = jnp.asarray(lm.token_bytes(config.data.tokenizer, config.model.vocab_size))
  sums = lm.eval_sums(graphdef, params, loader.eval_batches(config, manifest, max_batches),
                      token_bytes_V, lambda b: sharding.shard_global_batch(b, mesh))
  return lm.summarize(sums)


def validation_hook(config, manifest):
  """Training hook: eval_loss, eval_bpb, eval_tokens on `config.train.eval_batches` batches."""
  token_bytes_V = lm.token_bytes(config.data.tokenizer, config.model.vocab_size)  # numpy: no
  # device is touched before the engine has started jax.distributed

  def hook(step, params, graphdef, mesh):
    del step
    m = records_bpb(graphdef, params, config, manifest, mesh, config.train.eval_batches,
                    token_bytes_V)
    return {"eval_loss": m["loss"], "eval_bpb": m["bpb"], "eval_tokens": m["tokens"]}
  return hook


def model_bpb(model, config, records_dir: str | None = None, max_batches: int = -1) -> dict:
  """`records_bpb` of an in-memory model on one device (quantization reports, benchmarks)."""
  config = config.copy_and_resolve_references()
  if records_dir:
    config.data.records_dir = records_dir
  manifest = loader.check_manifest(config)
  graphdef, params = nnx.split(model, nnx.Param)
  mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
  with jax.set_mesh(mesh):
    return records_bpb(graphdef, params, config, manifest, mesh, max_batches)
