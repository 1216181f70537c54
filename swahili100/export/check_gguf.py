"""`make check-gguf`: load our GGUF in llama.cpp (llama-cpp-python) and compare with the HF model.

    python -m swahili100.export.check_gguf [--checkpoint runs/x/checkpoints/N | --hf-dir DIR]
        [--gguf-dir DIR] [--json report.json]
    python -m swahili100.export.check_gguf --qk-norm    # the self-check model as Qwen3 (qwen3)

Checks that llama.cpp tokenizes Swahili sentences exactly as the HF tokenizer does and that the
F32 GGUF's logits match the HF model's (max abs diff <= 1e-2); reports Q8_0 and Q4_0 deviations.
Without --checkpoint/--hf-dir it exports a random-init model with a small byte-level BPE trained
on built-in Swahili text. Exit status 1 when a check fails. Not part of `make test` (it needs
llama-cpp-python, built from source).
"""

import argparse
import glob
import gzip
import json
import os
import sys
import tempfile

import jax
import ml_collections
import numpy as np
import tokenizers
from flax import nnx
from tokenizers import decoders, models, pre_tokenizers, trainers

from swahili100 import inference
from swahili100 import model as model_lib
from swahili100 import special_tokens
from swahili100.export import gguf_export, hf

SENTENCES = [
    "Habari za asubuhi? Mimi ni mwanafunzi wa chuo kikuu cha Dar es Salaam.",
    "Serikali ya Tanzania imetangaza mpango mpya wa elimu bure kwa watoto wote.",
    "Mvua kubwa iliyonyesha jana usiku imesababisha mafuriko katika mikoa mitatu.",
    "Wakulima wa kahawa wanasema bei ya soko imepanda kwa asilimia 12 mwaka huu.",
    "Ng'ombe wa mzee Juma walipotea porini lakini walirudi nyumbani asubuhi.",
    "Rais alisema: \"Tutajenga barabara mpya 2025!\" — watu   walishangilia sana.\n\nAsante.",
]
F32_TOL = 1e-2


def _sw_news(root: str | None, n: int) -> list[str]:
  """The first `n` documents of the last shard under `root` (`--texts`: more text for the
  tokenization check), none without it."""
  files = sorted(glob.glob(os.path.join(root, "*.jsonl.gz"))) if root else []
  if not files:
    return []
  with gzip.open(files[-1], "rt", encoding="utf-8") as f:
    return [json.loads(next(f))["text"] for _ in range(n)]


