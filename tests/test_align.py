"""Alignment: the chat format and its mask, SFT on assistant tokens, DPO against a reference."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jinja2
import numpy as np
import pytest
import tokenizers

from swahili100 import checkpoint, config_lib, generate, special_tokens, train
from swahili100.align import chat, main as align

from conftest import REPO, tiny_config

MESSAGES = [{"role": "system", "content": "Jibu kwa Kiswahili."},
            {"role": "user", "content": "Habari?"},
            {"role": "assistant", "content": "Nzuri, asante."}]


def test_render_matches_the_exported_chat_template():
  from swahili100.export import hf
  template = jinja2.Environment().from_string(hf.CHAT_TEMPLATE)
  for gen in (False, True):
    assert chat.render(MESSAGES, gen) == template.render(messages=MESSAGES,
                                                         add_generation_prompt=gen)


def test_mask_covers_exactly_the_assistant_turn(tiny_records):
  tok = tokenizers.Tokenizer.from_file(tiny_records[1])
  ids, mask = chat.encode(tok, MESSAGES)
  assert tok.decode(ids, skip_special_tokens=False) == chat.render(MESSAGES)
  trained = [i for i, m in zip(ids, mask) if m]
  assert tok.decode(trained, skip_special_tokens=False) == "Nzuri, asante.<|end|>\n"
  assert special_tokens.IDS[special_tokens.ASSISTANT] in ids
  rows = chat.to_rows([(ids, mask)], 64)
  assert rows["mask"].sum() == sum(mask[1:])
  with pytest.raises(ValueError, match="raise --seq-len"):
    chat.to_rows([(ids, mask)], 4)


@pytest.fixture(scope="module")
def base_run(tiny_records, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("align") / "base")
  config = tiny_config(*tiny_records, **{"train.num_steps": 6, "train.checkpoint_every": 6})
  assert train.run(config, workdir) == 0
  return workdir


def _rows(workdir):
  return [json.loads(l) for l in open(os.path.join(workdir, "logs", "training.jsonl"))]


def test_sft_then_dpo_learn_and_write_loadable_runs(base_run, tmp_path):
  sft_dir, dpo_dir = str(tmp_path / "sft"), str(tmp_path / "dpo")
  assert align.main(["--stage", "sft", "--checkpoint", base_run, "--workdir", sft_dir,
                     "--steps", "30", "--lr", "3e-3", "--seq-len", "256"]) == 0
  rows = _rows(sft_dir)
  assert np.mean([r["loss"] for r in rows[-5:]]) < np.mean([r["loss"] for r in rows[:5]]) - 0.5
  assert align.main(["--stage", "dpo", "--checkpoint", sft_dir, "--workdir", dpo_dir,
                     "--steps", "25", "--lr", "1e-3", "--seq-len", "256", "--beta", "0.5"]) == 0
  rows = _rows(dpo_dir)
  assert rows[0]["loss"] == pytest.approx(np.log(2), abs=1e-3)  # policy == reference at start
  assert rows[-1]["loss"] < 0.6 and rows[-1]["reward_accuracy"] >= 0.75
  config, model = checkpoint.load_model(dpo_dir)
  assert config.align.stage == "dpo"
  assert len(generate.generate_ids(model, [2, 4, 5], 5, eos_id=None)) == 5
  # rerunning the same command (e.g. `make demo` twice) is a no-op; other settings are refused
  before = open(os.path.join(dpo_dir, "logs", "training.jsonl")).read()
  dpo_args = ["--stage", "dpo", "--checkpoint", sft_dir, "--workdir", dpo_dir, "--steps", "25",
              "--seq-len", "256", "--beta", "0.5"]
  assert align.main(dpo_args + ["--lr", "1e-3"]) == 0
  assert open(os.path.join(dpo_dir, "logs", "training.jsonl")).read() == before
  assert align.main(dpo_args + ["--lr", "2e-3"]) == 2


def test_bad_jsonl_line_is_named(base_run, tmp_path, capsys):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"messages": []}\n{oops\n')
  assert align.main(["--stage", "sft", "--checkpoint", base_run, "--workdir",
                     str(tmp_path / "x"), "--data", str(bad)]) == 2
  assert f"{bad}:2: not valid JSON" in capsys.readouterr().err


def test_short_flags_are_names_of_config_fields(base_run, tmp_path, capsys):
  """--steps is train.num_steps: either spelling works, both at once is refused; warmup and
  checkpoint interval follow the final length unless given."""
  def config(*extra):
    args = argparse.Namespace(stage="sft", checkpoint=base_run, data=str(tmp_path / "d.jsonl"),
                              steps=None, lr=None, batch_size=None, seq_len=None, seed=None,
                              beta=None)
    for flag, value in zip(extra[::2], extra[1::2]):
      setattr(args, flag, value)
    return args

  c = align.config_for(config(), ["--config.train.num_steps=60"])
  assert (c.train.num_steps, c.optim.warmup_steps, c.train.checkpoint_every) == (60, 6, 60)
  c = align.config_for(config("steps", 30), ["--config.optim.warmup_steps=2"])
  assert (c.train.num_steps, c.optim.warmup_steps, c.optim.lr) == (30, 2, 1e-4)
  with pytest.raises(config_lib.ConfigError, match="--steps and --config.train.num_steps"):
    align.config_for(config("steps", 30), ["--config.train.num_steps=60"])
  assert align.main(["--stage", "sft", "--checkpoint", base_run, "--workdir", str(tmp_path / "x"),
                     "--lr", "1e-3", "--config.optim.lr=2e-3"]) == 2
  assert "--lr and --config.optim.lr set the same field" in capsys.readouterr().err


def _losses(workdir):
  return {r["step"]: r["loss"] for r in _rows(workdir) if "loss" in r}


def test_sft_resume_is_bit_exact_and_grain_workers_change_nothing(base_run, tmp_path):
  args = ["--stage", "sft", "--checkpoint", base_run, "--steps", "8", "--lr", "1e-3",
          "--config.train.checkpoint_every=4", "--config.train.keep_last=3"]
  full, cut, workers = (str(tmp_path / n) for n in ("full", "cut", "workers"))
  assert align.main([*args, "--workdir", full]) == 0
  shutil.copytree(full, cut)
  shutil.rmtree(os.path.join(cut, "checkpoints", "8"))
  assert align.main([*args, "--workdir", cut, "--resume", f"{cut}/checkpoints/4"]) == 0
  assert [_losses(cut)[s] for s in range(5, 9)] == [_losses(full)[s] for s in range(5, 9)]
  assert align.main([*args, "--workdir", workers, "--config.data.worker_count=2"]) == 0
  assert _losses(workers) == _losses(full)


def test_sigterm_during_dpo_saves_and_the_resumed_run_matches(base_run, tmp_path):
  def cmd(workdir):
    return [sys.executable, "-m", "swahili100.cli", "align", "--stage", "dpo", "--checkpoint",
            base_run, "--workdir", workdir, "--steps", "30", "--lr", "1e-3", "--beta", "0.5",
            "--config.train.log_every=1"]
  ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
  assert subprocess.run(cmd(ref), cwd=REPO, capture_output=True, timeout=300).returncode == 0
  proc = subprocess.Popen(cmd(cut), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  try:
    log = os.path.join(cut, "logs", "training.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.exists(log) and len(_rows(cut)) >= 5):
      assert proc.poll() is None
      time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0 and "preemption: saved" in out, out[-2000:]
  (saved,) = [int(d) for d in os.listdir(os.path.join(cut, "checkpoints")) if d.isdigit()]
  assert 5 <= saved < 30
  done = subprocess.run(cmd(cut), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and f"resumed from {cut}/checkpoints/{saved}" in done.stdout
  want, got = _losses(ref), _losses(cut)
  assert [got[s] for s in range(saved + 1, 31)] == [want[s] for s in range(saved + 1, 31)]
