"""The one training loop: pretraining, SFT and DPO are `Task`s, a loss function and a data source.

    make_task = lambda config: engine.Task(
        "pretrain", loss_fn=functools.partial(lm.lm_loss, z_loss=1e-4),
        dataset=lambda i, n: loader.train_dataset(config, manifest, i, n))
    engine.run(config, workdir, make_task, resume=None)

What every stage gets: `jax.distributed` when several processes run, the mesh entered with
`jax.set_mesh` around everything (so splash attention's shard_map and any other mesh-aware
back-end see it), parameters and optimizer state created or restored already sharded, gradient
accumulation, one `training.jsonl` row per logged step with no host sync in between, periodic
asynchronous Orbax checkpoints that carry every process's data position, SIGTERM save-and-exit
with all processes agreeing on the step, automatic or explicit bit-exact resume (falling back
past an unreadable checkpoint), the NaN/Inf guard, and evaluation hooks at eval steps.
"""

import copy
import dataclasses
import functools
import shlex
import shutil
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from swahili100 import (checkpoint, config_lib, distributed, flops, fs, host_memory, lm, metrics,
                        optim, sharding, tracking)
from swahili100 import model as model_lib

# config.model fields whose change makes a resumed run a different run; the resolved back-end
# switches are compared through the recorded `runtime`.
RUNTIME_KEYS = ("attention", "layout_vjps", "causal_chunks")


@dataclasses.dataclass
class Task:
  """What a training stage is: everything else is the engine's.

  loss_fn:   (params, graphdef, frozen, batch) -> (objective_sum, sums with 'weight'); see lm.py.
  dataset:   (process_index, process_count) -> a checkpointable Grain IterDataset yielding this
             process's share of each global batch, forever (None: compiled, never run: `aot`).
  frozen_from: a checkpoint loaded as `frozen`, sharded like the parameters, never trained.
  evals:     hooks (step, params, graphdef, mesh) -> dict of metrics, run under the mesh at eval
             steps and at the end; the row is logged next to the loss.
  tokens_per_step, flops_per_step: for tokens/s and MFU (defaults: language-model training on
             config.data's batch of rows).
  resume_keys: config sections or keys whose change makes resuming the run a different run,
             or its saved optimizer state or data position unreadable (Grain worker processes
             keep their own state); refused. The resolved numerics switches of `runtime` always
             count.
  record:    what the stage resolved from its inputs, for config.json (the config stays as given).
  """
  name: str
  loss_fn: Callable
  dataset: Callable[[int, int], Any] | None
  frozen_from: str | None = None
  evals: Sequence[Callable] = ()
  tokens_per_step: int | None = None
  flops_per_step: float | None = None
  resume_keys: Sequence[str] = ("model", "optim.name", "data.worker_count")
  record: dict = dataclasses.field(default_factory=dict)   # dotted key -> what the stage
  #           resolved (e.g. data.mixture_plan), recorded in config.json beside the config


def _resolved_model(config, mesh) -> model_lib.ModelConfig:
  platform = mesh.devices.flat[0].platform
  return model_lib.resolve(config.model, platform, strict=True)


def runtime(config, mesh) -> dict:
  """What the run resolved from `auto` and the machine: recorded in config.json as `runtime`
  (`host_malloc`: the allocator the process runs with; train/align re-execute it for one), with
  the model's size: parameters with and without the embedding (and an untied head), and
  training FLOPs per token (flops.py), the figures a scaling ladder fits against."""
  m = _resolved_model(config, mesh)
  device = mesh.devices.flat[0]
  params = model_lib.num_params(m)
  embedding = m.vocab_size * m.d_model * (1 if m.tie_embeddings else 2)
  return {"params": params, "params_non_embedding": params - embedding,
          "flops_per_token": flops.flops_per_token(m, config.data.seq_len),
          "attention": m.attention, "layout_vjps": m.layout_vjps, "causal_chunks": m.causal_chunks,
          "platform": device.platform, "device_kind": getattr(device, "device_kind", ""),
          "devices": int(mesh.devices.size), "processes": jax.process_count(),
          "mesh": dict(mesh.shape), "jax": jax.__version__,
          "host_malloc": host_memory.active()}


