"""Orbax checkpoints of a run: `<workdir>/checkpoints/<step>/{params,opt_state,meta,data}`.

- params, opt_state: the sharded pytrees (`StandardSave`), restored straight into their shardings
  (so a checkpoint restores onto another mesh or process count: Orbax reshards).
- meta: step, seeds and the process count that wrote it (`JsonSave`, the primary process).
- data: every process's data-iterator state, one `process_<i>-of-<n>.json` each, so each process
  of a resumed multi-process run sees exactly the batches it would have.

Saving is asynchronous; Orbax writes each step to a temporary folder and renames it when complete,
so a SIGKILL at any moment, even mid-save, leaves the previous complete step restorable. A step
that is complete but unreadable is reported, moved aside to `<step>.unreadable`, and the run
falls back to the newest good one. Paths may be local or `gs://` (etils.epath, tensorstore).
`load_params` / `load_model` restore only the parameters, for evaluation, generation and export.
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from flax import nnx

from swahili100 import config_lib, distributed, fs, lm
from swahili100 import model as model_lib
from swahili100 import sharding

UNREADABLE = ".unreadable"
# The exit code of a run stopped by a failed save (1 is a NaN/Inf stop, 2 a refused command).
SAVE_FAILED = 3
# Set to 1 to see what Orbax and tensorstore log and print while a save fails.
DEBUG_ENV = "SWAHILI100_DEBUG"


class CheckpointError(ValueError):
  """A checkpoint or run folder that cannot be used as asked; the message says what to do."""


# ----------------------------------------------------------------------------- data state

class DataStateHandler(ocp.CheckpointHandler):
  """Saves this process's iterator state (a JSON dict) as `process_<i>-of-<n>.json`."""

  def save(self, directory: epath.Path, args: "DataStateSave"):
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    (directory / name).write_text(json.dumps(args.state))

  def restore(self, directory: epath.Path, args: "DataStateRestore" = None):
    del args
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    path = directory / name
    if not path.exists():
      raise CheckpointError(f"{directory} has no data position for process "
                            f"{jax.process_index()} of {jax.process_count()}")
    return json.loads(path.read_text())

  def metadata(self, directory: epath.Path):
    return None


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: dict


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# ----------------------------------------------------------------------------- manager

def checkpoints_dir(workdir: str) -> str:
  return fs.join(fs.absolute(workdir), config_lib.CHECKPOINTS)


def _quiet_manager(directory: str, options) -> ocp.CheckpointManager:
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)  # read-only managers warn about being read-only
  try:
    return ocp.CheckpointManager(directory, options=options)
  finally:
    absl_logging.set_verbosity(verbosity)


def manager(workdir: str, train_cfg) -> ocp.CheckpointManager:
  """Keeps the newest `keep_last` steps plus every step divisible by `keep_every` (if > 0)."""
  timeout = int(train_cfg.get("barrier_timeout_s", 1800))
  options = ocp.CheckpointManagerOptions(
      max_to_keep=train_cfg.keep_last,
      keep_period=train_cfg.keep_every or None,
      enable_async_checkpointing=True,
      async_options=ocp.AsyncOptions(timeout_secs=timeout),
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoints_dir(workdir), options=options)


def save(mngr, step: int, state: lm.TrainState, meta: dict, data_state: dict,
         force=False) -> bool:
  """Saves the state's parameters and optimizer state, `meta` and the data position at `step`."""
  meta = {**meta, "process_count": jax.process_count()}
  return mngr.save(step, force=force, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state.params),
      opt_state=ocp.args.StandardSave(state.opt_state),
      meta=ocp.args.JsonSave(meta), data=DataStateSave(data_state)))


def save_error(mngr, step: int | None, wait: bool = False,
               deadline: float | None = None) -> Exception | None:
  """The error of the asynchronous save of `step` once it has ended (None while it runs, when
  it succeeded, or for None); `wait` blocks until it ends. Orbax raises it from
  `wait_until_finished`, or, when its finalize thread saw it first, only logs it and leaves the
  step unfinished: both count. A save still running at `deadline` (time.monotonic()) has
  failed too: storage that keeps failing is retried by tensorstore for ~15 minutes per request."""
  if step is None:
    return None
  while mngr.is_saving_in_progress():
    if deadline is not None and time.monotonic() >= deadline:
      why = _SAVER_ERRORS.seen or "the storage kept failing or did not answer"
      return TimeoutError(f"the save of step {step} was not written in time ({why}); "
                          "--config.train.save_timeout_s sets how long a save may take")
    if not wait:
      return None
    time.sleep(0.05)
  try:
    mngr.wait_until_finished()
  except Exception as e:  # noqa: BLE001 (tensorstore and Orbax raise many types)
    return e
  mngr.reload()
  if step in mngr.all_steps():
    return None
  return _SAVER_ERRORS.seen or RuntimeError(f"step {step} was not finalized")