def _random_hf_dir(out_dir: str, qk_norm: bool = False) -> str:
  """A random-init model + byte-level BPE on SENTENCES, exported to HF (for a self-check).
  Norm scales are random too, so a scale written to the wrong tensor shows in the logits."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(SENTENCES * 10, trainers.BpeTrainer(
      vocab_size=512, special_tokens=list(special_tokens.ALL), show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok_path = os.path.join(out_dir, "tok.json")
  tok.save(tok_path)
  c = ml_collections.ConfigDict({"model": dict(
      vocab_size=512, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
      mlp_dim=128, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False, init_std=0.02,
      dtype="float32", attention="reference", remat="none", qk_norm=qk_norm),
      "data": {"seq_len": 256}})
  m = model_lib.Transformer(c.model, rngs=nnx.Rngs(0))
  params = nnx.state(m, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [x * 4.0 if x.ndim == 2 else x * jax.random.uniform(k, x.shape, x.dtype, 0.5, 1.5)
            for x, k in zip(leaves, keys)]
  nnx.update(m, jax.tree.unflatten(treedef, leaves))
  return hf.export_hf(c, m, tok_path, os.path.join(out_dir, "hf"))


def _hf_dir(args, tmp: str) -> str:
  if args.hf_dir:
    return args.hf_dir
  if args.checkpoint:
    config, model = inference.load(args.checkpoint)
    return hf.export_hf(config, model, args.tokenizer or config.data.tokenizer,
                        os.path.join(tmp, "hf"))
  return _random_hf_dir(tmp, qk_norm=args.qk_norm)


def _tokenizer_mismatches(llm, hf_tok, texts: list[str]) -> list[dict]:
  """Where llama.cpp's tokens differ from the HF tokenizer's, per text (first 8 from there)."""
  mismatches = []
  for text in texts:
    want = hf_tok.encode(text, add_special_tokens=False)
    got = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    if got != list(want):
      at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                min(len(got), len(want)))
      mismatches.append({"text": text[:120], "first_diff": at, "hf": want[at:at + 8],
                         "llama.cpp": got[at:at + 8]})
  return mismatches


def _logit_diffs(llm, hf_tok, hf_model) -> dict:
  """llama.cpp vs transformers logits at every position of SENTENCES."""
  import torch  # noqa: PLC0415
  diffs, agree, peak = [], [], 0.0
  for text in SENTENCES:
    ids = hf_tok.encode(text, add_special_tokens=False)
    llm.reset()
    llm.eval(ids)
    got = np.asarray(llm.scores[:len(ids)], np.float32)
    with torch.no_grad():
      want = hf_model(torch.tensor([ids])).logits[0].numpy()
    diffs.append(float(np.abs(got - want).max()))
    agree.append(got.argmax(-1) == want.argmax(-1))
    peak = max(peak, float(np.abs(want).max()))
  return {"max_abs_logit_diff": max(diffs),
          "argmax_agreement": float(np.concatenate(agree).mean()), "max_abs_logit": peak}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="check_gguf", description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", default=None)
  parser.add_argument("--hf-dir", default=None)
  parser.add_argument("--gguf-dir", default=None,
                      help="use its model-<type>.gguf files (from `swahili100 export --format "
                      "gguf`) where present; the other types are written from --hf-dir")
  parser.add_argument("--tokenizer", default=None)
  parser.add_argument("--qk-norm", action="store_true",
                      help="without --checkpoint/--hf-dir: the self-check model with model.qk_norm "
                      "(Qwen3 in HF, qwen3 in GGUF)")
  parser.add_argument("--json", default=None, help="also write the figures here")
  parser.add_argument("--texts", default=None,
                      help="a folder of *.jsonl.gz shards whose first 50 documents of the last "
                      "shard join the tokenization check (e.g. ../shared/data/sw-news)")
  args = parser.parse_args(argv)
  try:
    import llama_cpp  # noqa: PLC0415
  except ImportError:
    print("check_gguf: llama-cpp-python is not installed (make check-gguf installs it)",
          file=sys.stderr)
    return 2
  from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

  tmp = tempfile.mkdtemp(prefix="check_gguf_")
  hf_dir = _hf_dir(args, tmp)
  hf_tok = AutoTokenizer.from_pretrained(hf_dir)
  hf_model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
  texts = SENTENCES + ["<|user|>Habari yako?<|end|><|assistant|>"] + _sw_news(args.texts, 50)
  with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
    arch = gguf_export.architecture(json.load(f))[0]
  report = {"llama_cpp_python": llama_cpp.__version__, "gguf_architecture": arch,
            "tokenized_texts": len(texts)}
  ok = True
  for gtype in ("f32", "f16", "q8_0", "q4_0"):
    given = os.path.join(args.gguf_dir, f"model-{gtype}.gguf") if args.gguf_dir else None
    if given and os.path.exists(given):
      path = given
    elif gtype == "f16":
      continue  # reported only when the export wrote it
    else:
      path = gguf_export.export_gguf(hf_dir, os.path.join(tmp, f"m-{gtype}.gguf"), gtype)
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, logits_all=True, verbose=False,
                          n_threads=2, n_batch=256)
    r = report[gtype] = {"file": path, "file_bytes": os.path.getsize(path),
                         "tokenizer_mismatches": _tokenizer_mismatches(llm, hf_tok, texts),
                         **_logit_diffs(llm, hf_tok, hf_model)}
    ok &= not r["tokenizer_mismatches"] and not (gtype == "f32" and
                                                 r["max_abs_logit_diff"] > F32_TOL)
    del llm
  report["ok"] = ok
  print(json.dumps(report, indent=2))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
