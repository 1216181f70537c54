"""Phase 12: `swahili100 align --stage sft|dpo`, through the same engine as pretraining.

    swahili100 align --stage sft --checkpoint runs/debug --data sft.jsonl --workdir runs/sft
    swahili100 align --stage dpo --checkpoint runs/sft --data dpo.jsonl --workdir runs/dpo \
        [--beta 0.1 --steps 40 --lr 1e-4 --batch-size 8 --seq-len 256 --seed 0] \
        [--config.train.log_every=5 --config.mesh.fsdp=2 --config.optim.warmup_steps=4 ...]

The run's config is the base checkpoint's config.json with the alignment recipe on top (the short
flags are other names of `train.num_steps`, `optim.lr`, `data.batch_size`, `data.seq_len`,
`data.shuffle_seed`, `align.beta`; `--config.a.b=v` sets any key, as for `train`; one field given
both ways is refused). SFT trains the
language-model loss on assistant tokens only; DPO trains -log σ(β[(log π(c) - log π_ref(c)) -
(log π(r) - log π_ref(r))]) (Rafailov et al. 2023) against the base model, kept frozen and
sharded like the policy. Both get everything `train` has: sharding, gradient accumulation,
periodic checkpoints, SIGTERM save-and-exit, bit-exact resume, the NaN guard. The output workdir
has the layout of a training run, so generate, evaluate, quantize and export take it as it is.
"""

import argparse
import functools
import os
import sys

from swahili100 import checkpoint, config_lib, engine, flops, fs, host_memory, lm, special_tokens
from swahili100.align import datasets as align_data

SAMPLES = os.path.dirname(__file__)
# an existing workdir holding another recipe is refused, not resumed
RESUME_KEYS = ("model", "align", "optim.lr", "optim.name", "data.worker_count")
# The alignment recipe over the base run's config; each short flag is one of these fields.
RECIPE = {"train.num_steps": ("--steps", 40), "optim.lr": ("--lr", 1e-4),
          "data.batch_size": ("--batch-size", 8), "data.seq_len": ("--seq-len", 256),
          "data.shuffle_seed": ("--seed", 0), "align.beta": ("--beta", 0.1)}


def config_for(args, overrides: list[str]):
  """The base run's config with the alignment recipe, the short flags and `overrides` on top
  (a field set both by its flag and by --config.* is refused)."""
  config = checkpoint.load_config(config_lib.split_path(args.checkpoint)[0])
  with config.unlocked():
    for stale in ("runtime", "align", "import"):  # the base run's, not this run's
      if stale in config:
        del config[stale]
    if "init_from" in config.train:   # the field's name before init.from
      del config.train["init_from"]
    config.init = {"from": fs.absolute(args.checkpoint)}   # the base starts the policy
    config.align = {"stage": args.stage, "data": fs.absolute(args.data), "beta": 0.0}
    config.optim.update(grad_accum=1, z_loss=0.0, warmup_steps=None)
    config.train.update(log_every=1, eval_every=0, checkpoint_every=None,
                        keep_every=0)
  for key, (_, value) in RECIPE.items():
    config_lib.set_value(config, key, str(value))
  values = {key: (flag, getattr(args, flag[2:].replace("-", "_")))
            for key, (flag, _) in RECIPE.items()}
  given = {key: fv for key, fv in values.items() if fv[1] is not None}
  config_lib.apply_overrides(config, config_lib.aliases(given, overrides) + overrides,
                             check=False)
  steps = config.train.num_steps
  if config.optim.warmup_steps is None:   # from the run's final length, unless given
    config.optim.warmup_steps = max(1, steps // 10)
  if config.train.checkpoint_every is None:
    config.train.checkpoint_every = max(steps, 1)
  config_lib.validate(config)
  return config


def task_for(config) -> engine.Task:
  """SFT or DPO as an engine task: its loss and its data."""
  a, d = config.align, config.data
  tok = lm.load_tokenizer(config.data.tokenizer)
  if not special_tokens.of(tok, config.data.tokenizer).own:
    raise config_lib.ConfigError(
        f"{config.data.tokenizer} is an imported model's tokenizer: it lacks the chat tokens "
        f"{list(special_tokens.ALL[3:])} that SFT/DPO's chat format uses (swahili100/align/chat.py); "
        "align a model trained with the project's tokenizer (`swahili100 train-tokenizer`)")
  per_token = flops.flops_per_token(config.model, d.seq_len)
  if a.stage == "sft":
    examples = align_data.sft_examples(tok, a.data, d.seq_len)
    return engine.Task("sft", loss_fn=lm.lm_loss,
                       dataset=lambda i, n: align_data.dataset(examples, d, i, n),
                       resume_keys=RESUME_KEYS)
  examples = align_data.dpo_examples(tok, a.data, d.seq_len)
  rows = 2 * d.batch_size * d.seq_len  # chosen and rejected
  return engine.Task("dpo", loss_fn=functools.partial(lm.dpo_loss, beta=a.beta),
                     frozen_from=config_lib.init_from(config),
                     dataset=lambda i, n: align_data.dataset(examples, d, i, n),
                     tokens_per_step=rows, flops_per_step=per_token * rows * 4 / 3,  # + ref fwd
                     resume_keys=RESUME_KEYS)


def main(argv: list[str] | None = None) -> int:
  command_line = argv is None   # then the process may be re-executed (host_memory.reexec)
  p = argparse.ArgumentParser(prog="swahili100 align", description=__doc__.splitlines()[0])
  p.add_argument("--stage", required=True, choices=["sft", "dpo"])
  p.add_argument("--checkpoint", required=True, help="base run folder or "
                 "<workdir>/checkpoints/<step>")
  p.add_argument("--data", default=None,
                 help="jsonl examples (default: the embedded sample_<stage>.jsonl)")
  p.add_argument("--workdir", required=True, help="output run folder")
  p.add_argument("--resume", default=None, help="'latest' or <workdir>/checkpoints/<step>")
  for key, (flag, default) in RECIPE.items():   # each one a name of its config field
    p.add_argument(flag, type=type(default), default=None, help=f"{key} (default {default})")
  args, overrides = p.parse_known_args(argv)
  args.data = args.data or os.path.join(SAMPLES, f"sample_{args.stage}.jsonl")
  try:
    config = config_for(args, overrides)
    host_memory.reexec(host_memory.policy(config.train), command_line)
    code = engine.run(config, args.workdir, task_for, args.resume)
  except (config_lib.ConfigError, checkpoint.CheckpointError, align_data.AlignDataError,
          fs.StorageError) as e:
    print(f"swahili100 align: error: {e}", file=sys.stderr)
    return 2
  if code == checkpoint.SAVE_FAILED and command_line:
    checkpoint.exit_after_failed_save(code)
  return code


if __name__ == "__main__":
  sys.exit(main())
