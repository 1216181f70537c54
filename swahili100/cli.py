"""The `swahili100` console script: one subcommand per pipeline phase, imported lazily.

Lazy imports keep `swahili100 train` free of data-pipeline dependencies (language ID, datasketch),
so a TPU VM that only trains needs only the core install.
"""

import glob
import importlib
import os
import sys
import warnings

# subcommand -> (module, one-line help). Each module has `main(argv: list[str]) -> int | None`.
COMMANDS = {
    "download": ("data_pipeline.download", "phase 1: fetch raw Swahili text into JSONL shards"),
    "clean": ("data_pipeline.clean", "phase 2: normalize and clean text shards"),
    "dedup": ("data_pipeline.dedup", "phase 3: exact and MinHash near-duplicate removal"),
    "filter": ("data_pipeline.filter", "phase 4: language ID and quality filtering"),
    "train-tokenizer": ("data_pipeline.train_tokenizer", "phase 5: train the byte-level BPE"),
    "tokenize": ("data_pipeline.tokenize", "phase 6: encode shards into token records"),
    "plan-data": ("data_pipeline.plan_data", "mixture weights and epochs per source for a "
                  "token budget"),
    "import": ("swahili100.hf_import", "a Hugging Face Llama/Qwen3 checkpoint -> a run folder "
               "(continue it with --config.init.from)"),
    "train": ("swahili100.train", "phases 7-10: train (and resume) a model"),
    "sweep": ("swahili100.sweep", "phase 8: a grid of train runs, in parallel, compared and "
              "plotted"),
    "ladder": ("swahili100.ladder", "a scaling ladder: an isoFLOP grid of one model family, the "
               "fit L(N, D) with intervals, a held-out run, predictions"),
    "aot": ("swahili100.aot", "compile the train step ahead of time for a TPU topology"),
    "preflight": ("swahili100.preflight", "check every worker of a slice before training"),
    "generate": ("swahili100.generate", "sample text from a checkpoint"),
    "evaluate": ("swahili100.evaluate", "phase 11: evaluate a checkpoint"),
    "align": ("swahili100.align.main", "phase 12: supervised fine-tuning (sft) or DPO"),
    "quantize": ("swahili100.export.quantize", "phase 13: int4/int8 weight-only quantization"),
    "export": ("swahili100.export.main", "phase 13: export to hf, onnx or gguf (and the Hub)"),
    "report": ("swahili100.report", "one HTML/markdown page: curves, data funnel, evaluation, "
               "provenance"),
}


def usage() -> str:
  lines = ["usage: swahili100 <command> [flags]", "", "commands:"]
  lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  command_line = argv is None
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"swahili100: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  warnings.formatwarning = _one_line_warning
  _cpu_when_no_accelerator()
  module = importlib.import_module(COMMANDS[name][0])
  if command_line:  # the command reads its arguments from sys.argv and knows it is the process
    sys.argv = [f"{sys.argv[0]} {name}", *rest]   # (train and align may re-execute it)
    return module.main() or 0
  return module.main(rest) or 0


# Device files of TPU VMs (v2-v4 /dev/accel*, v5e+ /dev/vfio/<n>) and of NVIDIA GPUs.
ACCELERATOR_DEVICES = ("/dev/accel*", "/dev/vfio/[0-9]*", "/dev/nvidia[0-9]*")


def _cpu_when_no_accelerator() -> None:
  """JAX_PLATFORMS=cpu on a machine with no TPU or GPU device and no TPU settings: otherwise JAX
  starts the TPU runtime that the [tpu] extra installs (for `aot`), which prints host-bounds and
  worker-hostname errors on a CPU-only machine. An explicit JAX_PLATFORMS always wins."""
  if "JAX_PLATFORMS" in os.environ or any(k.startswith(("TPU_", "COLAB_TPU")) for k in os.environ):
    return
  if not any(glob.glob(pattern) for pattern in ACCELERATOR_DEVICES):
    os.environ["JAX_PLATFORMS"] = "cpu"


_default_format = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None):
  """Data-phase warnings already name the file and line of the input; print just that."""
  if category is UserWarning and "data_pipeline" in filename:
    return f"warning: {message}\n"
  return _default_format(message, category, filename, lineno, line)


if __name__ == "__main__":
  sys.exit(main())