def recorded(config, resolved: dict):
  """config.json's content: a copy of `config` with `resolved` (dotted key -> value: the stage's
  record, `runtime`, absolute data paths) written in. The config itself is never written to, so
  a function given a config sees only its inputs; run folders keep the layout they always had."""
  rec = copy.deepcopy(config)
  for key, value in resolved.items():
    *path, last = key.split(".")
    node = rec
    for part in path:
      node = node[part]
    with node.unlocked():
      node[last] = value
  return rec


def resolve(config, mesh, task: Task) -> dict:
  """Everything `run` resolves, in the order config.json has always listed it."""
  paths = {f"data.{k}": fs.absolute(config.data[k]) for k in ("records_dir", "tokenizer",
                                                               "mixture") if config.data.get(k)}
  # absolute in config.json, so evaluate/generate/export work from any directory
  return {**task.record, "runtime": runtime(config, mesh), **paths}


def _flat(config, key: str) -> dict:
  """{'section.key': value} of a section or a single key of `config` ({} when absent)."""
  node = config
  for part in key.split("."):
    if not hasattr(node, "get") or node.get(part) is None:
      return {}
    node = node.get(part)
  if hasattr(node, "to_dict"):
    return {f"{key}.{k}": v for k, v in node.to_dict().items()}
  return {key: node}


def check_resumable(workdir: str, config, keys=("model",)) -> None:
  """Refuses to resume a run whose `keys` (config sections or keys) or resolved numerics
  switches differ from `config`. Keys missing on either side (older runs) are not compared."""
  path = fs.join(workdir, "config.json")
  if not fs.exists(path):
    return
  saved = checkpoint.load_config(workdir)
  keys = (*keys, *(f"runtime.{k}" for k in RUNTIME_KEYS))
  diffs = []
  for key in keys:
    have, want = _flat(saved, key), _flat(config, key)
    diffs += [f"{k}: saved {have[k]!r}, now {want[k]!r}"
              for k in sorted(set(have) & set(want)) if have[k] != want[k]]
  if diffs:
    raise checkpoint.CheckpointError(
        f"{path}: the checkpoints were trained with a different config ({'; '.join(diffs)}); "
        "resume with the saved values or start a new --workdir")


class Program(NamedTuple):
  """What training and `aot` compile for a run: the model, its optimizer and the jitted step."""
  model_cfg: model_lib.ModelConfig
  graphdef: Any
  tx: Any                        # the optax optimizer
  lr_fn: Callable[[int], Any]    # step -> learning rate (logged)
  abstract: lm.TrainState        # shapes, dtypes and shardings of the state
  step_fn: Callable              # (state, batch, frozen) -> (state, metrics), jitted

  @property
  def shardings(self) -> lm.TrainState:
    return jax.tree.map(lambda a: a.sharding, self.abstract)


def build(config, mesh, task: Task) -> Program:
  """The model, optimizer, sharded abstract state and jitted train step of a run."""
  model_cfg = _resolved_model(config, mesh)
  graphdef, abstract_params = model_lib.abstract(model_cfg)
  tx, lr_fn = optim.make(config.optim, config.train.num_steps)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  shardings = lm.TrainState(sharding.param_shardings(abstract_params, mesh),
                            sharding.param_shardings(abstract_opt, mesh), replicated, replicated)
  scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
  abstract = lm.TrainState(sharding.abstract(abstract_params, shardings.params),
                           sharding.abstract(abstract_opt, shardings.opt_state), scalar, scalar)
  step_fn = jax.jit(
      functools.partial(lm.train_step, graphdef=graphdef, tx=tx, loss_fn=task.loss_fn,
                        grad_accum=config.optim.grad_accum),
      in_shardings=(shardings, sharding.batch_sharding(mesh),
                    shardings.params if task.frozen_from else None),
      out_shardings=(shardings, replicated), donate_argnums=(0,))
  return Program(model_cfg, graphdef, tx, lr_fn, abstract, step_fn)


