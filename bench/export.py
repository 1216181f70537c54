"""Export and quantization figures for a trained checkpoint: times, sizes, parity, int4 cost.

    # 1. a small model on ../shared/data/sw-news (tokenizer + records, then `swahili100 train`)
    python bench/export.py prepare --out /tmp/exp_sw [--vocab 4096] [--val-docs 600]
    python -m swahili100.train --config configs/debug.py --workdir /tmp/exp_sw/run \
        --config.data.records_dir=/tmp/exp_sw/records \
        --config.data.tokenizer=/tmp/exp_sw/swahili_bpe.json --config.model.vocab_size=4096 ...
    # 2. the figures
    python bench/export.py measure --checkpoint /tmp/exp_sw/run --out /tmp/exp_sw/bench \
        [--eval-batches 16] [--json figures.json]

`measure` times `swahili100 export` for hf, onnx (+ int4 MatMulNBits) and gguf (f32, f16, q8_0,
q4_0), lists file sizes, the max |logit diff| against the JAX model of HF, ONNX and each GGUF's
dequantized weights (run through the HF model, since GGUF needs llama.cpp to execute: see
`make check-gguf`), and the JAX int4/int8 quantization cost (validation bits-per-byte: rtn vs
mse clip search vs GPTQ on training batches, group sizes 32/64/128) beside ONNX int4's on the
same batches. Peers are printed as ratios: ONNX/HF export time, int4/f32 file size,
quantized/float bpb.
"""

import argparse
import glob
import gzip
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

SW_NEWS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sw-news")


def prepare(args):
  """Byte-level BPE (NFC, GPT-2 split, the project's special tokens) + token records."""
  from data_pipeline import train_tokenizer  # noqa: PLC0415
  from swahili100 import records, special_tokens  # noqa: PLC0415
  files = sorted(glob.glob(os.path.join(SW_NEWS, "part-*.jsonl.gz")))
  if not files:
    sys.exit(f"prepare: no {SW_NEWS}/part-*.jsonl.gz (../shared/data/sw-news)")
  docs = []
  for path in files:
    with gzip.open(path, "rt", encoding="utf-8") as f:
      docs += [json.loads(line)["text"] for line in f]
  val, train = docs[:args.val_docs], docs[args.val_docs:]
  os.makedirs(args.out, exist_ok=True)
  tok_path = os.path.join(args.out, "swahili_bpe.json")
  t0 = time.perf_counter()
  tok, trainer = train_tokenizer.build(args.vocab, min_frequency=0)  # the project's BPE setup
  tok.train_from_iterator(train, trainer)
  tok.save(tok_path)
  print(f"tokenizer {tok_path}: {tok.get_vocab_size()} tokens in {time.perf_counter() - t0:.0f}s")
  dtype = records.dtype_for_vocab(tok.get_vocab_size())
  rec_dir = os.path.join(args.out, "records")
  os.makedirs(rec_dir, exist_ok=True)
  splits = {}
  for split, split_docs, n in (("train", train, 4), ("validation", val, 1)):
    names, ntok = [], 0
    for s in range(n):
      name = records.shard_name(split, s, n)
      part = split_docs[s::n]
      with records.RecordWriter(os.path.join(rec_dir, name), dtype) as w:
        for enc in tok.encode_batch(part):
          w.write(enc.ids + [special_tokens.EOS_ID])
          ntok += len(enc.ids) + 1
      names.append(name)
    splits[split] = records.SplitInfo(names, len(split_docs), ntok,
                                      sum(len(d.encode()) for d in split_docs))
    print(f"{split}: {len(split_docs)} docs, {ntok} tokens")
  records.write_manifest(rec_dir, records.Manifest(
      dtype=dtype, tokenizer_file=tok_path, tokenizer_sha256=records.sha256_file(tok_path),
      vocab_size=tok.get_vocab_size(), special_tokens=dict(special_tokens.IDS),
      eos_id=special_tokens.EOS_ID, pad_id=special_tokens.PAD_ID, splits=splits))


def _timed(fn, *a, **k):
  t0 = time.perf_counter()
  out = fn(*a, **k)
  return out, time.perf_counter() - t0


