"""Phases 7-10: pretrain (and resume) a model on token records, through the engine.

    swahili100 train --config configs/debug.py --workdir runs/debug [--resume latest|<step dir>]
                     [--config.optim.lr=1e-3 --config.mesh.fsdp=2 ...]
    python -m swahili100.train ...   (same flags)

A workdir that already holds checkpoints resumes from the newest automatically. SIGTERM (the
Cloud TPU preemption notice) saves at the next step and exits 0; with several processes, all
stop at the same step. A NaN/Inf loss stops the run, exit 1, without saving. Validation loss and
bits per byte, and the tasks of `config.train.eval_tasks`, run every `config.train.eval_every`
steps and at the end.
"""

import argparse
import functools
import sys

from swahili100 import (checkpoint, config_lib, engine, evals, fs, host_memory, lm, loader,
                        records)
from swahili100.evals import bpb, tasks


def pretrain_task(config) -> engine.Task:
  """Next-token prediction on the records of `config.data`, evaluated on their validation split
  and on `config.train.eval_tasks`."""
  manifest = loader.check_manifest(config)
  record = {}
  if config.data.get("mixture"):  # the plan's weights go into config.json with the run
    record["data.mixture_plan"] = loader.mixture_summary(loader.read_mixture(config.data.mixture))
  return engine.Task(
      "pretrain", loss_fn=functools.partial(lm.lm_loss, z_loss=config.optim.z_loss),
      dataset=lambda index, count: loader.train_dataset(config, manifest, index, count),
      evals=[bpb.validation_hook(config, manifest), *tasks.training_hooks(config)],
      record=record)


def run(config, workdir: str, resume: str | None = None) -> int:
  """Pretrains `config` in `workdir`; returns the process exit code."""
  return engine.run(config, workdir, pretrain_task, resume)


def parse_args(argv: list[str]):
  """(config, workdir, resume) from `--config F --workdir W [--resume R] [--config.k=v ...]`."""
  p = argparse.ArgumentParser(prog="swahili100 train", description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="config file, e.g. configs/debug.py[:arg]")
  p.add_argument("--workdir", required=True, help="run folder (local or gs://): config.json, "
                 "logs/, checkpoints/")
  p.add_argument("--resume", default=None,
                 help="'latest' or <workdir>/checkpoints/<step> (default: latest if any)")
  args, overrides = p.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load(args.config), overrides)
  return config, args.workdir, args.resume


def main(argv: list[str] | None = None) -> int:
  """The command line; `argv=None` means this process's own (and allows re-executing it with
  the config's host allocator, `host_memory.reexec`)."""
  command_line = argv is None
  argv = sys.argv[1:] if argv is None else argv
  try:
    config, workdir, resume = parse_args(argv)
    host_memory.reexec(host_memory.policy(config.train), command_line)
    code = run(config, workdir, resume)
  except (config_lib.ConfigError, records.RecordsError, checkpoint.CheckpointError,
          evals.EvalDataError, fs.StorageError) as e:
    print(f"swahili100 train: error: {e}", file=sys.stderr)
    return 2
  if code == checkpoint.SAVE_FAILED and command_line:
    checkpoint.exit_after_failed_save(code)
  return code


if __name__ == "__main__":
  sys.exit(main())
