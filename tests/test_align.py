"""Alignment: the chat format and its mask, SFT on assistant tokens, DPO against a reference."""

import json
import os

import jinja2
import numpy as np
import pytest
import tokenizers

from swahili100 import checkpoint, generate, special_tokens, train
from swahili100.align import chat, main as align

from conftest import tiny_config

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