def run(config, workdir: str, make_task: Callable[[Any], Task],
        resume: str | None = None) -> int:
  """Trains the task `make_task(config)` in `workdir`; returns the process exit code (0 also
  after a preemption). `jax.distributed` starts here, before the task touches any device."""
  distributed.initialize(config.mesh)
  task = make_task(config)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch(config.data.batch_size, mesh)
  workdir = fs.absolute(workdir)
  fs.probe(workdir)   # a workdir it may not write fails here, before anything is compiled
  record = recorded(config, resolve(config, mesh, task))
  t_cfg = config.train
  mngr = checkpoint.manager(workdir, t_cfg)
  start = checkpoint.resolve_resume(workdir, resume, mngr)
  if start is not None:
    check_resumable(workdir, record, task.resume_keys)
  if start is not None and start >= t_cfg.num_steps:
    print(f"{workdir} already reached step {start} of {t_cfg.num_steps}; nothing to train "
          "(raise --config.train.num_steps to continue)", flush=True)
    mngr.close()
    return 0
  if distributed.is_main():  # written only once the resume point is known to be valid
    fs.write_text(fs.join(workdir, "config.json"), record.to_json_best_effort(indent=2) + "\n")
  with jax.set_mesh(mesh), distributed.Preemption() as preempt, checkpoint.quiet_saves():
    attempt = _Run(config, workdir, task, mesh, mngr, start, record)
    try:
      return attempt.train(preempt)
    finally:
      attempt.close()


def check_free_space(workdir: str, abstract, t_cfg) -> None:
  """Warns when a local workdir's free space holds fewer than keep_last + 1 checkpoints of this
  state (parameters and optimizer, from their shapes): the next save would fail mid-run."""
  if fs.is_remote(workdir):
    return
  size = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract))
  keep = int(t_cfg.keep_last) + 1   # the ones kept, and the one being written
  free = shutil.disk_usage(workdir).free
  if free < keep * size:
    distributed.warn(f"{workdir} has {free / 2**30:.2f} GiB free, less than {keep} checkpoints "
                     f"of {size / 2**30:.2f} GiB each (train.keep_last={t_cfg.keep_last} and the "
                     "one being written): free space, or lower --config.train.keep_last")


def _command_line() -> str:
  """This process's command as it was typed (`swahili100 train ...`, `python -m ...`)."""
  python, *argv = sys.orig_argv
  if argv and argv[0] != "-m":
    argv[0] = fs.Path(argv[0]).name   # the console script, without the venv's path
  return shlex.join(argv if argv and argv[0] != "-m" else ["python", *argv])


