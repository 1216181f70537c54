"""`swahili100 import`: a Hugging Face Llama or Qwen3 checkpoint -> a run folder of this project.

    swahili100 import --hf HuggingFaceTB/SmolLM2-135M --output runs/smollm2     # a Hub repo id
    swahili100 import --hf ~/models/Qwen3-0.6B --output runs/qwen3 [--config configs/small.py]
    swahili100 import --hf HuggingFaceTB/SmolLM2-135M --output runs/smollm2-sw \
        --extend-vocab 8000 --input data/filtered       # with Swahili tokens added
    swahili100 train --config configs/continue.py --workdir runs/sw-smollm2 \
        --config.init.from=runs/smollm2 --config.data.records_dir=...     # continue on Swahili

The output is what `swahili100 train` writes: `config.json` (the model section from the HF
`config.json`, every other section from `--config`, default configs/base.py), `checkpoints/0/`
(Orbax, parameters only) and `tokenizer.json` (named by `data.tokenizer`), so evaluate, generate,
export, align and `--config.init.from` take it as they take any run. Weights load as float32
(the model's parameter dtype; bf16 and f16 convert exactly). What the model cannot compute
exactly (another architecture, biases, sliding windows, another RoPE scaling) is refused by
field name with exit code 2, as are missing or truncated files and shapes that contradict
config.json; the output appears only once the import is complete (written beside it, renamed).
The name map and config mapping live with the export (export/hf.py): one module, both ways.

`--extend-vocab N --input DIR` appends up to N Swahili tokens to the model's tokenizer (the
pipeline's `train-tokenizer --extend`, run as its own process) and gives each new embedding (and
head row, if untied) the mean of the rows of the base pieces it replaces; the vocabulary is
padded to a multiple of 128 with zero rows. Old ids keep their ids and rows. The run keeps the
open model's own special tokens (`special_tokens.of`): records end documents with its end-of-text.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import nnx

import configs
from swahili100 import checkpoint, config_lib, fs
from swahili100 import model as model_lib
from swahili100.export import hf, hub

INDEX = "model.safetensors.index.json"
IGNORED = ("rotary_emb.inv_freq",)   # buffers older exports saved; recomputed from the config
SOURCE_DTYPES = ("F32", "BF16", "F16")   # all convert to float32 exactly
BASE_CONFIG = os.path.join(os.path.dirname(configs.__file__), "base.py")
VOCAB_MULTIPLE = 128   # an extended vocabulary is padded to it (TPU/GPU-friendly matmul shapes)


class Shards:
  """The tensors of an HF folder by name, read lazily from `model.safetensors.index.json`'s
  shards or from every `*.safetensors` file."""

  def __init__(self, folder: str):
    from safetensors import safe_open  # noqa: PLC0415 ([hf] extra)
    self.folder, self.files, self.where = folder, {}, {}
    index = os.path.join(folder, INDEX)
    if os.path.exists(index):
      weight_map = json.loads(open(index, encoding="utf-8").read()).get("weight_map") or {}
      if not weight_map:
        raise hf.HFCheckpointError(f"{index} has no weight_map; download it again")
      names = sorted(set(weight_map.values()))
      self.where = {k: os.path.join(folder, v) for k, v in weight_map.items()}
    else:
      names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.safetensors")))
      if not names:
        extra = (" (only PyTorch .bin weights: load and re-save them with "
                 "`model.save_pretrained(DIR, safe_serialization=True)`)"
                 if glob.glob(os.path.join(folder, "*.bin")) else "")
        raise hf.HFCheckpointError(f"{folder}: no *.safetensors and no {INDEX}{extra}")
    for name in names:
      path = os.path.join(folder, name)
      if not os.path.exists(path):
        raise hf.HFCheckpointError(f"{path} is missing ({INDEX} names it); download the "
                                   "checkpoint again")
      try:
        handle = safe_open(path, framework="np")
      except Exception as e:  # noqa: BLE001 (safetensors raises its own error type)
        raise hf.HFCheckpointError(f"{path} is not a readable safetensors file ({e}); it is "
                                   "truncated or corrupt: download it again") from None
      self.files[path] = handle
      for key in handle.keys():
        self.where.setdefault(key, path)
    self.unused = {k for k in self.where if not k.endswith(IGNORED)}

  def get(self, name: str) -> np.ndarray:
    path = self.where.get(name)
    if path is None or name not in self.files[path].keys():
      raise hf.HFCheckpointError(f"{self.folder}: tensor {name!r} is missing from "
                                 f"{os.path.basename(path) if path else 'every shard'}; the "
                                 "weights do not match config.json (or a shard is missing)")
    handle = self.files[path]
    dtype = handle.get_slice(name).get_dtype()
    if dtype not in SOURCE_DTYPES:
      raise hf.HFCheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, not one of "
                                 f"{SOURCE_DTYPES}; dequantize the checkpoint first")
    try:
      value = handle.get_tensor(name)
    except Exception as e:  # noqa: BLE001
      raise hf.HFCheckpointError(f"{path}: tensor {name!r} cannot be read ({e}); the file is "
                                 "truncated or corrupt: download it again") from None
    self.unused.discard(name)
    return np.asarray(value, np.float32)   # no copy for float32 files


def params_from_hf(shards: Shards, model_cfg, config_path: str):
  """The model's parameter State from the HF tensors, each checked against its shape."""
  _, abstract = model_lib.abstract(model_cfg)
  values = []
  for path, var in nnx.to_flat_state(abstract):
    name, transposed = hf.hf_name(path)
    want = tuple(reversed(var.shape)) if transposed else tuple(var.shape)
    w = shards.get(name)
    if tuple(w.shape) != want:
      raise hf.HFCheckpointError(
          f"{shards.where[name]}: tensor {name!r} has shape {list(w.shape)}, but {config_path} "
          f"implies {list(want)}; config.json does not describe these weights: use the one "
          "published with them")
    values.append((path, var.replace(jnp.asarray(w.T if transposed else w))))
  if model_cfg.tie_embeddings:
    shards.unused.discard("lm_head.weight")  # tied: transformers ignores a stored copy too
  if shards.unused:
    extra = sorted(shards.unused)
    raise hf.HFCheckpointError(
        f"{shards.folder}: {len(extra)} tensor(s) have no place in the model described by "
        f"{config_path} (e.g. {extra[:3]}): biases or layers it does not declare; the model "
        "would compute something else without them")
  return nnx.from_flat_state(values)