def cause(e: BaseException) -> str:
  """The operating system's words for a storage error (`No space left on device`), else the
  error's first line: tensorstore buries the errno at the end of a long message."""
  text = str(e)
  code = re.search(r"os_error_code='?(\d+)|\[Errno (\d+)\]", text)
  if code:
    return os.strerror(int(code.group(1) or code.group(2)))
  return (text.splitlines() or [type(e).__name__])[0][:300]


class _SaverErrors(logging.Filter):
  """Keeps the last error Orbax's saver threads (or gcsfs, out of retries) log and drops their
  tracebacks and asyncio's reports of the writes Orbax abandons: the run reports the failure
  itself, once. `SWAHILI100_DEBUG=1` lets them through."""

  def __init__(self):
    super().__init__()
    self.seen = None

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR or not ("orbax" in record.pathname or "gcsfs" in
                                              record.pathname or record.name == "asyncio"):
      return True
    if record.exc_info and record.exc_info[1] is not None:
      self.seen = record.exc_info[1]
    return os.environ.get(DEBUG_ENV) == "1"


_SAVER_ERRORS = _SaverErrors()


@contextlib.contextmanager
def quiet_saves():
  """While training: a failed save's thread tracebacks, asyncio reports and 'Exception ignored'
  coroutines are not printed (the engine prints one message instead)."""
  loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "gcsfs")]
  hook = sys.unraisablehook
  for logger in loggers:
    logger.addFilter(_SAVER_ERRORS)
  if os.environ.get(DEBUG_ENV) != "1":
    sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    for logger in loggers:
      logger.removeFilter(_SAVER_ERRORS)
    sys.unraisablehook = hook


def exit_after_failed_save(code: int) -> None:
  """Ends the process at once: after a failed save, Orbax's abandoned threads and coroutines
  would report at interpreter shutdown (hundreds of lines), and a peer process stuck in one of
  its barriers must not hold this one. Logs and messages are already flushed."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def save_params(workdir: str, step: int, params, meta: dict) -> None:
  """Writes parameters alone as `<workdir>/checkpoints/<step>` (an imported model: no optimizer
  state or data position; `load_params` and `init.from` read it like any step)."""
  mngr = ocp.CheckpointManager(checkpoints_dir(workdir), options=ocp.CheckpointManagerOptions(
      enable_async_checkpointing=False))
  try:
    mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                            meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
  finally:
    mngr.close()


def restore(mngr, step: int, abstract: lm.TrainState):
  """(state, meta, this process's data state) of `step`, in the shardings of `abstract`."""
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  saved = meta.get("process_count", 1)
  if saved != jax.process_count():
    raise CheckpointError(
        f"checkpoint {step} was written by {saved} process(es), this run has "
        f"{jax.process_count()}: the data stream is split per process, so its position cannot be "
        "remapped. Resume with the process count that wrote it, or start a new --workdir from "
        f"these weights with --config.init.from={mngr.directory}/{step}")
  out = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract.params),
      opt_state=ocp.args.StandardRestore(abstract.opt_state),
      data=DataStateRestore()))
  state = lm.TrainState(out.params, out.opt_state,
                        jax.device_put(jnp.int32(step), abstract.step.sharding),
                        jax.device_put(jnp.int32(-1), abstract.first_bad.sharding))
  return state, meta, out.data


def restore_newest_good(mngr, workdir: str, step: int, abstract: lm.TrainState,
                        timeout_s: float):
  """`restore` of `step`, else of the newest older step that reads; an unreadable step is
  reported and moved aside so later saves of that step are not skipped. Returns (step, ...)."""
  while True:
    try:
      return (step, *restore(mngr, step, abstract))
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001 (tensorstore/Orbax raise many types for a bad file)
      older = [s for s in mngr.all_steps() if s < step]
      where = fs.join(checkpoints_dir(workdir), str(step))
      print(f"warning: checkpoint {where} is unreadable ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}); moving it to {where}{UNREADABLE} and "
            + (f"resuming from step {max(older)}" if older else "starting fresh"),
            file=sys.stderr, flush=True)
      distributed.barrier(f"unreadable-{step}-seen", timeout_s)
      if distributed.is_main():
        target = epath.Path(where + UNREADABLE)
        if target.exists():
          target.rmtree()
        epath.Path(where).rename(target)
      distributed.barrier(f"unreadable-{step}-moved", timeout_s)
      mngr.reload()
      if not older:
        return None
      step = max(older)


