"""`swahili100 import`: HF Llama / Qwen3 folders (and Hub repos) -> run folders, exactly.

Models are random-weight `transformers` models built from the published configs of SmolLM2-135M,
Llama-3.2-1B and Qwen3-0.6B with the depth reduced; their config.json is rewritten the way the
Hub's files carry RoPE (top-level `rope_theta` and `rope_scaling`) where the case says so.
"""

import hashlib
import http.server
import json
import os
import threading
import urllib.parse

import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

from swahili100 import hf_import, inference
from swahili100.export import hf
from swahili100.export import main as export_main
from tests.conftest import REPO, documents

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file, save_file  # noqa: E402 ([export] extra, as torch)

# The published config.json of each model (depth cut to 2 below), in the Hub's own layout.
REAL = {
    "smollm2-135m": {"architectures": ["LlamaForCausalLM"], "hidden_size": 576,
                     "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
                     "head_dim": 64, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": True, "max_position_embeddings": 8192,
                     "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
                     "rope_scaling": None, "torch_dtype": "bfloat16"},
    "llama-3.2-1b": {"architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
                     "intermediate_size": 8192, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 64, "rope_theta": 500000.0,
                     "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
                     "max_position_embeddings": 131072, "hidden_act": "silu",
                     "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
                     "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                                      "low_freq_factor": 1.0,
                                      "original_max_position_embeddings": 8192,
                                      "rope_type": "llama3"}},
    "qwen3-0.6b": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 1024,
                   "intermediate_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 8,
                   "head_dim": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                   "tie_word_embeddings": True, "max_position_embeddings": 40960,
                   "hidden_act": "silu", "attention_bias": False, "use_sliding_window": False,
                   "sliding_window": None, "max_window_layers": 28, "rope_scaling": None,
                   "torch_dtype": "bfloat16"},
}


def make_hf(folder, tokenizer_path, real: dict, layers=2, seed=0, dtype="float32",
      hub_layout=True, shard=None, **changes) -> str:
  """A random `transformers` model of `real`'s shapes with the tokenizer, saved to `folder`;
  its config.json as the Hub's files write it (`hub_layout`) or as transformers 5 writes it."""
  cfg_dict = {**real, **changes, "num_hidden_layers": layers,
                "vocab_size": tokenizers.Tokenizer.from_file(tokenizer_path).get_vocab_size()}
  arch = cfg_dict["architectures"][0]
  cls = transformers.Qwen3Config if arch.startswith("Qwen3") else transformers.LlamaConfig
  scaling = cfg_dict.get("rope_scaling")
  kwargs = {k: v for k, v in cfg_dict.items() if k not in ("rope_scaling", "rope_theta",
                                                             "torch_dtype", "architectures")}
  rope = {"rope_type": "default", "rope_theta": cfg_dict["rope_theta"], **(scaling or {})}
  cfg = cls(**kwargs, rope_parameters=rope)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
  with torch.no_grad():   # every tensor far from its init, so each one shows in the logits
    for _, p in model.named_parameters():
      p.uniform_(0.5, 1.5) if p.ndim == 1 else p.normal_(0.0, 0.05)
  model.to(getattr(torch, dtype)).save_pretrained(str(folder), max_shard_size=shard or "10GB")
  if hub_layout:
    with open(os.path.join(folder, "config.json"), "w") as f:
      json.dump({**cfg_dict, "model_type": cls.model_type}, f, indent=2)
  with open(tokenizer_path, "rb") as src, open(os.path.join(folder, "tokenizer.json"), "wb") as f:
    f.write(src.read())
  return str(folder)


def swahili_ids(tokenizer_path, n=160):
  tok = tokenizers.Tokenizer.from_file(tokenizer_path)
  return np.asarray([tok.encode(" ".join(documents(4, seed=3))).ids[:n]])


def hf_logits(folder, ids):
  m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
  with torch.no_grad():
    return m(torch.as_tensor(ids)).logits.numpy()


def tensors(folder):
  out = {}
  for f in sorted(os.listdir(folder)):
    if f.endswith(".safetensors"):
      out.update(load_file(os.path.join(folder, f)))
  return out