class _Run:
  """One attempt of a run: its state (restored or initialised), logs and loop."""

  def __init__(self, config, workdir, task, mesh, mngr, start, record):
    self.config, self.workdir, self.task, self.mesh, self.mngr = config, workdir, task, mesh, mngr
    t_cfg, d_cfg = config.train, config.data
    prog = build(config, mesh, task)
    self.model_cfg, self.graphdef, self.lr_fn, self.step_fn = (
        prog.model_cfg, prog.graphdef, prog.lr_fn, prog.step_fn)
    shardings = prog.shardings
    check_free_space(workdir, prog.abstract, t_cfg)
    self.timeout = float(t_cfg.get("barrier_timeout_s", 1800))
    self.save_timeout = float(t_cfg.get("save_timeout_s", 900))
    self.saving = None   # the step of the last save asked for
    self.save_deadline = None   # when it counts as failed if still running (save_timeout_s)
    self.storage_error = None   # a save or log write that raised (what, error), reported once
    self.batches = iter(task.dataset(jax.process_index(), jax.process_count()))
    restored = None
    if start is not None:
      restored = checkpoint.restore_newest_good(mngr, workdir, start, prog.abstract,
                                                self.timeout)
    if restored is None:
      init_from = config_lib.init_from(config)
      if init_from:   # a fresh optimizer over another run's (or an import's) parameters
        params = checkpoint.load_params(init_from, prog.abstract.params)
      else:
        params = jax.jit(lambda: nnx.split(model_lib.Transformer(
            self.model_cfg, rngs=nnx.Rngs(t_cfg.seed)), nnx.Param)[1],
            out_shardings=shardings.params)()
      opt_state = jax.jit(prog.tx.init, out_shardings=shardings.opt_state)(params)
      self.state = lm.TrainState(params, opt_state,
                                 jax.device_put(jnp.int32(0), shardings.step),
                                 jax.device_put(jnp.int32(-1), shardings.first_bad))
      self.start = 0
    else:
      self.start, self.state, meta, data_state = restored
      self.batches.set_state(data_state)
      for key, now in (("seed", t_cfg.seed), ("shuffle_seed", d_cfg.shuffle_seed)):
        if meta.get(key, now) != now:
          distributed.warn(f"checkpoint {self.start} was trained with {key}={meta[key]}, now "
                           f"{now}; the resumed run will not reproduce the original")
      if distributed.is_main():
        print(f"resumed from {workdir}/checkpoints/{self.start}", flush=True)
    distributed.barrier("restored", self.timeout)
    self.frozen = checkpoint.load_params(task.frozen_from, prog.abstract.params) \
        if task.frozen_from else None
    self.is_main = distributed.is_main()
    tracker = tracking.WandbRun(t_cfg.get("wandb"), workdir, record.to_dict()) \
        if self.is_main else None
    self.good = self.start   # the newest checkpoint known to be written (0: none)
    self.log = metrics.MetricsWriter(workdir, enabled=self.is_main, resume_step=self.start,
                                     tracker=tracker)
    self.progress = metrics.Progress(t_cfg.num_steps, self.start, enabled=self.is_main)
    rows = d_cfg.batch_size * d_cfg.seq_len
    self.tokens_per_step = task.tokens_per_step or rows
    self.flops_per_step = task.flops_per_step or flops.flops_per_token(
        self.model_cfg, d_cfg.seq_len) * rows
    self.peak = flops.peak_flops(mesh.devices.flat[0]) * mesh.devices.size

  def close(self) -> None:
    """Every exit: logs flushed, checkpoints written, Grain's worker processes stopped."""
    self.progress.close()
    self.log.close()
    if self.storage_error is None and checkpoint.save_error(
        self.mngr, self.saving, wait=True, deadline=self.save_deadline) is None:  # else: reported
      self.mngr.close()
    if hasattr(self.batches, "close"):
      self.batches.close()

  def evaluate(self, step: int) -> None:
    row = {"step": step}
    for hook in self.task.evals:
      row.update(hook(step, self.state.params, self.graphdef, self.mesh))
    if len(row) > 1:
      self.write_log(row)
      if self.is_main:
        print("\n" + f"step {step}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in row.items() if k != "step" and isinstance(v, float)),
              flush=True)

  def save(self, step: int) -> int:
    """Saves `step` unless a step so far was not finite; returns that step, or -1."""
    bad = int(self.state.first_bad)
    if bad >= 0:
      return bad
    # No op in the step draws randomness (no dropout), so the RNG state is its seeds.
    meta = {"step": step, "seed": self.config.train.seed,
            "shuffle_seed": self.config.data.shuffle_seed}
    try:   # the part of an asynchronous save that runs here (folders, metadata) may raise
      checkpoint.save(self.mngr, step, self.state, meta, self.batches.get_state(), force=True)
    except Exception as e:  # noqa: BLE001 (OSError, gcsfs's and tensorstore's errors)
      self.storage_error = ("saving a checkpoint to", e)
    self.saving = step
    self.save_deadline = time.monotonic() + self.save_timeout
    return -1

  def write_log(self, row: dict) -> None:
    """training.jsonl and TensorBoard; a failed write stops the run at the next check as a
    failed save does (the checkpoints are what matters; the log is rewritten on resume)."""
    try:
      self.log.write(row)
    except OSError as e:
      self.storage_error = self.storage_error or ("writing the training log to", e)

  def save_failed(self, step: int, wait: bool = False) -> int | None:
    """SAVE_FAILED, after one message, when a save of this process (or of any, with several)
    has failed; None otherwise. Every process calls it at the same steps."""
    ended = not self.mngr.is_saving_in_progress()   # asked first: it may end in between
    what, error = self.storage_error or ("saving a checkpoint to", checkpoint.save_error(
        self.mngr, self.saving, wait, self.save_deadline))
    failed = distributed.processes_with(error is not None)
    if not failed:
      if self.saving is not None and (ended or wait):
        self.good = self.saving   # written and finalized: save_error found it in the steps
      return None
    self.storage_error = (what, error)
    # (not asked of the storage again: it may be the part that stopped answering)
    where = f"{self.workdir}/checkpoints/{self.good}" if self.good else "none saved yet"
    why = f"the save of process {failed[0]} failed (its message says why)"
    if error is not None:
      why = checkpoint.cause(error)
      if why != str(error).splitlines()[0][:300]:   # the OS's words, then the error itself
        why += f" ({type(error).__name__}: {str(error)[:200]})"
    print(f"\nERROR: process {jax.process_index()}: {what} {self.workdir} failed: "
          f"{why}.\nStopped at step {step}. Last good checkpoint: {where}. Free space or fix "
          "the storage (or move the workdir), then run the same command to resume from it:\n  "
          + _command_line(),
          file=sys.stderr, flush=True)
    return checkpoint.SAVE_FAILED

  def nan_exit(self, bad: int) -> int:
    self.mngr.wait_until_finished()
    last = self.mngr.latest_step()
    where = f"{self.workdir}/checkpoints/{last}" if last is not None else "none saved yet"
    print(f"\nERROR: the loss or gradient became NaN/Inf at step {bad + 1}; stopping without "
          f"saving. Last good checkpoint: {where}. Lower --config.optim.lr, raise "
          "--config.optim.warmup_steps, or set --config.optim.z_loss=1e-4, then resume.",
          file=sys.stderr, flush=True)
    return 1

  def train(self, preempt: distributed.Preemption) -> int:
    t_cfg, mesh = self.config.train, self.mesh
    t_last, step_last, compile_s = time.perf_counter(), self.start, None
    for step in range(self.start, t_cfg.num_steps):
      batch = sharding.shard_batch(next(self.batches), mesh)
      self.state, m = self.step_fn(self.state, batch, self.frozen)
      done = step + 1
      if compile_s is None:
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t_last
        t_last, step_last = time.perf_counter(), done
      if done % t_cfg.log_every == 0 or done == t_cfg.num_steps:  # the only host syncs
        failed = self.save_failed(done)
        if failed:
          return failed
        m = jax.device_get(m)
        if int(self.state.first_bad) >= 0:
          return self.nan_exit(int(self.state.first_bad))
        now = time.perf_counter()
        secs = max(now - t_last, 1e-9)
        row = {"step": done, "loss": float(m["loss"]), "lr": float(self.lr_fn(step)),
               "grad_norm": float(m["grad_norm"]),
               **{k: float(v) for k, v in m.items() if k not in ("loss", "grad_norm", "weight")},
               "tokens_per_s": self.tokens_per_step * (done - step_last) / secs,
               "mfu": self.flops_per_step * (done - step_last) / secs / self.peak,
               "tokens_seen": done * self.tokens_per_step, "compile_s": compile_s}
        t_last, step_last = now, done
        self.write_log(row)
        self.progress.update(done, row)
      if t_cfg.eval_every and done % t_cfg.eval_every == 0 and done != t_cfg.num_steps:
        self.evaluate(done)
      stop = preempt.reached(done)
      if stop or done % t_cfg.checkpoint_every == 0 or done == t_cfg.num_steps:
        failed = self.save_failed(done, wait=True)   # Orbax would wait for the last save anyway
        if failed:
          return failed
        bad = self.save(done)
        if bad >= 0:
          return self.nan_exit(bad)
      if stop:
        failed = self.save_failed(done, wait=True)
        if failed:
          return failed
        if self.is_main:
          print(f"\npreemption: saved {self.workdir}/checkpoints/{done}; exiting 0 "
                "(rerun the same command to resume)", flush=True)
        return 0
    self.evaluate(t_cfg.num_steps)
    failed = self.save_failed(t_cfg.num_steps, wait=True)
    if failed:
      return failed
    if self.is_main:
      print(f"done: {self.workdir}/checkpoints/{self.mngr.latest_step()}", flush=True)
    return 0
