"""Shared fixtures: a tiny tokenizer and token records built from inline Swahili text."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# CPU tests stay off the TPU runtime (libtpu is installed for the ahead-of-time compile tests);
# subprocesses inherit it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared by this process and every command it
# starts: most tests compile the same tiny steps, and each `swahili100 train` subprocess would
# compile them afresh (~4 s of a 12 s process). A new folder each session: nothing carries over.
_JIT_CACHE = tempfile.mkdtemp(prefix="swahili100-tests-jit-")
atexit.register(shutil.rmtree, _JIT_CACHE, True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _JIT_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# XLA:CPU's LLVM back end without its optimisation passes: the tests' tiny programs spend most
# of their time compiling, not running (the compile-bound modules take ~30 % less CPU; the suite's
# summed test time fell 14 %, docs/benchmarks.md). XLA's own HLO passes (fusion, layout,
# sharding) still run; the numerics users get are pinned by test_golden.py, which runs with
# XLA's defaults.
FAST_COMPILE_XLA_FLAGS = ("--xla_backend_optimization_level=0 "
                          "--xla_llvm_disable_expensive_passes=true")
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_XLA_FLAGS}".strip()

import pytest
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from swahili100 import config_lib, host_memory, records, special_tokens

# Commands start with the allocator `train` and `align` re-execute themselves into
# (host_memory.reexec), so they import JAX once instead of twice (~3 s each). The re-execution
# itself is tested in test_host_memory.py, whose probes start without it.
_JEMALLOC = host_memory.find_jemalloc()
if _JEMALLOC and not os.environ.get("LD_PRELOAD"):
  os.environ["LD_PRELOAD"] = _JEMALLOC
  os.environ.setdefault("MALLOC_CONF", host_memory.MALLOC_CONF)

REPO = Path(__file__).resolve().parents[1]


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a subprocess with `devices` fake CPU devices (and the tests' compile flags)."""
  return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE_XLA_FLAGS}"
SHARED_DATA = REPO.parent / "shared" / "data"

SENTENCES = [
    "Mvua kubwa ilinyesha jana jioni katika mji wa Dodoma na kusababisha mafuriko.",
    "Wakulima wa mahindi wanasema mavuno ya mwaka huu ni mazuri kuliko ya mwaka jana.",
    "Daktari alimshauri mama yule anywe maji mengi na apumzike kwa siku tatu.",
    "Watoto walicheza mpira uwanjani hadi jua lilipozama nyuma ya milima.",
    "Serikali imetangaza mpango mpya wa kujenga shule katika vijiji vya pwani.",
    "Ng'ombe wa mzee Juma walipotea porini lakini walirudi nyumbani asubuhi.",
    "Bei ya sukari imepanda sokoni na wananchi wanalalamika kuhusu gharama ya maisha.",
    "Mwalimu aliwafundisha wanafunzi jinsi ya kuandika insha kwa Kiswahili fasaha.",
    "Timu ya taifa ilishinda mechi ya jana kwa mabao mawili kwa moja.",
    "Hospitali ya wilaya imepokea dawa na vifaa vipya vya kupimia malaria.",
]


def documents(n: int, seed: int = 0) -> list[str]:
  """n deterministic multi-sentence Swahili documents of varied length."""
  docs = []
  for i in range(n):
    k = 1 + (i * 7 + seed) % 6
    docs.append(" ".join(SENTENCES[(i + j * 3 + seed) % len(SENTENCES)] for j in range(k)))
  return docs


def train_tokenizer(path: str, vocab_size: int = 384) -> tokenizers.Tokenizer:
  tok = tokenizers.Tokenizer(models.BPE())
  tok.normalizer = normalizers.NFC()
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens.ALL),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(documents(200), trainer)
  tok.save(path)
  return tok


def write_records(records_dir: str, tokenizer_path: str, train_docs, val_docs, shards=2):
  tok = tokenizers.Tokenizer.from_file(tokenizer_path)
  vocab = tok.get_vocab_size()
  dtype = records.dtype_for_vocab(vocab)
  os.makedirs(records_dir, exist_ok=True)
  splits = {}
  for split, docs in (("train", train_docs), ("validation", val_docs)):
    names, ntok = [], 0
    n = shards if split == "train" else 1
    for s in range(n):
      name = records.shard_name(split, s, n)
      with records.RecordWriter(os.path.join(records_dir, name), dtype) as w:
        for doc in docs[s::n]:
          ids = tok.encode(doc).ids + [special_tokens.EOS_ID]
          w.write(ids)
          ntok += len(ids)
      names.append(name)
    splits[split] = records.SplitInfo(names, len(docs), ntok,
                                      sum(len(d.encode()) for d in docs))
  records.write_manifest(records_dir, records.Manifest(
      dtype=dtype, tokenizer_file=tokenizer_path, tokenizer_sha256=records.sha256_file(tokenizer_path),
      vocab_size=vocab, special_tokens=dict(special_tokens.IDS), eos_id=special_tokens.EOS_ID,
      pad_id=special_tokens.PAD_ID, splits=splits))


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
  """(records_dir, tokenizer_path, vocab_size) of 300 train and 20 validation documents."""
  root = tmp_path_factory.mktemp("tiny")
  tok_path = str(root / "swahili_bpe.json")
  tok = train_tokenizer(tok_path)
  docs = documents(320)
  write_records(str(root / "records"), tok_path, docs[:300], docs[300:])
  return str(root / "records"), tok_path, tok.get_vocab_size()


def tiny_overrides(records_dir, tokenizer_path, vocab_size, **overrides) -> dict:
  """The keys that shrink configs/debug.py for tests, with `overrides` on top."""
  return {"model.vocab_size": vocab_size, "model.d_model": 32, "model.num_layers": 2,
          "model.num_heads": 4, "model.num_kv_heads": 2, "model.head_dim": 8,
          "model.mlp_dim": 64, "data.records_dir": records_dir,
          "data.tokenizer": tokenizer_path, "data.seq_len": 32, "data.batch_size": 8,
          "data.prefetch": 0, "optim.warmup_steps": 2, "train.num_steps": 6,
          "train.log_every": 1, "train.eval_every": 0, "train.eval_batches": 2,
          "train.checkpoint_every": 3, **overrides}


def tiny_flags(records_dir, tokenizer_path, vocab_size, **overrides) -> list[str]:
  """`tiny_overrides` as `--config.k=v` command-line flags (for the real CLI commands)."""
  return [f"--config.{k}={v}" for k, v in
          tiny_overrides(records_dir, tokenizer_path, vocab_size, **overrides).items()]


def tiny_config(records_dir, tokenizer_path, vocab_size, **overrides):
  """configs/debug.py shrunk for tests; overrides as {'optim.lr': '1e-3'} strings or values."""
  config = config_lib.load(str(REPO / "configs" / "debug.py"))
  for key, value in tiny_overrides(records_dir, tokenizer_path, vocab_size, **overrides).items():
    config_lib.set_value(config, key, str(value))
  config_lib.validate(config)
  return config
