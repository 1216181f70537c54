"""Orbax checkpoints of a run: `<workdir>/checkpoints/<step>/{params,opt_state,meta,data}`.

- params, opt_state: the sharded pytrees (`StandardSave`), restored straight into their shardings.
- meta: step and the seeds, which are the run's whole RNG state (`JsonSave`).
- data: the Grain iterator state (`JsonSave`), so a resumed run sees exactly the next batches.

Saving is asynchronous; Orbax writes each step to a temporary folder and renames it when complete,
so a SIGKILL at any moment, even mid-save, leaves the previous complete step restorable (incomplete
folders are never listed as steps). `load_model` restores only the parameters, for generate,
evaluate and export.
"""

import datetime
import os

import jax
import ml_collections
from absl import logging as absl_logging
import orbax.checkpoint as ocp
from flax import nnx

from swahili100 import config_lib
from swahili100 import model as model_lib


def manager(workdir: str, train_cfg) -> ocp.CheckpointManager:
  """Keeps the newest `keep_last` steps plus every step divisible by `keep_every` (if > 0)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=train_cfg.keep_last,
      keep_period=train_cfg.keep_every or None,
      enable_async_checkpointing=True,
      async_options=ocp.AsyncOptions(timeout_secs=1800),
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options)


def save(mngr, step: int, params, opt_state, meta: dict, data_state: dict, force=False) -> bool:
  return mngr.save(step, force=force, args=ocp.args.Composite(
      params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
      meta=ocp.args.JsonSave(meta), data=ocp.args.JsonSave(data_state)))


def restore(mngr, step: int, abstract_params, abstract_opt_state):
  """Restores (params, opt_state, meta, data_state) of `step` into the abstract trees' shardings."""
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params),
      opt_state=ocp.args.StandardRestore(abstract_opt_state),
      meta=ocp.args.JsonRestore(), data=ocp.args.JsonRestore()))
  return out.params, out.opt_state, out.meta, out.data


def resolve_resume(workdir: str, resume: str | None, mngr) -> int | None:
  """The step to resume from: `latest`, a `<workdir>/checkpoints/<step>` path, or automatic."""
  if resume in (None, "", "latest"):
    step = mngr.latest_step()
    if resume == "latest" and step is None:
      print(f"--resume latest: no checkpoint in {workdir}/checkpoints yet; starting fresh")
    return step
  step_str = os.path.basename(os.path.normpath(resume))
  if not step_str.isdigit():
    raise ValueError(f"--resume {resume!r}: expected 'latest' or <workdir>/checkpoints/<step>")
  step = int(step_str)
  if step not in mngr.all_steps():
    raise ValueError(f"--resume {resume!r}: step {step} is not a complete checkpoint in "
                     f"{workdir}/checkpoints (have {sorted(mngr.all_steps())})")
  return step


def check_same_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to resume a run whose saved model config differs from `config.model`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  saved = load_config(workdir).model.to_dict()
  diff = {k: (saved.get(k), v) for k, v in config.model.to_dict().items() if saved.get(k) != v}
  if diff:
    raise ValueError(f"{path}: the checkpoints were trained with a different model config "
                     f"({', '.join(f'{k}: saved {a!r}, now {b!r}' for k, (a, b) in diff.items())}); "
                     "resume with the saved values or start a new --workdir")


def split_path(path: str) -> tuple[str, int | None]:
  """`<workdir>` or `<workdir>/checkpoints[/<step>]` -> (workdir, step or None for latest)."""
  path = os.path.normpath(path)
  base = os.path.basename(path)
  if base.isdigit() and os.path.basename(os.path.dirname(path)) == "checkpoints":
    return os.path.dirname(os.path.dirname(path)), int(base)
  if base == "checkpoints":
    return os.path.dirname(path), None
  return path, None


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a training run folder "
                            "(made by `swahili100 train --workdir ...`)")
  return config_lib.from_json(path)


def load_model(path: str):
  """(config, model) with the parameters of a checkpoint, on the default device, no optimizer.

  `path` is a run folder (its latest step) or `<workdir>/checkpoints/<step>`. A folder made by
  `swahili100 quantize` loads as its quantized model.
  """
  workdir, step = split_path(path)
  config = load_config(workdir)
  if "quant" in config:
    from swahili100.export import quantize  # noqa: PLC0415 (optional extra, loaded on demand)
    return quantize.load_quantized(workdir)
  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # read-only managers warn about read-only
  try:
    mngr = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(read_only=True))
  finally:
    absl_logging.set_verbosity(verbosity)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no complete checkpoint under {ckpt_dir}; train first")
  abstract = nnx.eval_shape(lambda: model_lib.Transformer(config.model, rngs=nnx.Rngs(0)))
  graphdef, abstract_params = nnx.split(abstract, nnx.Param)
  device = jax.devices()[0]
  abstract_params = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(device)),
      abstract_params)
  params = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params))).params
  mngr.close()
  return config, nnx.merge(graphdef, params)


def age(path: str) -> datetime.timedelta:
  return datetime.datetime.now() - datetime.datetime.fromtimestamp(os.path.getmtime(path))