@pytest.mark.parametrize("name,tie,layout,dtype,shard", [
    ("smollm2-135m", True, True, "float32", "2MB"),          # sharded, Hub layout
    ("llama-3.2-1b", False, True, "bfloat16", None),          # llama3 RoPE, untied, bf16
    ("qwen3-0.6b", True, False, "float32", None),             # q/k norms, transformers 5 layout
])
def test_import_matches_transformers_and_round_trips(tiny_records, tmp_path, name, tie, layout,
                                                     dtype, shard):
  _, tok_path, _ = tiny_records
  layers = 1 if name == "llama-3.2-1b" else 2
  src = make_hf(tmp_path / "hf", tok_path, REAL[name], layers=layers, dtype=dtype,
                  hub_layout=layout, shard=shard, tie_word_embeddings=tie)
  if shard:
    assert os.path.exists(os.path.join(src, hf_import.INDEX))
  run = str(tmp_path / "run")
  assert hf_import.main(["--hf", src, "--output", run]) == 0
  config, model = inference.load(run)
  assert config.data.tokenizer == os.path.join(run, "tokenizer.json")
  assert config.model.qk_norm is name.startswith("qwen3")
  assert config.model.rope_type == ("llama3" if name == "llama-3.2-1b" else "default")
  ids = swahili_ids(tok_path)
  want = hf_logits(src, ids)
  got = np.asarray(model(jnp.asarray(ids)))
  assert np.abs(want).max() > 1.0   # logits far from zero, so the bound means something
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  # the reverse trip: export --format hf gives back the same tensors (bf16 exactly as f32)
  out = str(tmp_path / "export")
  assert export_main.main(["--checkpoint", run, "--format", "hf", "--output", out]) == 0
  a, b = tensors(src), tensors(out)
  assert set(a) == set(b)
  with open(os.path.join(src, "tokenizer.json"), "rb") as x, \
       open(os.path.join(out, "tokenizer.json"), "rb") as y:
    assert x.read() == y.read()   # so records tokenized for the source still match the hash
  for k in a:
    same = a[k].astype(np.float32) if dtype != "float32" else a[k]
    assert same.dtype == b[k].dtype and same.shape == b[k].shape, k
    assert np.array_equal(same.view(np.uint32), b[k].view(np.uint32)), k


def run_cli(tmp_path, src, capsys):
  out = tmp_path / "run"
  rc = hf_import.main(["--hf", str(src), "--output", str(out)])
  err = capsys.readouterr().err
  assert not out.exists() and not list(tmp_path.glob("run.importing-*"))  # nothing written
  return rc, err


SMALL = {**REAL["smollm2-135m"], "hidden_size": 64, "intermediate_size": 96,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}


@pytest.mark.parametrize("field,change,named", [
    ("attention_bias", {"attention_bias": True}, "attention_bias=True"),
    ("mlp_bias", {"mlp_bias": True}, "mlp_bias=True"),
    ("rope_scaling", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
     "rope_scaling.rope_type='yarn'"),
    ("rope_type_old", {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
     "rope_scaling.rope_type='dynamic'"),
    ("architectures", {"architectures": ["MistralForCausalLM"]}, "architectures="),
    ("hidden_act", {"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ("sliding", {"architectures": ["Qwen3ForCausalLM"], "use_sliding_window": True},
     "use_sliding_window=True"),
])
def test_what_the_model_cannot_compute_is_refused_by_name(tiny_records, tmp_path, capsys, field,
                                                          change, named):
  _, tok_path, _ = tiny_records
  src = make_hf(tmp_path / "hf", tok_path, SMALL, layers=1)
  cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, **change}))
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and named in err and "config.json" in err and "Traceback" not in err


def test_bad_files_are_named_and_nothing_is_written(tiny_records, tmp_path, capsys):
  _, tok_path, _ = tiny_records
  src = tmp_path / "hf"
  make_hf(src, tok_path, SMALL, layers=1, shard="40KB")
  index = json.loads((src / hf_import.INDEX).read_text())
  shards = sorted(set(index["weight_map"].values()))
  # a truncated shard
  first = src / shards[0]
  whole = first.read_bytes()
  first.write_bytes(whole[: len(whole) // 2])
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and shards[0] in err and "truncated" in err
  first.write_bytes(whole)
  # a missing shard
  (src / shards[-1]).rename(tmp_path / "aside")
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and shards[-1] in err and "missing" in err
  (tmp_path / "aside").rename(src / shards[-1])
  # config.json that disagrees with the tensors
  cfg = json.loads((src / "config.json").read_text())
  (src / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 128}))
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and "mlp.down_proj.weight" in err and "shape" in err and "[64, 96]" in err
  (src / "config.json").write_text(json.dumps(cfg))
  # an unknown dtype
  name = "model.norm.weight"
  path = src / index["weight_map"][name]
  t = load_file(str(path))
  t[name] = t[name].astype(np.int8)
  save_file(t, str(path))
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and name in err and "I8" in err
  # a missing tokenizer
  (src / "tokenizer.json").unlink()
  rc, err = run_cli(tmp_path, src, capsys)
  assert rc == 2 and "tokenizer.json not found" in err


