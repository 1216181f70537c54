"""HF export: logits, greedy generation and tokenizer equal the project's, no custom code."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from flax import nnx

from swahili100 import generate, special_tokens
from swahili100 import model as model_lib
from swahili100.export import hf
from tests.conftest import REPO, SHARED_DATA, SENTENCES, tiny_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def random_model(config, seed=0, scale=4.0):
  """A random Transformer with weights `scale` x the init (distinct logits, no argmax ties).
  Zero-initialised matrices (model.zero_init_out) are drawn too, so every layer shows in the
  logits."""
  m = model_lib.Transformer(config.model, rngs=nnx.Rngs(seed))
  params = nnx.state(m, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  new = [(x if x.any() else 0.02 * jax.random.normal(k, x.shape)) * scale if x.ndim == 2
         else x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  nnx.update(m, jax.tree.unflatten(treedef, new))
  return m


def export_config(tiny_records, **overrides):
  records_dir, tok_path, vocab = tiny_records
  base = {"model.d_model": 64, "model.head_dim": 16, "model.mlp_dim": 128, "model.num_heads": 4,
          "model.num_kv_heads": 2}
  base.update(overrides)
  return tiny_config(records_dir, tok_path, vocab, **base)


def swahili_prompts(n=4) -> list[str]:
  """Real Swahili text: the first sw-news documents when ../shared/data is there, else inline."""
  path = SHARED_DATA / "sw-news"
  files = sorted(path.glob("part-*.jsonl.gz")) if path.exists() else []
  if not files:
    return SENTENCES[:n]
  import gzip
  with gzip.open(files[0], "rt", encoding="utf-8") as f:
    return [json.loads(next(f))["text"][:300] for _ in range(n)]


def torch_logits(hf_model, ids_BT):
  with torch.no_grad():
    return hf_model(torch.as_tensor(np.asarray(ids_BT), dtype=torch.long)).logits.numpy()


@pytest.mark.parametrize("tie,kv_heads", [(True, 4), (False, 2), (True, 1), (False, 1)])
def test_hf_logits_match_jax(tiny_records, tmp_path, tie, kv_heads):
  config = export_config(tiny_records, **{"model.tie_embeddings": tie,
                                          "model.num_kv_heads": kv_heads})
  model = random_model(config)
  out = hf.export_hf(config, model, config.data.tokenizer, str(tmp_path / "hf"))
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert type(hf_model).__name__ == "LlamaForCausalLM"
  assert hf_model.config.tie_word_embeddings is tie
  assert hf_model.config.num_attention_heads // hf_model.config.num_key_value_heads == 4 // kv_heads
  import safetensors
  with safetensors.safe_open(f"{out}/model.safetensors", "np") as f:
    assert ("lm_head.weight" in f.keys()) is not tie
  ids_BT = np.random.RandomState(0).randint(0, config.model.vocab_size, (2, 23))
  tok = tokenizers.Tokenizer.from_file(config.data.tokenizer)
  real = [tok.encode(t).ids[:40] for t in swahili_prompts(2)]
  for ids in [ids_BT] + [np.asarray([r]) for r in real]:
    want = np.asarray(model(jnp.asarray(ids)))
    got = torch_logits(hf_model, ids)
    assert np.abs(want).max() > 0.5  # logits far from zero, so the bound means something
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_greedy_generation_and_tokenizer_match(tiny_records, tmp_path):
  config = export_config(tiny_records)
  model = random_model(config, seed=3)
  out = hf.export_hf(config, model, config.data.tokenizer, str(tmp_path / "hf"))
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  hf_tok = transformers.AutoTokenizer.from_pretrained(out)
  tok = tokenizers.Tokenizer.from_file(config.data.tokenizer)

  texts = swahili_prompts(4) + [
      "Ng'ombe wa mzee Juma — «habari»? 2026!", f"{special_tokens.USER}Habari yako?"
      f"{special_tokens.END_OF_TURN}{special_tokens.ASSISTANT}"]
  for text in texts:
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text).ids, text
  assert hf_tok.bos_token_id == special_tokens.BOS_ID
  assert hf_tok.eos_token_id == special_tokens.EOS_ID
  assert hf_tok.pad_token_id == special_tokens.PAD_ID
  chat = hf_tok.apply_chat_template([{"role": "user", "content": "Habari"}], tokenize=False,
                                    add_generation_prompt=True)
  assert chat == "<|user|>\nHabari<|end|>\n<|assistant|>\n"
  from swahili100.align import chat as chat_lib
  convo = [{"role": "system", "content": "Jibu kwa Kiswahili."},
           {"role": "user", "content": "Habari za asubuhi?"},
           {"role": "assistant", "content": "Nzuri sana, asante."},
           {"role": "user", "content": "Mji mkuu wa Tanzania ni upi?"}]
  for gen in (False, True):
    text = hf_tok.apply_chat_template(convo, tokenize=False, add_generation_prompt=gen)
    assert text == chat_lib.render(convo, add_generation_prompt=gen)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text).ids

  prompt = tok.encode(swahili_prompts(1)[0]).ids[:12]
  ours = generate.generate_ids(model, prompt, 32, temperature=0.0, eos_id=None)
  with torch.no_grad():
    theirs = hf_model.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32,
                               do_sample=False, eos_token_id=None, pad_token_id=1)
  assert theirs[0, len(prompt):].tolist() == ours
  assert len(set(ours)) > 1  # not a degenerate repetition

  card = Path(out, "README.md").read_text()
  assert f"{sum(p.numel() for p in hf_model.parameters()):,}" in card
  assert json.loads(Path(out, "generation_config.json").read_text())["eos_token_id"] == [0, 6]
  assert "auto_map" not in json.loads(Path(out, "config.json").read_text())


def test_export_cli_from_workdir_writes_card_from_the_run(tiny_records, tmp_path, capsys):
  """`swahili100 export --checkpoint <workdir>` (= latest step) for hf and gguf; the model card
  reads tokens seen and evaluation figures from the run's logs and eval.json."""
  from swahili100.export import main as export_main
  from tests.test_quantize import _write_run
  config = export_config(tiny_records, **{"model.tie_embeddings": False})
  model = random_model(config, seed=5)
  workdir = tmp_path / "run"
  _write_run(config, model, str(workdir))
  (workdir / "logs").mkdir()
  (workdir / "logs" / "training.jsonl").write_text("\n".join(json.dumps(r) for r in [
      {"step": 5, "loss": 5.5, "tokens_seen": 10240},
      {"step": 7, "loss": 4.25, "tokens_seen": 14336},
      {"step": 7, "eval_loss": 4.5, "eval_bpb": 1.875, "eval_tokens": 999}]) + "\n")
  (workdir / "eval.json").write_text(json.dumps({"checkpoint": "x", "tasks": {
      "xcopa": {"acc": 0.625, "acc_norm": 0.5, "n": 8, "chance": 0.5,
                "data": "hub:facebook/xcopa/sw/test.jsonl@abc123"},
      "bpb": {"bpb": 1.8125, "loss": 4.5, "data": f"records:{tiny_records[0]} (validation)"}}}))

  out = tmp_path / "hf"
  assert export_main.main(["--checkpoint", str(workdir), "--format", "hf", "--output",
                           str(out)]) == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed["written"][str(out)] > 0
  cfg = json.loads((out / "config.json").read_text())
  assert cfg["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
  assert "rope_theta" not in cfg and cfg["architectures"] == ["LlamaForCausalLM"]
  card = (out / "README.md").read_text()
  assert "step 7, 14,336 tokens seen, last training loss 4.2500" in card
  assert "eval_bpb 1.875" in card and "| xcopa | acc | 0.625 |" in card
  assert "| xcopa | chance | 0.5 |" in card
  assert "train: 300 documents" in card  # the records manifest's train split
  # the Hub's evaluation results: eval.json's figures, read back by huggingface_hub's own reader
  from huggingface_hub import ModelCard
  results = ModelCard.load(str(out / "README.md")).data.eval_results
  assert sorted((r.task_name, r.metric_type, r.metric_value, r.dataset_type, r.dataset_split)
                for r in results) == [
      ("bpb", "bits_per_byte", 1.8125, "swahili100-records", "validation"),
      ("xcopa", "acc_norm", 0.5, "facebook/xcopa", None),
      ("xcopa", "accuracy", 0.625, "facebook/xcopa", None)]
  assert [r.dataset_revision for r in results if r.task_name == "xcopa"] == ["abc123"] * 2
  # a card for publication names no absolute path of this machine
  assert str(tmp_path) not in card and "/tmp" not in card and str(REPO) not in card
  assert "**pretraining** (`this run`)" in card
  # nothing the run did not record: no corpus or benchmark is claimed
  assert "sources of the training data are not recorded" in card
  for claim in ("Maneno Yetu", "MasakhaNEWS", "AfriSenti"):
    assert claim not in card
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json",
               "model.safetensors"):
    assert (out / name).exists(), name
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
  ids = np.asarray([[2, 40, 41, 42, 43]])
  np.testing.assert_allclose(torch_logits(hf_model, ids), np.asarray(model(jnp.asarray(ids))),
                             atol=1e-4, rtol=0)

  gg = tmp_path / "gguf"
  assert export_main.main(["--checkpoint", f"{workdir}/checkpoints/7", "--format", "gguf",
                           "--output", str(gg), "--gguf-type", "q8_0"]) == 0
  assert (gg / "model-q8_0.gguf").stat().st_size > 0 and (gg / "hf" / "config.json").exists()