def new_tokens(base: tokenizers.Tokenizer, extended: tokenizers.Tokenizer,
               where: str) -> dict[int, list[int]]:
  """{new id: the base ids its token splits into} for every id the base lacks; refuses an
  `extended` in which a base token moved or vanished (it would not extend this model)."""
  base_vocab = base.get_vocab(with_added_tokens=True)
  ext_vocab = extended.get_vocab(with_added_tokens=True)
  moved = sorted(t for t, i in base_vocab.items() if ext_vocab.get(t) != i)
  if moved:
    raise hf.HFCheckpointError(
        f"{where}: {len(moved)} token(s) of the model's tokenizer have another id or are missing "
        f"(e.g. {moved[:3]}); it does not extend this model's vocabulary: make it with "
        "`swahili100 train-tokenizer --extend <the model's tokenizer.json> --add N`")
  added = sorted((i, token) for token, i in ext_vocab.items() if token not in base_vocab)
  return {i: [t.id for t in base.model.tokenize(token)] for i, token in added}


def _grow(rows_VD: np.ndarray, pieces: dict[int, list[int]], vocab: int) -> np.ndarray:
  """Rows for the extended vocabulary: old rows kept, each new token the mean of its base
  pieces' rows (Gee et al. 2022, fast vocabulary transfer), padding rows zero."""
  out_VD = np.zeros((vocab, rows_VD.shape[1]), rows_VD.dtype)
  out_VD[:rows_VD.shape[0]] = rows_VD
  for i, ids in pieces.items():
    out_VD[i] = rows_VD[ids].mean(axis=0)
  return out_VD