class _Hub(http.server.BaseHTTPRequestHandler):
  """The Hub's download API over one folder: repo info, the file tree, resolve (HEAD/GET)."""
  folder, repo, sha, requests = "", "", "c" * 40, []

  def log_message(self, *args):
    pass

  def _send(self, body: bytes, ctype="application/json", head=False, extra=None):
    self.send_response(200)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(len(body)))
    for k, v in (extra or {}).items():
      self.send_header(k, v)
    self.end_headers()
    if not head:
      self.wfile.write(body)

  def _files(self):
    return sorted(os.listdir(self.folder))

  def _route(self, head=False):
    path = urllib.parse.urlparse(self.path).path
    self.requests.append((self.command, path))
    if path == f"/api/models/{self.repo}/revision/main":
      return self._send(json.dumps({"id": self.repo, "sha": self.sha, "siblings": [
                {"rfilename": f} for f in self._files()]}).encode())
    if path.startswith(f"/api/models/{self.repo}/tree/{self.sha}"):
      return self._send(json.dumps([
                {"type": "file", "path": f, "size": os.path.getsize(os.path.join(self.folder, f)),
                 "oid": hashlib.sha1(open(os.path.join(self.folder, f), "rb").read()).hexdigest()}
        for f in self._files()]).encode())
    prefix = f"/{self.repo}/resolve/{self.sha}/"
    if path.startswith(prefix) and path[len(prefix):] in self._files():
      body = open(os.path.join(self.folder, path[len(prefix):]), "rb").read()
      return self._send(body, "application/octet-stream", head, {
                "X-Repo-Commit": self.sha, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'})
    self.send_response(404)
    self.send_header("Content-Length", "0")
    self.end_headers()

  def do_GET(self):
    self._route()

  def do_HEAD(self):
    self._route(head=True)


def test_hub_repo_id_downloads_through_huggingface_hub(tiny_records, tmp_path, monkeypatch):
  _, tok_path, _ = tiny_records
  src = make_hf(tmp_path / "hub", tok_path, SMALL, layers=1, shard="40KB")
  (tmp_path / "hub" / "pytorch_model.bin").write_bytes(b"not fetched")
  _Hub.folder, _Hub.repo, _Hub.requests = src, "HuggingFaceTB/tiny-sw", []
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  try:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = str(tmp_path / "cache")
    run = str(tmp_path / "run")
    assert hf_import.main(["--hf", _Hub.repo, "--output", run, "--cache-dir", cache]) == 0
  finally:
    srv.shutdown()
    srv.server_close()   # the Hub is gone from here on
  fetched = {p.rpartition("/")[2] for m, p in _Hub.requests if m == "GET" and "/resolve/" in p}
  assert "pytorch_model.bin" not in fetched and "config.json" in fetched
  assert sum(f.endswith(".safetensors") for f in fetched) >= 2
  config, model = inference.load(run)
  assert config["import"].source == _Hub.repo and config["import"].revision == _Hub.sha
  ids = swahili_ids(tok_path, 40)
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), hf_logits(src, ids),
                               atol=1e-4, rtol=0)
  # the same id again, the Hub unreachable: huggingface_hub serves it from its cache
  assert hf_import.main(["--hf", _Hub.repo, "--output", str(tmp_path / "again"),
                           "--cache-dir", cache]) == 0


def test_hf_name_is_state_dicts_inverse(tiny_records):
  """The import's name map and the export's state_dict name the same tensors."""
  from flax import nnx
  from swahili100 import model as model_lib
  for qk, tie in ((False, False), (True, True)):
    c = model_lib.ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4,
                                  num_kv_heads=2, head_dim=8, mlp_dim=48, qk_norm=qk,
                                  tie_embeddings=tie)
    m = model_lib.Transformer(c, rngs=nnx.Rngs(0))
    sd = hf.state_dict(m)
    flat = nnx.to_flat_state(nnx.state(m, nnx.Param))
    names = {hf.hf_name(p)[0]: (hf.hf_name(p)[1], v[...]) for p, v in flat}
    assert set(names) == set(sd)
    for k, (transposed, v) in names.items():
      np.testing.assert_array_equal(np.asarray(v).T if transposed else np.asarray(v), sd[k])


@pytest.fixture(scope="module")
def imported(tiny_records, tmp_path_factory):
  """A tiny Qwen3 of the records' tokenizer, imported: (run folder, HF folder)."""
  _, tok_path, _ = tiny_records
  root = tmp_path_factory.mktemp("imported")
  src = make_hf(root / "hf", tok_path, {**SMALL, "architectures": ["Qwen3ForCausalLM"]},
                layers=2, seed=4)
  run = str(root / "run")
  assert hf_import.main(["--hf", src, "--output", run]) == 0
  return run, src