def resolve_resume(workdir: str, resume: str | None, mngr) -> int | None:
  """The step to resume from: `latest`, a `<workdir>/checkpoints/<step>` path, or automatic."""
  if resume in (None, "", "latest"):
    step = mngr.latest_step()
    if resume == "latest" and step is None:
      print(f"--resume latest: no checkpoint in {workdir}/checkpoints yet; starting fresh")
    return step
  step_str = fs.Path(resume).name
  if not step_str.isdigit():
    raise CheckpointError(f"--resume {resume!r}: expected 'latest' or "
                          "<workdir>/checkpoints/<step>")
  step = int(step_str)
  if step not in mngr.all_steps():
    raise CheckpointError(f"--resume {resume!r}: step {step} is not a complete checkpoint in "
                          f"{workdir}/checkpoints (have {sorted(mngr.all_steps())})")
  return step


# ----------------------------------------------------------------------------- run folders
# (paths: config_lib.split_path, which config_lib needs for init.from)

def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = fs.join(workdir, "config.json")
  if not fs.exists(path):
    raise CheckpointError(f"{path} not found: {workdir!r} is not a training run folder "
                          "(made by `swahili100 train --workdir ...`)")
  return config_lib.from_json(path)


def latest_step(workdir: str) -> int | None:
  directory = checkpoints_dir(workdir)
  if not fs.exists(directory):
    return None
  mngr = _quiet_manager(directory, ocp.CheckpointManagerOptions(
      read_only=True, save_interval_steps=0, create=False))  # what read_only implies: no warning
  step = mngr.latest_step()
  mngr.close()
  return step


def load_params(path: str, abstract_params):
  """The parameters of `<workdir>[/checkpoints/<step>]` into `abstract_params`' shardings."""
  workdir, step = config_lib.split_path(path)
  directory = checkpoints_dir(workdir)
  if fs.exists(fs.join(workdir, "config.json")) and not fs.exists(directory):
    raise CheckpointError(f"{workdir} has a config.json but no {config_lib.CHECKPOINTS}/ "
                          "folder: not a training run (a `swahili100 quantize` output loads through "
                          "swahili100.inference.load); give a run folder or one of its steps")
  mngr = _quiet_manager(directory, ocp.CheckpointManagerOptions(
      read_only=True, save_interval_steps=0, create=False))  # what read_only implies: no warning
  try:
    step = mngr.latest_step() if step is None else step
    if step is None or step not in mngr.all_steps():
      raise CheckpointError(f"no complete checkpoint {step if step is not None else ''} under "
                            f"{directory}; train first")
    try:
      return mngr.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract_params))).params
    except Exception as e:  # noqa: BLE001 (tensorstore/Orbax raise many types for a bad file)
      raise _unreadable(directory, step, [s for s in mngr.all_steps() if s < step], e) from e
  finally:
    mngr.close()


def _unreadable(directory: str, step: int, older: list[int], e: Exception) -> CheckpointError:
  """Refuses, by name, to read a damaged step's weights, and offers the newest older step.
  Not a silent fallback: what evaluate/export/generate/quantize write names the weights they
  used, and a model card must not describe step N with step N - k's numbers."""
  offer = (f"use the step before: {directory}/{max(older)}" if older
           else "no older step exists; retrain or restore the folder from a copy")
  return CheckpointError(f"{directory}/{step} is unreadable ({type(e).__name__}: "
                         f"{cause(e)}); {offer} (a training run resumes past it by itself)")


def load_model(path: str, mesh: jax.sharding.Mesh | None = None):
  """(config, model) with the parameters of a checkpoint, no optimizer: on `mesh` (sharded by
  the training rules) or on the default device."""
  workdir, _ = config_lib.split_path(path)
  config = load_config(workdir)
  platform = mesh.devices.flat[0].platform if mesh is not None else None
  model_cfg = model_lib.resolve(config.model, platform, strict=False)  # trained elsewhere: ok
  graphdef, abstract_params = model_lib.abstract(model_cfg)
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract_params)
  else:
    shardings = sharding.param_shardings(abstract_params, mesh)
  return config, nnx.merge(graphdef, load_params(path, sharding.abstract(abstract_params,
                                                                          shardings)))