def _gguf_dequant_state_dict(path, hf_sd, n_head, n_kv):
  """HF-layout float32 tensors from a GGUF (dequantized, q/k rows un-permuted)."""
  import gguf  # noqa: PLC0415
  from swahili100.export import gguf_export  # noqa: PLC0415
  inv = {v: k for k, v in gguf_export.HF_TO_GGUF.items()}
  out = dict(hf_sd)
  for t in gguf.GGUFReader(path).tensors:
    w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    w = w.reshape([int(d) for d in reversed(t.shape.tolist())])
    name = t.name
    if name == "token_embd.weight":
      key = "model.embed_tokens.weight"
    elif name == "output_norm.weight":
      key = "model.norm.weight"
    elif name == "output.weight":
      key = "lm_head.weight"
    else:
      _, i, g, _ = name.split(".")
      key = f"model.layers.{i}.{inv[g]}.weight"
      if g in ("attn_q", "attn_k"):  # undo permute_rope (the inverse swaps back)
        h = n_head if g == "attn_q" else n_kv
        w = w.reshape(h, w.shape[0] // h // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    out[key] = w
  return out


def measure(args):
  import jax.numpy as jnp  # noqa: PLC0415
  import tokenizers  # noqa: PLC0415
  import torch  # noqa: PLC0415
  from safetensors.numpy import load_file  # noqa: PLC0415
  from transformers import AutoModelForCausalLM  # noqa: PLC0415
  from swahili100 import checkpoint, config_lib, lm  # noqa: PLC0415
  from swahili100.evals import bpb  # noqa: PLC0415
  from swahili100.export import gguf_export, hf, onnx_export, quantize  # noqa: PLC0415
  torch.set_num_threads(2)
  config, model = checkpoint.load_model(args.checkpoint)
  workdir, step = config_lib.split_path(args.checkpoint)
  tok = tokenizers.Tokenizer.from_file(config.data.tokenizer)
  out = args.out
  fig = {"checkpoint": args.checkpoint, "model": config.model.to_dict()}

  # parity inputs: real Swahili validation-like text (sw-news shard 15) and random ids
  with gzip.open(sorted(glob.glob(os.path.join(SW_NEWS, "part-*.jsonl.gz")))[-1], "rt") as f:
    texts = [json.loads(next(f))["text"] for _ in range(4)]
  ids_BT = np.asarray([tok.encode(t).ids[:96] for t in texts])
  rand_BT = np.random.RandomState(0).randint(0, config.model.vocab_size, (2, 33))
  jax_logits = {k: np.asarray(model(jnp.asarray(v))) for k, v in
                (("real", ids_BT), ("random", rand_BT))}

  def diff(fn):
    return max(float(np.abs(fn(v) - jax_logits[k]).max()) for k, v in
               (("real", ids_BT), ("random", rand_BT)))

  hf_dir, t_hf = _timed(hf.export_hf, config, model, config.data.tokenizer,
                        os.path.join(out, "hf"), workdir=workdir, step=step)
  hf_model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()

  def torch_run(m):
    def run(v):
      with torch.no_grad():
        return m(torch.as_tensor(v, dtype=torch.long)).logits.numpy()
    return run

  fig["hf"] = {"export_s": t_hf,
               "bytes": os.path.getsize(os.path.join(hf_dir, "model.safetensors")),
               "max_abs_logit_diff_vs_jax": diff(torch_run(hf_model)),
               "max_abs_logit": float(np.abs(jax_logits["real"]).max())}
  onnx_path, t_onnx = _timed(onnx_export.export_onnx, hf_dir, os.path.join(out, "model.onnx"))
  q_path, t_q = _timed(onnx_export.quantize_int4, onnx_path, os.path.join(out, "model-int4.onnx"))
  fig["onnx"] = {"export_s": t_onnx, "bytes": os.path.getsize(onnx_path),
                 "max_abs_logit_diff_vs_jax": diff(lambda v: onnx_export.run(onnx_path, v)),
                 "int4_quantize_s": t_q, "int4_bytes": os.path.getsize(q_path),
                 "int4_max_abs_logit_diff_vs_jax": diff(lambda v: onnx_export.run(q_path, v))}
  hf_sd = load_file(os.path.join(hf_dir, "model.safetensors"))
  hf_cfg = hf_model.config
  fig["gguf"] = {}
  for gtype in ("f32", "f16", "q8_0", "q4_0"):
    path, t_g = _timed(gguf_export.export_gguf, hf_dir, os.path.join(out, f"model-{gtype}.gguf"),
                       gtype)
    sd = _gguf_dequant_state_dict(path, hf_sd, hf_cfg.num_attention_heads,
                                  hf_cfg.num_key_value_heads)
    m = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                      strict=False)
    if hf_cfg.tie_word_embeddings:
      m.tie_weights()
    fig["gguf"][gtype] = {"export_s": t_g, "bytes": os.path.getsize(path),
                          "dequant_max_abs_logit_diff_vs_jax": diff(torch_run(m))}

  # ONNX int4 bits-per-byte over the same validation batches as the JAX figures. ONNX takes no
  # segment ids, so rows attend across packed document boundaries; float ONNX on the same rows
  # is the peer, and the figure is the relative change.
  from swahili100 import loader  # noqa: PLC0415
  table = lm.token_bytes(config.data.tokenizer, config.model.vocab_size)
  batches = list(loader.eval_batches(config, loader.check_manifest(config), args.eval_batches))

  def onnx_bpb(path):
    nats = nbytes = 0.0
    for b in batches:
      lg = onnx_export.run(path, b["inputs"]).astype(np.float64)
      mx = lg.max(-1, keepdims=True)
      logz = np.log(np.exp(lg - mx).sum(-1)) + mx[..., 0]
      nll = logz - np.take_along_axis(lg, b["targets"][..., None], -1)[..., 0]
      nats += float((nll * b["mask"]).sum())
      nbytes += float((table[b["targets"]] * b["mask"]).sum())
    return lm.bits_per_byte(nats, nbytes)

  q64_path = onnx_export.quantize_int4(onnx_path, os.path.join(out, "model-int4-b64.onnx"), 64)
  b_f, b_q, b_q64 = onnx_bpb(onnx_path), onnx_bpb(q_path), onnx_bpb(q64_path)
  fig["onnx"]["int4_bpb_validation"] = {
      "float": b_f, "int4_block32": b_q, "int4_block64": b_q64,
      "block32_increase_pct": 100 * (b_q - b_f) / b_f,
      "block64_increase_pct": 100 * (b_q64 - b_f) / b_f,
      "int4_block64_bytes": os.path.getsize(q64_path)}

  # JAX weight-only quantization: validation bpb before/after (the `quantize` report)
  base = bpb.model_bpb(model, config, max_batches=args.eval_batches)
  fig["jax_quant"] = {"float": base}
  calib = quantize.train_batches(config, args.calib_batches)
  for bits, g, method in [(4, 64, "rtn"), (4, 64, "mse"), (4, 64, "gptq"), (4, 32, "rtn"),
                          (4, 32, "mse"), (4, 128, "rtn"), (4, 128, "mse"), (4, 128, "gptq"),
                          (8, 64, "rtn")]:
    _, m = checkpoint.load_model(args.checkpoint)
    _, t = _timed(quantize.quantize_model, m, bits, g, method, calib_batches=calib)
    r = bpb.model_bpb(m, config, max_batches=args.eval_batches)
    fig["jax_quant"][f"int{bits}-g{g}-{method}"] = {
        "bpb": r["bpb"], "loss": r["loss"], "quantize_s": t,
        "bpb_increase_pct": 100 * (r["bpb"] - base["bpb"]) / base["bpb"],
        "weight_bytes_ratio": quantize.weight_bytes(m) / quantize.weight_bytes(model)}

  print(json.dumps(fig, indent=2))
  print(f"\nratios: onnx/hf export time {t_onnx / t_hf:.2f}; int4 onnx / f32 onnx size "
        f"{fig['onnx']['int4_bytes'] / fig['onnx']['bytes']:.3f}; q4_0 / f32 gguf size "
        f"{fig['gguf']['q4_0']['bytes'] / fig['gguf']['f32']['bytes']:.3f}")
  for k, v in fig["jax_quant"].items():
    if k != "float":
      print(f"JAX {k}: bpb x{v['bpb'] / base['bpb']:.4f} ({v['bpb_increase_pct']:+.2f}%), "
            f"weights x{v['weight_bytes_ratio']:.3f}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(fig, f, indent=2)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  a = sub.add_parser("prepare")
  a.add_argument("--out", required=True)
  a.add_argument("--vocab", type=int, default=4096)
  a.add_argument("--val-docs", type=int, default=600)
  b = sub.add_parser("measure")
  b.add_argument("--checkpoint", required=True)
  b.add_argument("--out", required=True)
  b.add_argument("--eval-batches", type=int, default=16)
  b.add_argument("--calib-batches", type=int, default=8, help="gptq: training batches")
  b.add_argument("--json", default=None)
  args = p.parse_args()
  prepare(args) if args.cmd == "prepare" else measure(args)


if __name__ == "__main__":
  main()