def extend_params(params, pieces: dict[int, list[int]], vocab_size: int):
  """(params with the embedding and, if untied, the head grown to the new vocabulary, its size)."""
  new_vocab = -(-max(vocab_size, max(pieces, default=-1) + 1) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
  values = []
  for path, var in nnx.to_flat_state(params):
    w = np.asarray(var.get_value())
    if path == ("embed", "embedding"):
      w = _grow(w, pieces, new_vocab)
    elif path == ("lm_head", "kernel"):   # [D, V]
      w = _grow(w.T, pieces, new_vocab).T
    values.append((path, var.replace(jnp.asarray(w))))
  return nnx.from_flat_state(values), new_vocab


def learn_extension(base_tokenizer: str, input_dir: str, add: int, out_dir: str) -> str:
  """Runs the pipeline's `train-tokenizer --extend` (its own process: the library does not import
  the data pipeline) and returns the extended tokenizer's path."""
  cmd = [sys.executable, "-m", "swahili100.cli", "train-tokenizer", "--input", input_dir,
         "--output", out_dir, "--extend", base_tokenizer, "--add", str(add)]
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if done.returncode != 0:
    raise hf.HFCheckpointError(f"--extend-vocab: `{' '.join(cmd[2:])}` failed (exit "
                               f"{done.returncode}): {done.stderr.strip()[-600:]}")
  return os.path.join(out_dir, "swahili_bpe.json")


def resolve_source(spec: str, revision: str | None, cache_dir: str | None) -> tuple[str, dict]:
  """(local folder, provenance) of a folder path or a Hub repo id."""
  spec = os.path.expanduser(spec)
  if os.path.isdir(spec):
    return os.path.abspath(spec), {"source": os.path.abspath(spec)}
  if os.path.exists(spec) or spec.count("/") != 1 or spec.startswith((".", "/", "~")):
    raise hf.HFCheckpointError(f"--hf {spec!r} is neither a folder nor a Hub repo id "
                               "('org/name'); give a folder with config.json or a repo id")
  folder = hub.download(spec, revision=revision, cache_dir=cache_dir)
  return folder, {"source": spec, "revision": os.path.basename(folder.rstrip("/"))}


def run_config(base_spec: str, fields: dict, tokenizer: str, record: dict):
  """The run's config.json: `base_spec`'s sections, the imported model, the copied tokenizer."""
  config = config_lib.load(base_spec)
  with config.unlocked():
    for key, value in fields.items():
      config.model[key] = value
    config.data.tokenizer = tokenizer
    config["import"] = record
  return config


def import_hf(spec: str, output: str, base_spec: str = BASE_CONFIG, revision: str | None = None,
              cache_dir: str | None = None, tokenizer: str | None = None,
              extend_vocab: tuple[int, str] | None = None) -> dict:
  """Imports `spec` into the run folder `output`; returns what was recorded. `tokenizer` (an
  extension of the model's) or `extend_vocab` = (N, text folder) grow the vocabulary."""
  t0 = time.perf_counter()
  if fs.exists(fs.join(output, "config.json")) or fs.exists(fs.join(output, "checkpoints")):
    raise hf.HFCheckpointError(f"--output {output} already holds a run; choose a new folder")
  folder, record = resolve_source(spec, revision, cache_dir)
  config_path = os.path.join(folder, "config.json")
  tok_path = os.path.join(folder, "tokenizer.json")
  for path, what in ((config_path, "the model's config.json"), (tok_path, "its tokenizer.json")):
    if not os.path.exists(path):
      raise hf.HFCheckpointError(f"{path} not found: {what} is needed; download the complete "
                                 "checkpoint (config.json, *.safetensors, tokenizer.json)")
  try:
    hf_cfg = json.loads(open(config_path, encoding="utf-8").read())
  except json.JSONDecodeError as e:
    raise hf.HFCheckpointError(f"{config_path} is not JSON ({e}); download it again") from None
  fields = hf.model_fields(hf_cfg, config_path)
  try:
    model_cfg = model_lib.ModelConfig.from_any(fields)
  except config_lib.ConfigError as e:
    raise hf.HFCheckpointError(f"{config_path}: {e}") from None
  tok_vocab = tokenizers.Tokenizer.from_file(tok_path).get_vocab_size()
  if tok_vocab > model_cfg.vocab_size:
    raise hf.HFCheckpointError(f"{tok_path} has {tok_vocab} tokens but {config_path} "
                               f"vocab_size={model_cfg.vocab_size}; they are not one model's")
  shards = Shards(folder)
  params = params_from_hf(shards, model_cfg, config_path)
  dtypes = sorted({h.get_slice(k).get_dtype() for h in shards.files.values() for k in h.keys()})
  record = {**record, "architecture": hf_cfg["architectures"][0], "dtype": dtypes,
            "files": sorted(os.path.basename(p) for p in shards.files),
            "tokenizer_vocab_size": tok_vocab}
  with tempfile.TemporaryDirectory(prefix="swahili100-vocab-") as tmp:
    if extend_vocab is not None:
      tokenizer = learn_extension(tok_path, extend_vocab[1], extend_vocab[0], tmp)
    if tokenizer is not None:
      if not os.path.exists(tokenizer):
        raise hf.HFCheckpointError(f"--tokenizer {tokenizer} not found")
      pieces = new_tokens(tokenizers.Tokenizer.from_file(tok_path),
                          tokenizers.Tokenizer.from_file(tokenizer), tokenizer)
      params, vocab_size = extend_params(params, pieces, model_cfg.vocab_size)
      fields["vocab_size"] = vocab_size
      record["vocab_extension"] = {
          "tokenizer": (f"train-tokenizer --extend --add {extend_vocab[0]} --input "
                        f"{extend_vocab[1]}" if extend_vocab else tokenizer),
          "added": len(pieces), "vocab_size": vocab_size, "from_vocab_size": model_cfg.vocab_size,
          "init": "mean of the base pieces' rows (fast vocabulary transfer)"}
      if extend_vocab is not None:   # the tokenizer trainer's held-out figures, before and after
        report = json.loads(open(os.path.join(tmp, "report.json"), encoding="utf-8").read())
        record["vocab_extension"]["heldout_bytes_per_token"] = {
            "base": report["extension"]["base_heldout"]["bytes_per_token"],
            "extended": report["heldout"]["bytes_per_token"], "docs": report["heldout"]["docs"]}
      tok_path = tokenizer
    return _write(output, params, fields, tok_path, base_spec, record,
                  model_lib.ModelConfig.from_any(fields), t0)


def _write(output, params, fields, tok_path, base_spec, record, model_cfg, t0) -> dict:
  """The run folder, written beside `output` and renamed (or uploaded) once complete."""
  # Written beside the output and renamed once complete: a failed import leaves nothing there.
  remote = fs.is_remote(output)
  final = output if remote else os.path.abspath(output)
  staging = (os.path.join(os.environ.get("TMPDIR", "/tmp"), f"swahili100-import-{os.getpid()}")
             if remote else f"{final}.importing-{os.getpid()}")
  shutil.rmtree(staging, ignore_errors=True)
  try:
    os.makedirs(staging)
    shutil.copyfile(tok_path, os.path.join(staging, "tokenizer.json"))
    config = run_config(base_spec, fields, fs.join(final, "tokenizer.json"), record)
    fs.write_text(os.path.join(staging, "config.json"), config.to_json_best_effort(indent=2) + "\n")
    checkpoint.save_params(staging, 0, params, {"step": 0, "import": record})
    if remote:
      fs.upload_dir(staging, output)
    else:
      if os.path.isdir(final) and not os.listdir(final):
        os.rmdir(final)
      os.rename(staging, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  n = model_lib.num_params(model_cfg)
  return {"output": final, "params": n, "seconds": round(time.perf_counter() - t0, 1),
          **record}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="swahili100 import", description=__doc__.splitlines()[0])
  p.add_argument("--hf", required=True, help="a folder (config.json, *.safetensors, "
                 "tokenizer.json) or a Hub repo id such as HuggingFaceTB/SmolLM2-135M")
  p.add_argument("--output", required=True, help="the run folder to write (local or gs://)")
  p.add_argument("--config", default=BASE_CONFIG,
                 help="config file whose non-model sections the run gets (default "
                 "configs/base.py)")
  p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
  p.add_argument("--cache-dir", default=None, help="Hub cache (default: huggingface_hub's)")
  p.add_argument("--extend-vocab", type=int, default=None, metavar="N",
                 help="add up to N Swahili tokens learned on --input to the model's tokenizer; "
                 "new rows start as the mean of their base pieces' rows")
  p.add_argument("--input", default=None, help="text shards for --extend-vocab (e.g. "
                 "data/filtered)")
  p.add_argument("--tokenizer", default=None, help="an extension of the model's tokenizer made "
                 "with `train-tokenizer --extend` (instead of --extend-vocab)")
  args = p.parse_args(argv)
  if args.extend_vocab is not None and (args.extend_vocab < 1 or not args.input):
    p.error("--extend-vocab N needs N > 0 and --input (the text folder to learn tokens on)")
  if args.extend_vocab is not None and args.tokenizer:
    p.error("give --extend-vocab or --tokenizer, not both")
  extend = (args.extend_vocab, args.input) if args.extend_vocab else None
  try:
    out = import_hf(args.hf, args.output, args.config, args.revision, args.cache_dir,
                    tokenizer=args.tokenizer, extend_vocab=extend)
  except (hf.HFCheckpointError, config_lib.ConfigError, hub.HubError) as e:
    print(f"swahili100 import: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(out, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
