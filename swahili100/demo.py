"""`make demo`: the whole pipeline (phases 1-13) on the embedded sample corpus, on CPU.

    python -m swahili100.demo --output demo_out [--eval-data ../shared/data] [--only PHASE ...]

Each phase runs as its own `swahili100 <phase>` command, exactly as a user would type it, and the
demo prints the command, its time and where its output is. The models are evaluated on bits per
byte of the records' validation split, and on the Swahili benchmark tasks when `--eval-data`
names a folder holding their published files (xcopa-sw/val.jsonl, sib200-swh/dev.tsv,
afrisenti-swa/dev.tsv, masakhanews-swa/dev.tsv; nothing of them ships with the project). It ends
with `swahili100 report`: `<output>/report/report.html` (curves, data funnel, evaluation table
with baselines, provenance). A rerun skips what is done; outputs of an older demo format are
cleared first.
"""

import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

VOCAB_SIZE = 2048  # suits the sample corpus; configs/debug.py uses the same
FORMAT = "2"  # bumped when the demo's outputs change shape: an older demo_out is cleared
# task -> its file under --eval-data (the dev/validation splits, in their published formats)
EVAL_FILES = {"xcopa": "xcopa-sw/val.jsonl", "sib200": "sib200-swh/dev.tsv",
              "afrisenti": "afrisenti-swa/dev.tsv", "masakhanews": "masakhanews-swa/dev.tsv"}


def _eval_args(run: str, eval_data: str | None) -> list[str]:
  """`swahili100 evaluate` arguments: bpb always, the tasks whose files --eval-data holds."""
  found = {t: os.path.join(eval_data, f) for t, f in EVAL_FILES.items()
           if eval_data and os.path.exists(os.path.join(eval_data, f))}
  return ["evaluate", "--checkpoint", run, "--tasks", ",".join(["bpb", *found]),
          *[a for t, f in found.items() for a in ("--data", f"{t}={f}")],
          "--output", os.path.join(run, "eval.json")]


def phases(out: str, eval_data: str | None = None) -> list[tuple[str, list[str], str]]:
  """(name, swahili100 arguments, output path) for every phase, in pipeline order."""
  d = lambda *p: os.path.join(out, *p)  # noqa: E731
  ckpt, sft = d("runs", "debug"), d("runs", "sft")
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
      ("evaluate", _eval_args(ckpt, eval_data), os.path.join(ckpt, "eval.json")),
      ("align-sft", ["align", "--stage", "sft", "--checkpoint", ckpt, "--workdir", sft,
                     "--steps", "30", "--lr", "3e-4"], sft),
      ("align-dpo", ["align", "--stage", "dpo", "--checkpoint", sft, "--workdir", final,
                     "--steps", "30", "--lr", "1e-4"], final),
      ("evaluate-aligned", _eval_args(final, eval_data), os.path.join(final, "eval.json")),
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
      ("report", ["report", ckpt, sft, final, "--output", d("report")],
       d("report", "report.html")),
  ]


def _fresh(out: str) -> None:
  """Clears an output folder written by an older demo format (its runs would not resume)."""
  stamp = pathlib.Path(out, ".demo-format")
  if os.path.isdir(out) and os.listdir(out) and (
      not stamp.exists() or stamp.read_text().strip() != FORMAT):
    print(f"demo: {out} holds outputs of an older demo; clearing it", flush=True)
    shutil.rmtree(out)
  os.makedirs(out, exist_ok=True)
  stamp.write_text(FORMAT + "\n")


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--output", default="demo_out", help="folder for every phase's output")
  p.add_argument("--eval-data", default=None,
                 help="a folder with the evaluation files (xcopa-sw/val.jsonl, ...)")
  p.add_argument("--only", nargs="*", help="run only these phases (names as printed)")
  args = p.parse_args(argv)
  _fresh(args.output)
  timings = []
  for name, cmd, path in phases(args.output, args.eval_data):
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
  print("\nDemo finished. Outputs:")
  for name, secs, out_path in timings:
    print(f"  {name:<16} {secs:7.1f}s  {out_path}")
  for fmt in ("hf", "onnx", "gguf"):
    folder = os.path.join(args.output, "export", fmt)
    if os.path.isdir(folder):
      files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
      print(f"  export {fmt:<9} {folder}: {', '.join(files)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