def test_qk_norm_exports_as_qwen3_and_refusals_name_the_switch(tiny_records, tmp_path, capsys):
  """The recipe switches with a faithful target (qk_norm, untied head, zero_init_out) export to
  Qwen3ForCausalLM with equal logits and greedy tokens; ONNX runs the same graph, GGUF writes
  qwen3; a switch no format runs (relu2) is refused by `swahili100 export`, exit 2, by name."""
  from swahili100.export import main as export_main
  from swahili100.export import onnx_export
  from tests.test_quantize import _write_run
  config = export_config(tiny_records, **{"model.qk_norm": True, "model.tie_embeddings": False,
                                          "model.zero_init_out": True})
  model = random_model(config, seed=7)
  workdir = tmp_path / "run"
  _write_run(config, model, str(workdir))
  out = tmp_path / "hf"
  assert export_main.main(["--checkpoint", str(workdir), "--format", "hf", "--output",
                           str(out)]) == 0
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
  assert type(hf_model).__name__ == "Qwen3ForCausalLM"
  ids = np.random.RandomState(1).randint(0, config.model.vocab_size, (2, 19))
  want = np.asarray(model(jnp.asarray(ids)))
  np.testing.assert_allclose(torch_logits(hf_model, ids), want, atol=1e-4, rtol=0)
  prompt = ids[0, :8].tolist()
  ours = generate.generate_ids(model, prompt, 16, temperature=0.0, eos_id=None)
  with torch.no_grad():
    theirs = hf_model.generate(torch.tensor([prompt]), max_new_tokens=16, min_new_tokens=16,
                               do_sample=False, eos_token_id=None, pad_token_id=1)
  assert theirs[0, len(prompt):].tolist() == ours
  pytest.importorskip("onnxscript")
  path = onnx_export.export_onnx(str(out), str(tmp_path / "model.onnx"))
  np.testing.assert_allclose(onnx_export.run(path, ids), want, atol=1e-4, rtol=0)

  assert export_main.main(["--checkpoint", str(workdir), "--format", "gguf", "--output",
                           str(tmp_path / "gguf"), "--gguf-type", "f32"]) == 0
  assert (tmp_path / "gguf" / "model-f32.gguf").stat().st_size > 0  # qwen3: test_export_gguf
  capsys.readouterr()
  relu2 = export_config(tiny_records, **{"model.mlp_act": "relu2"})
  _write_run(relu2, random_model(relu2), str(tmp_path / "relu2"))
  for fmt in ("hf", "onnx", "gguf"):
    assert export_main.main(["--checkpoint", str(tmp_path / "relu2"), "--format", fmt,
                             "--output", str(tmp_path / f"r-{fmt}")]) == 2
    assert "model.mlp_act='relu2'" in capsys.readouterr().err
    assert not (tmp_path / f"r-{fmt}").exists()
