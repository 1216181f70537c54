"""`make demo`: the whole pipeline (phases 1-13) on the embedded sample corpus, on CPU.

    python -m swahili100.demo --output demo_out

Each phase runs as its own `swahili100 <phase>` command, exactly as a user would type it, and the
demo prints the command, its time and where its output is. It ends with `report.md`, a summary of
every phase (documents kept and dropped, tokenizer figures, losses, export files).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

VOCAB_SIZE = 2048  # suits the sample corpus; configs/debug.py uses the same


def phases(out: str) -> list[tuple[str, list[str], str]]:
  """(name, swahili100 arguments, output path) for every phase, in pipeline order."""
  d = lambda *p: os.path.join(out, *p)  # noqa: E731
  ckpt = d("runs", "debug")
  final = d("runs", "dpo")  # the aligned model is the one quantized and exported
  overrides = [f"--config.data.records_dir={d('records')}",
               f"--config.data.tokenizer={d('tokenizer', 'swahili_bpe.json')}",
               f"--config.model.vocab_size={VOCAB_SIZE}"]
  return [
      ("download", ["download", "--source", "sample", "--output", d("raw")], d("raw")),
      ("clean", ["clean", "--input", d("raw"), "--output", d("cleaned")], d("cleaned")),
      ("dedup", ["dedup", "--input", d("cleaned"), "--output", d("deduped"),
                 "--threshold", "0.8"], d("deduped")),
      ("filter", ["filter", "--input", d("deduped"), "--output", d("filtered")], d("filtered")),
      ("train-tokenizer", ["train-tokenizer", "--input", d("filtered"), "--vocab-size",
                           str(VOCAB_SIZE), "--output", d("tokenizer")], d("tokenizer")),
      ("tokenize", ["tokenize", "--input", d("filtered"), "--tokenizer",
                    d("tokenizer", "swahili_bpe.json"), "--output", d("records"),
                    "--validation-fraction", "0.05", "--num-shards", "2"], d("records")),
      ("train", ["train", "--config", "configs/debug.py", "--workdir", ckpt, *overrides], ckpt),
      ("generate", ["generate", "--checkpoint", ckpt, "--prompt", "Habari za leo",
                    "--max-new-tokens", "24", "--temperature", "0"], ckpt),
      ("evaluate", ["evaluate", "--checkpoint", ckpt, "--metric", "all",
                    "--output", d("eval.json")], d("eval.json")),
      ("align-sft", ["align", "--stage", "sft", "--checkpoint", ckpt, "--workdir",
                     d("runs", "sft"), "--steps", "30", "--lr", "3e-4"], d("runs", "sft")),
      ("align-dpo", ["align", "--stage", "dpo", "--checkpoint", d("runs", "sft"), "--workdir",
                     d("runs", "dpo"), "--steps", "30", "--lr", "1e-4"], d("runs", "dpo")),
      ("chat", ["generate", "--checkpoint", final, "--chat", "--prompt",
                "Nipe ushauri mmoja kuhusu kilimo cha mahindi.", "--max-new-tokens", "40",
                "--temperature", "0"], final),
      ("quantize", ["quantize", "--checkpoint", final, "--precision", "int4", "--group-size",
                    "64", "--output", d("quantized-int4")], d("quantized-int4")),
      ("export-hf", ["export", "--checkpoint", final, "--format", "hf", "--output",
                     d("export", "hf")], d("export", "hf")),
      ("export-onnx", ["export", "--checkpoint", final, "--format", "onnx", "--quantize", "int4",
                       "--output", d("export", "onnx")], d("export", "onnx")),
      ("export-gguf", ["export", "--checkpoint", final, "--format", "gguf", "--output",
                       d("export", "gguf")], d("export", "gguf")),
  ]


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def report(out: str, timings: list[tuple[str, float, str]]) -> str:
  """Writes `<out>/report.md`: every phase's time and headline figures."""
  lines = ["# Swahili-100 demo report", "", "| phase | seconds | output |", "|---|---|---|"]
  lines += [f"| {name} | {secs:.1f} | `{path}` |" for name, secs, path in timings]
  for phase in ("raw", "cleaned", "deduped", "filtered", "records"):
    stats = _read_json(os.path.join(out, phase, "stats.json"))
    if stats:
      lines += ["", f"## {phase}/stats.json", "", "```json", json.dumps(stats, indent=1)[:3000],
                "```"]
  tok = _read_json(os.path.join(out, "tokenizer", "report.json"))
  if tok:
    lines += ["", "## tokenizer", "", "```json", json.dumps(tok, indent=1)[:2000], "```"]
  log = os.path.join(out, "runs", "debug", "logs", "training.jsonl")
  if os.path.exists(log):
    with open(log, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    losses = [r for r in rows if "loss" in r]
    if losses:
      lines += ["", "## training", "",
                f"first logged loss {losses[0]['loss']:.3f} at step {losses[0]['step']}, "
                f"last {losses[-1]['loss']:.3f} at step {losses[-1]['step']}"]
  ev = _read_json(os.path.join(out, "eval.json"))
  if ev:
    lines += ["", "## evaluation (runs/debug, validation split)", "",
              f"loss {ev['loss']:.4f}, bits/byte {ev['bpb']:.4f}"
              + (f", XCOPA-sw accuracy {ev['xcopa_accuracy']:.3f} on {ev['xcopa_items']} items"
                 if "xcopa_accuracy" in ev else "")]
  q = _read_json(os.path.join(out, "quantized-int4", "quant_report.json"))
  if q:
    lines += ["", "## int4 quantization (runs/dpo, group 64)", "",
              f"bits/byte {q['before']['bpb']:.4f} -> {q['after']['bpb']:.4f} "
              f"({q['bpb_increase_pct']:+.2f} %), weights {q['float_weight_bytes']:,} -> "
              f"{q['quant_weight_bytes']:,} bytes"]
  exports = [(fmt, os.path.join(out, "export", fmt)) for fmt in ("hf", "onnx", "gguf")]
  exports = [(fmt, p) for fmt, p in exports if os.path.isdir(p)]
  if exports:
    lines += ["", "## exports", ""]
    for fmt, p in exports:
      files = sorted(f for f in os.listdir(p) if os.path.isfile(os.path.join(p, f)))
      lines.append(f"- {fmt}: `{p}` ({', '.join(files)})")
  path = os.path.join(out, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return path


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--output", default="demo_out", help="folder for every phase's output")
  p.add_argument("--only", nargs="*", help="run only these phases (names as printed)")
  args = p.parse_args(argv)
  os.makedirs(args.output, exist_ok=True)
  timings = []
  for name, cmd, path in phases(args.output):
    if args.only and name not in args.only:
      continue
    full = [sys.executable, "-m", "swahili100.cli", *cmd]
    print(f"\n=== {name}: swahili100 {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    rc = subprocess.call(full)
    secs = time.perf_counter() - start
    if rc != 0:
      print(f"demo: phase {name!r} failed (exit {rc}) after {secs:.1f}s; rerun it alone with\n"
            f"  swahili100 {shlex.join(cmd)}", file=sys.stderr)
      return rc
    print(f"--- {name} done in {secs:.1f}s -> {path}", flush=True)
    timings.append((name, secs, path))
  path = report(args.output, timings)
  print("\nDemo finished. Outputs:")
  for name, secs, out_path in timings:
    print(f"  {name:<16} {secs:7.1f}s  {out_path}")
  print(f"  report           {path}")
  for fmt in ("hf", "onnx", "gguf"):
    folder = os.path.join(args.output, "export", fmt)
    if os.path.isdir(folder):
      files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
      print(f"  export {fmt:<9} {folder}: {', '.join(files)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