def continue_flags(tiny_records, run, **extra):
  records_dir, tok_path, _ = tiny_records
  flags = {"init.from": run, "data.records_dir": records_dir, "data.tokenizer": tok_path,
           "data.seq_len": 32, "data.batch_size": 8, "data.prefetch": 0, "train.num_steps": 4,
           "optim.warmup_steps": 2, "train.log_every": 1, "train.eval_every": 0,
           "train.eval_batches": 2, "train.checkpoint_every": 2, **extra}
  return [f"--config.{k}={v}" for k, v in flags.items()]


def test_continued_run_starts_from_the_import(tiny_records, imported, tmp_path):
  from swahili100 import checkpoint
  from swahili100 import train as train_lib
  run, _ = imported
  workdir = str(tmp_path / "continued")
  # the model section is the import's; a back-end switch may differ, and Muon, gradient
  # accumulation run over it (meshes: test_mesh_equivalence)
  argv = ["--config", "configs/continue.py", "--workdir", workdir,
          *continue_flags(tiny_records, run, **{"model.remat": "full", "optim.name": "muon",
                                                "optim.grad_accum": 2})]
  config, _, _ = train_lib.parse_args(argv)
  assert config.model.qk_norm and config.model.d_model == 64 and config.model.remat == "full"
  assert train_lib.main(argv) == 0
  saved = checkpoint.load_config(workdir)
  assert saved.init["from"] == run and saved.model.num_layers == 2
  rows = [json.loads(l) for l in open(os.path.join(workdir, "logs", "training.jsonl"))]
  losses = [r["loss"] for r in rows if "loss" in r]
  # step 0's loss is the imported model's own loss on that batch, computed apart by the bench
  # that docs/benchmarks.md cites (a fresh init from train.seed would give another number)
  import subprocess
  import sys
  r = subprocess.run([sys.executable, "bench/first_batch_loss.py", "--continued", workdir,
                      "--original", run], cwd=REPO, capture_output=True, text=True, timeout=300,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert r.returncode == 0, r.stderr[-2000:]
  check = json.loads(r.stdout.strip().splitlines()[-1])
  assert check["continued_step1_loss"] == losses[0]
  assert check["original_loss_on_batch"] == pytest.approx(losses[0], rel=1e-5)
  # resuming the continued run from its own step 2 is bit exact (init.from is not read again)
  import shutil
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))
  os.remove(os.path.join(resumed, "logs", "training.jsonl"))
  assert train_lib.run(config, resumed, resume=os.path.join(resumed, "checkpoints", "2")) == 0
  again = [json.loads(l) for l in open(os.path.join(resumed, "logs", "training.jsonl"))]
  assert [r["loss"] for r in again if "loss" in r] == losses[2:]


def test_model_flags_that_contradict_init_from_are_refused(tiny_records, imported, tmp_path,
                                                           capsys):
  from swahili100 import train as train_lib
  run, _ = imported
  argv = ["--config", "configs/continue.py", "--workdir", str(tmp_path / "w"),
          *continue_flags(tiny_records, run, **{"model.num_layers": 3})]
  assert train_lib.main(argv) == 2
  err = capsys.readouterr().err
  assert "--config.model.num_layers=3" in err and "init.from" in err and "2" in err
  assert not (tmp_path / "w").exists()


def test_import_into_a_gs_bucket_and_evaluate_from_it(tiny_records, tmp_path):
  """--output gs://...: the run folder appears in the bucket only once complete, and evaluate
  reads it there (a local GCS emulator; real gcsfs and tensorstore)."""
  import subprocess
  import sys
  gcs_emulator = pytest.importorskip("gcs_emulator")
  _, tok_path, _ = tiny_records
  src = make_hf(tmp_path / "hf", tok_path, SMALL, layers=1, seed=5)
  texts = tmp_path / "texts.jsonl"
  texts.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                           for i, t in enumerate(documents(3, seed=7))))
  bin_ = os.path.join(os.path.dirname(sys.executable), "swahili100")
  with gcs_emulator.serve("imp") as env:
    env = {**os.environ, **env, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([bin_, "import", "--hf", src, "--output", "gs://imp/runs/tiny"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "eval.json"
    r = subprocess.run([bin_, "evaluate", "--checkpoint", "gs://imp/runs/tiny", "--tasks", "bpb",
                        "--data", f"bpb={texts}", "--output", str(out)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
  local = str(tmp_path / "local")
  assert hf_import.main(["--hf", src, "--output", local]) == 0
  from swahili100 import evaluate as evaluate_lib
  out_local = tmp_path / "eval-local.json"
  assert evaluate_lib.main(["--checkpoint", local, "--tasks", "bpb", "--data", f"bpb={texts}",
                            "--output", str(out_local)]) == 0
  got, want = (json.loads(p.read_text())["tasks"]["bpb"]["bpb"] for p in (out, out_local))
  assert got == want and 0 < got < 20
