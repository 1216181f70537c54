"""`swahili100 export`: a checkpoint -> Hugging Face folder, ONNX or GGUF (and the Hub).

    swahili100 export --checkpoint runs/debug/checkpoints/200 --format hf --output out/hf
    swahili100 export --checkpoint runs/debug --format onnx --output out/onnx [--quantize int4]
    swahili100 export --checkpoint runs/debug --format gguf --output out/gguf --gguf-type q8_0
    ... --repo user/swahili100-debug     # then upload the output folder (token: HF_TOKEN)

`hf` is also the PyTorch export (LlamaForCausalLM, or Qwen3ForCausalLM with model.qk_norm;
safetensors; GGUF follows: llama or qwen3); a model switch that a format cannot run is refused
by name (export/hf.py).
`onnx` and `gguf` write the HF folder first (under OUTPUT/hf) and convert from it, so all formats share one set of weights.
`--checkpoint` and `--output` may be gs:// URLs.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from swahili100 import checkpoint, config_lib, fs, inference
from swahili100.export import gguf_export, hf, hub, onnx_export

FORMATS = ("hf", "torch", "onnx", "gguf")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="swahili100 export", description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="<workdir>/checkpoints/<step>, a workdir, or a quantize folder")
  parser.add_argument("--format", choices=FORMATS, required=True)
  parser.add_argument("--output", required=True)
  parser.add_argument("--tokenizer", default=None, help="override config.data.tokenizer")
  parser.add_argument("--repo", default=None, help="upload OUTPUT to this Hub repo (user/name)")
  parser.add_argument("--private", action="store_true")
  parser.add_argument("--quantize", choices=("none", "int4"), default="none",
                      help="onnx: int4 weight-only MatMulNBits")
  parser.add_argument("--block-size", type=int, default=32, help="onnx int4 block size")
  parser.add_argument("--gguf-type", choices=("f32", "f16", "q8_0", "q4_0"), default="f16")
  args = parser.parse_args(argv)

  workdir, step = config_lib.split_path(args.checkpoint)
  try:
    config, model = inference.load(args.checkpoint)
  except checkpoint.CheckpointError as e:
    print(f"swahili100 export: error: {e}", file=sys.stderr)
    return 2
  refused = hf.unsupported(model.config, args.format)
  if refused:
    print(f"swahili100 export: error: {args.checkpoint} cannot be exported to {args.format} "
          f"without changing what it computes: {'; '.join(refused)}. Export to a format that "
          "runs it, or train with the switch off.", file=sys.stderr)
    return 2
  if "quant" in config and config.quant.get("source"):  # card figures from the source run
    workdir, step = config_lib.split_path(config.quant.source)
  if step is None:
    step = checkpoint.latest_step(workdir)
  tok_path = args.tokenizer or config.data.tokenizer
  if not fs.exists(tok_path):
    print(f"export: tokenizer {tok_path!r} (config.data.tokenizer) not found; pass --tokenizer",
          file=sys.stderr)
    return 2
  # The converters write local files; a gs:// output is written to a temporary folder first.
  with tempfile.TemporaryDirectory(prefix="swahili100-export-") as tmp:
    out = tmp if fs.is_remote(args.output) else args.output
    written, timings = export(args, config, model, fs.local_file(tok_path), out, workdir, step)
    sizes = {fs.join(args.output, os.path.relpath(p, out)) if out == tmp else p:
             (os.path.getsize(p) if os.path.isfile(p) else
              sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(p)
                  for f in files)) for p in written}
    if out == tmp:
      fs.upload_dir(tmp, args.output)
    if args.repo:
      url = hub.upload(out, args.repo, private=args.private)
      print(f"uploaded {args.output} to {args.repo}: {url}")
  print(json.dumps({"format": args.format, "written": sizes, "timings": timings}, indent=2))
  return 0


def export(args, config, model, tok_path: str, out: str, workdir: str, step: int | None):
  """Writes the format of `args` into the local folder `out`; returns (paths, timings)."""
  timings = {}
  t0 = time.perf_counter()
  hf_dir = out if args.format in ("hf", "torch") else os.path.join(out, "hf")
  hf.export_hf(config, model, tok_path, hf_dir, workdir=workdir, step=step)
  timings["hf_s"] = round(time.perf_counter() - t0, 2)
  written = [hf_dir]
  if args.format == "onnx":
    t0 = time.perf_counter()
    path = onnx_export.export_onnx(hf_dir, os.path.join(out, "model.onnx"))
    timings["onnx_s"] = round(time.perf_counter() - t0, 2)
    written.append(path)
    if args.quantize == "int4":
      t0 = time.perf_counter()
      written.append(onnx_export.quantize_int4(path, os.path.join(out, "model-int4.onnx"),
                                               args.block_size))
      timings["onnx_int4_s"] = round(time.perf_counter() - t0, 2)
  elif args.format == "gguf":
    t0 = time.perf_counter()
    written.append(gguf_export.export_gguf(
        hf_dir, os.path.join(out, f"model-{args.gguf_type}.gguf"), args.gguf_type))
    timings["gguf_s"] = round(time.perf_counter() - t0, 2)
  return written, timings


if __name__ == "__main__":
  sys.exit(main())
