"""Evaluation suite: lm-eval's conventions, the JAX scorer, task data (files and the Hub), the
CLI and its report, training hooks, and per-item agreement of the three scorers on real data."""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swahili100 import evaluate, lm, sharding, train
from swahili100.evals import EvalDataError, datasets, scoring, tasks
from conftest import SHARED_DATA, tiny_config, xla_flags

XCOPA_ITEMS = [
    {"premise": "Mvua kubwa ilinyesha.", "choice1": "Ardhi ililowa.", "choice2": "Jua liliwaka.",
     "question": "effect", "label": 0, "idx": 0},
    {"premise": "Mtoto alilia.", "choice1": "Alianguka.", "choice2": "Alicheka sana.",
     "question": "cause", "label": 0, "idx": 1},
    {"premise": "Mwalimu aliwafundisha wanafunzi.", "choice1": "Walijifunza.",
     "choice2": "Walilala.", "question": "effect", "label": 0, "idx": 2},
]
SIB_TSV = ("index_id\tcategory\ttext\n"
           "1\tsports\tTimu ya taifa ilishinda mechi ya jana.\n"
           "2\thealth\tDaktari alimshauri anywe maji mengi.\n"
           "3\tpolitics\tSerikali imetangaza mpango mpya.\n")


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
  return str(path)


@pytest.fixture(scope="module")
def run(tiny_records, tmp_path_factory):
  """A tiny trained run with a 128-token context (room for whole XCOPA and SIB-200 items)."""
  workdir = str(tmp_path_factory.mktemp("evals") / "run")
  config = tiny_config(*tiny_records, **{"data.seq_len": 128, "train.num_steps": 30,
                                         "train.checkpoint_every": 30,
                                         "train.eval_every": 30})
  assert train.run(config, workdir) == 0
  return workdir, config


@pytest.fixture(scope="module")
def loaded(run):
  from swahili100 import inference
  config, model = inference.load(run[0])
  graphdef, params = nnx.split(model, nnx.Param)
  mesh = sharding.make_mesh({"data": -1}, jax.devices())
  return config, model, graphdef, params, mesh, lm.load_tokenizer(config.data.tokenizer)


# ------------------------------------------------------------------ lm-eval's conventions


def _recorder(tok):
  """lm-eval's own TemplateLM on our tokenizer, returning the token requests it builds."""
  from lm_eval.api.model import TemplateLM

  class Recorder(TemplateLM):
    eot_token_id = 0
    loglikelihood_rolling = generate_until = None

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
      return tok.encode(string).ids

    def _loglikelihood_tokens(self, requests, **kwargs):
      return [(ctx, cont) for _, ctx, cont in requests]
  return Recorder()


def test_encode_pair_is_lm_evals_encoding(tiny_records):
  pytest.importorskip("lm_eval")
  from lm_eval.api.instance import Instance
  tok = lm.load_tokenizer(tiny_records[1])
  pairs = [("Mvua ilinyesha kwa hiyo", " ardhi ililowa."), ("Mada: ", "michezo"),
           ("Habari  ", " za asubuhi"), ("", "Habari za leo"), ("Ng'ombe", "!")]
  recorder = _recorder(tok)
  want = recorder.loglikelihood([Instance("loglikelihood", {}, p, 0) for p in pairs])
  got = [scoring.encode_pair(tok, c, x, 0) for c, x in pairs]
  assert got == [tuple(w) for w in want]
  assert got[1][0] == tok.encode("Mada:").ids  # the trailing space moved to the continuation
  assert got[3][0] == [0]                       # empty context: the prefix token


@pytest.mark.parametrize("n,max_len", [(1, 4), (4, 4), (5, 4), (10, 4), (23, 8), (7, 1)])
def test_rolling_windows_are_lm_evals(n, max_len):
  utils = pytest.importorskip("lm_eval.utils")
  ids = list(range(100, 100 + n))
  want = [utils.make_disjoint_window(w) for w in
          utils.get_rolling_token_windows(ids, prefix_token=0, max_seq_len=max_len, context_len=1)]
  got = scoring.rolling_windows(ids, 0, max_len)
  assert got == [tuple(w) for w in want]
  assert [t for _, cont in got for t in cont] == ids  # every token predicted once
  assert all(len(c) + len(x) <= max_len + 1 for c, x in got)


def test_xcopa_prompt_is_lm_evals_xcopa_sw():
  pytest.importorskip("lm_eval")
  import importlib.util

  import lm_eval
  path = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "xcopa", "utils.py")
  spec = importlib.util.spec_from_file_location("lm_eval_xcopa_utils", path)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  task = tasks.TASKS["xcopa"]
  for item in XCOPA_ITEMS:
    assert task.context(item) == ref.doc_to_text_sw(item)
    assert task.choices(item) == ref.doc_to_choice(item)
  assert task.context(XCOPA_ITEMS[0]) == "Mvua kubwa ilinyesha kwa hiyo"
  assert task.choices(XCOPA_ITEMS[1]) == ["alianguka.", "alicheka sana."]
  assert task.delimiter == " "  # lm-eval's default target_delimiter


# ------------------------------------------------------------------ the JAX scorer


def test_scorer_equals_a_direct_forward_with_truncation_and_greedy(loaded):
  _, model, graphdef, params, mesh, _ = loaded
  rng = np.random.RandomState(0)
  max_len = 24
  reqs = [(rng.randint(7, 300, rng.randint(1, 30)).tolist(),
           rng.randint(7, 300, rng.randint(1, 6)).tolist()) for _ in range(21)]
  # a continuation that is the model's own greedy rollout
  ctx = [40, 41, 42]
  seq = list(ctx)
  for _ in range(3):
    seq.append(int(jnp.argmax(model(jnp.asarray([seq]))[0, -1])))
  reqs.append((ctx, seq[3:]))
  got = scoring.loglikelihoods(graphdef, params, reqs, mesh, max_len, batch_size=4)
  forward = jax.jit(lambda ids: jax.nn.log_softmax(model(ids)[0], axis=-1))
  for (c, x), (ll, greedy) in zip(reqs, got):
    ids = (c + x)[-(max_len + 1):]
    # one row, right-padded to max_len: causal, so the padding changes no earlier logit
    logp = np.asarray(forward(jnp.asarray([ids[:-1] + [0] * (max_len + 1 - len(ids))])))
    n = min(len(x), len(ids) - 1)
    want = sum(logp[t - 1, ids[t]] for t in range(len(ids) - n, len(ids)))
    assert ll == pytest.approx(float(want), abs=1e-4)
  assert got[-1][1] is True
  assert sum(g for _, g in got[:-1]) < 21  # random continuations are (mostly) not greedy
  assert scoring.bucket(5, 128) == 16 and scoring.bucket(33, 128) == 64
  assert scoring.bucket(100, 100) == 100


def test_scorer_on_a_two_device_mesh_equals_one_device(run, tmp_path):
  """Every process holds the same requests; shard_global_batch splits rows over 'data'."""
  import subprocess
  import sys
  from conftest import REPO
  code = (
      "import json, sys, jax\n"
      "from flax import nnx\n"
      "from swahili100 import inference, sharding\n"
      "from swahili100.evals import scoring\n"
      "mesh = sharding.make_mesh({'data': -1}, jax.devices())\n"
      "config, model = inference.load(sys.argv[1], mesh)\n"
      "g, p = nnx.split(model, nnx.Param)\n"
      "reqs = [([5 + i, 9, 11 + i], [20, 21 + i]) for i in range(7)]\n"
      "out = scoring.loglikelihoods(g, p, reqs, mesh, 32, 3)\n"
      "print('N', mesh.shape['data'], json.dumps(out))\n")
  outs = {}
  for devices in (1, 2):
    env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", code, run[0]], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("N ")][0].split(" ", 2)
    assert int(line[1]) == devices
    outs[devices] = json.loads(line[2])
  for (a, ga), (b, gb) in zip(outs[1], outs[2]):
    assert a == pytest.approx(b, abs=1e-5) and ga == gb


# ------------------------------------------------------------------ tasks and their figures


def test_score_gives_accuracies_stderr_and_baselines():
  task = tasks.TASKS["xcopa"]
  items = [{**it, "id": str(i)} for i, it in enumerate(XCOPA_ITEMS)] + [
      {**XCOPA_ITEMS[0], "label": 1, "id": "3"}]
  # choice lengths: "ardhi ililowa." 14 / "jua liliwaka." 13, "alianguka." 10 /
  # "alicheka sana." 14, "walijifunza." 12 / "walilala." 9
  lls = [-1.0, -2.0,    # item 0 (gold 0): right, per character -0.071 vs -0.154: right
         -5.0, -1.0,    # item 1 (gold 0): wrong, per character -0.5 vs -0.071: wrong
         -1.0, -1.1,    # item 2 (gold 0): right, per character -0.083 vs -0.122: right
         -14.0, -12.9]  # item 3 (gold 1): right, per character -1.0 vs -0.992: right
  metrics, rows = tasks.score(task, items, [(x, False) for x in lls])
  assert metrics["acc"] == 0.75 and metrics["n"] == 4
  assert metrics["acc_stderr"] == pytest.approx(np.sqrt(0.75 * 0.25 / 3))
  assert metrics["chance"] == 0.5 and metrics["majority"] == 0.75
  assert [r["prediction"] for r in rows] == [0, 1, 0, 1]
  assert [r["gold"] for r in rows] == [0, 0, 0, 1]
  assert rows[0]["scores"] == [-1.0, -2.0] and rows[0]["task"] == "xcopa" and rows[0]["id"] == "0"
  assert metrics["acc_norm"] == 0.75 and [r["prediction_norm"] for r in rows] == [0, 1, 0, 1]
  mean_stderr = pytest.importorskip("lm_eval.api.metrics").mean_stderr  # lm-eval's own
  assert metrics["acc_stderr"] == pytest.approx(mean_stderr([r["correct"] for r in rows]))


def test_cloze_tasks_read_published_formats(tmp_path):
  sib = tmp_path / "dev.tsv"
  sib.write_text(SIB_TSV)
  items, data = tasks.load(tasks.TASKS["sib200"], str(sib))
  assert data == str(sib) and [i["id"] for i in items] == ["1", "2", "3"]
  task = tasks.TASKS["sib200"]
  assert task.context(items[0]) == "Timu ya taifa ilishinda mechi ya jana.\nMada:"
  assert task.choices(items[0])[task.gold_index(items[0])] == "michezo"
  news = tmp_path / "news.tsv"
  news.write_text('category\theadline\ttext\turl\nsports\tSimba  yashinda\t"Simba ilishinda '
                  'jana.  Mashabiki walifurahi! Kocha alisema ""asante""."\thttp://x\n')
  items, _ = tasks.load(tasks.TASKS["masakhanews_text"], str(news))
  assert tasks.TASKS["masakhanews"].context(items[0]) == "Simba yashinda\nMada:"
  assert tasks.TASKS["masakhanews_text"].context(items[0]) == (
      "Simba ilishinda jana. Mashabiki walifurahi!\nMada:")
  senti = tmp_path / "senti.tsv"
  senti.write_text("tweet\tlabel\nAsante sana\tpositive\nSipendi hii\tangry\n")
  with pytest.raises(EvalDataError, match=r"senti.tsv: item 2 has answer 'angry'"):
    tasks.load(tasks.TASKS["afrisenti"], str(senti))
  with pytest.raises(EvalDataError,
                     match=r"without the column\(s\) \['category', 'headline', 'text'\]"):
    tasks.load(tasks.TASKS["masakhanews"], str(senti))


def test_text_bpb_counts_every_token_in_windows(loaded, tmp_path):
  config, model, graphdef, params, mesh, tok = loaded
  docs = ["Mvua kubwa ilinyesha jana jioni katika mji wa Dodoma na kusababisha mafuriko. " * 4,
          "Habari za asubuhi?"]
  score_fn = tasks.jax_scorer(graphdef, params, mesh, 16, 8)
  m, rows = tasks.text_bpb(docs, tok, score_fn, max_len=16)
  ids = [tok.encode(d).ids for d in docs]
  assert m["tokens"] == sum(len(i) for i in ids) and len(ids[0]) > 4 * 16  # several windows
  assert m["bytes"] == sum(len(d.encode()) for d in docs)
  # the same figure as one long forward per window, computed independently
  nats = 0.0
  forward = jax.jit(lambda ids: jax.nn.log_softmax(model(ids)[0], axis=-1))
  for doc_ids in ids:
    for ctx, cont in scoring.rolling_windows(doc_ids, 0, 16):
      row = ctx + cont
      logp = np.asarray(forward(jnp.asarray([row[:-1] + [0] * (17 - len(row))])))
      nats -= sum(logp[t - 1, row[t]] for t in range(len(row) - len(cont), len(row)))
  assert m["bpb"] == pytest.approx(nats / np.log(2) / m["bytes"], rel=1e-5)
  assert [r["tokens"] for r in rows] == [len(i) for i in ids]


# ------------------------------------------------------------------ the CLI and its report


def test_cli_writes_report_items_and_matches_training(run, tmp_path, capsys):
  workdir, config = run
  xcopa = _write_jsonl(tmp_path / "xcopa.jsonl", XCOPA_ITEMS)
  sib = tmp_path / "sib.tsv"
  sib.write_text(SIB_TSV)
  docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": "Habari za leo, rafiki yangu."}] * 2)
  out = tmp_path / "ev" / "eval.json"
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "xcopa,sib200,bpb", "--data",
                        f"xcopa={xcopa}", "--data", f"sib200={sib}", "--max-batches", "2",
                        "--output", str(out)]) == 0
  report = json.loads(out.read_text())
  assert set(report) == {"checkpoint", "step", "items", "tasks"} and report["step"] == 30
  x = report["tasks"]["xcopa"]
  assert {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "chance", "majority",
          "data"} <= set(x)
  assert x["n"] == 3 and x["chance"] == 0.5 and x["majority"] == 1.0 and x["data"] == xcopa
  assert report["tasks"]["sib200"]["chance"] == pytest.approx(1 / 7)
  b = report["tasks"]["bpb"]
  assert set(b) >= {"bpb", "loss", "tokens", "bytes", "data"}
  with open(os.path.join(workdir, "logs", "training.jsonl")) as f:
    final = [json.loads(l) for l in f if "eval_bpb" in l][-1]
  assert b["bpb"] == pytest.approx(final["eval_bpb"], rel=1e-5)  # the training eval's 2 batches
  rows = [json.loads(l) for l in open(tmp_path / "ev" / "eval.items.jsonl")]
  assert [(r["task"], r["id"]) for r in rows] == [("xcopa", "0"), ("xcopa", "1"), ("xcopa", "2"),
                                                  ("sib200", "1"), ("sib200", "2"),
                                                  ("sib200", "3")]
  assert all(len(r["scores"]) == (2 if r["task"] == "xcopa" else 7) for r in rows)
  assert np.mean([r["correct"] for r in rows[:3]]) == x["acc"]
  assert "xcopa: acc" in capsys.readouterr().out
  # the text-file bpb, limited to the first document
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "bpb", "--data", f"bpb={docs}",
                        "--limit", "1", "--output", str(tmp_path / "b.json")]) == 0
  t = json.loads((tmp_path / "b.json").read_text())["tasks"]["bpb"]
  assert t["bytes"] == len("Habari za leo, rafiki yangu.".encode()) and t["data"] == docs


def test_cli_names_the_flag_of_missing_data(run, tmp_path, capsys):
  workdir, _ = run
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "sib200"]) == 2
  assert "--data sib200=PATH" in capsys.readouterr().err
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "xcopa", "--data",
                        f"xcopa={tmp_path}/none.jsonl"]) == 2
  assert f"--data xcopa={tmp_path}/none.jsonl: no such file" in capsys.readouterr().err
  assert evaluate.main(["--checkpoint", workdir, "--tasks", "hellaswag"]) == 2
  assert "unknown task 'hellaswag'" in capsys.readouterr().err
  assert not (tmp_path / "eval.json").exists()


class _Hub(http.server.BaseHTTPRequestHandler):
  """The Hub's file endpoint: HEAD/GET /datasets/<repo>/resolve/<revision>/<path>."""
  files = {}

  def log_message(self, *args):
    pass

  def _head(self):
    body = self.files.get(self.path.split("?")[0])
    if body is None:
      self.send_response(404)
      self.send_header("Content-Length", "0")
      self.end_headers()
      return None
    self.send_response(200)
    self.send_header("X-Repo-Commit", "c" * 40)
    self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    return body

  def do_HEAD(self):
    self._head()

  def do_GET(self):
    body = self._head()
    if body is not None:
      self.wfile.write(body)


@pytest.fixture
def hub(tmp_path, monkeypatch):
  """A local server with the Hub's layout of the XCOPA-sw (parquet) and SIB-200 (TSV) tests."""
  pa = pytest.importorskip("pyarrow")
  import pyarrow.parquet as pq
  path = tmp_path / "x.parquet"
  pq.write_table(pa.Table.from_pylist([{**i, "changed": False} for i in XCOPA_ITEMS]), path)
  _Hub.files = {
      "/datasets/cambridgeltl/xcopa/resolve/main/sw/test-00000-of-00001.parquet":
          path.read_bytes(),
      "/datasets/Davlan/sib200/resolve/main/data/swh_Latn/test.tsv": SIB_TSV.encode()}
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
  yield str(tmp_path / "hub-cache")
  srv.shutdown()


def test_hub_test_splits_load_through_hf_hub_download(hub, run, tmp_path):
  items, data = tasks.load(tasks.TASKS["xcopa"], "hub", cache_dir=hub)
  assert data == "hub:cambridgeltl/xcopa/sw/test-00000-of-00001.parquet@main"
  assert [i["premise"] for i in items] == [i["premise"] for i in XCOPA_ITEMS]
  assert os.path.exists(os.path.join(hub, "datasets--cambridgeltl--xcopa"))  # HF's cache layout
  out = tmp_path / "eval.json"
  assert evaluate.main(["--checkpoint", run[0], "--tasks", "xcopa,sib200", "--data", "xcopa=hub",
                        "--data", "sib200=hub", "--hub-cache", hub, "--output", str(out)]) == 0
  report = json.loads(out.read_text())["tasks"]
  assert report["xcopa"]["n"] == 3 and report["sib200"]["n"] == 3
  assert report["sib200"]["data"] == "hub:Davlan/sib200/data/swh_Latn/test.tsv@main"
  with pytest.raises(EvalDataError, match="cannot fetch data/swa/test.tsv of the Hub dataset "
                                          "masakhane/afrisenti"):
    tasks.load(tasks.TASKS["afrisenti"], "hub", cache_dir=hub)


# ------------------------------------------------------------------ training hooks


def test_training_hook_scores_xcopa_like_the_cli(run, loaded, tmp_path):
  workdir, config = run
  _, _, graphdef, params, mesh, tok = loaded
  xcopa = _write_jsonl(tmp_path / "x.jsonl", XCOPA_ITEMS)
  config = config.copy_and_resolve_references()
  config.train.eval_tasks = "bpb,xcopa"
  config.train.eval_limit = 2
  config.train.eval_data = f"xcopa={xcopa}"
  hooks = tasks.training_hooks(config)
  assert len(hooks) == 1  # bpb without a file is bpb.validation_hook's job
  with jax.set_mesh(mesh):
    got = hooks[0](30, params, graphdef, mesh)
  assert set(got) == {"eval_xcopa_acc", "eval_xcopa_acc_norm"}
  items, _ = tasks.load(tasks.TASKS["xcopa"], xcopa, limit=2)
  want, _ = tasks.run(tasks.TASKS["xcopa"], items, tok,
                      tasks.jax_scorer(graphdef, params, mesh, 128, 8))
  assert got == {"eval_xcopa_acc": want["acc"], "eval_xcopa_acc_norm": want["acc_norm"]}
  config.train.eval_tasks = "sib200"
  with pytest.raises(EvalDataError, match="config.train.eval_data has no sib200=PATH"):
    tasks.training_hooks(config)
  config.train.eval_tasks = ""
  assert tasks.training_hooks(config) == []


def test_parse_specs_names_the_flag():
  assert datasets.parse_specs("xcopa=a.jsonl, sib200=hub") == {"xcopa": "a.jsonl",
                                                               "sib200": "hub"}
  with pytest.raises(EvalDataError, match=r"config.train.eval_data 'xcopa': expected TASK=PATH"):
    datasets.parse_specs("xcopa", flag="config.train.eval_data")


# ------------------------------------------------------------------ the lm-eval adapter


def test_adapter_rolling_and_generate_until_are_ours(loaded):
  pytest.importorskip("lm_eval")
  from lm_eval.api.instance import Instance
  from lm_eval.api.registry import get_model

  from swahili100 import generate
  from swahili100.evals import harness
  config, model, graphdef, params, mesh, tok = loaded
  assert get_model("swahili100") is harness.Swahili100LM
  assert get_model("hf").__name__ == "HFLM"  # ours registered without hiding lm-eval's models
  adapter = harness.Swahili100LM(config=config, model=model, mesh=mesh, batch_size=4,
                                 max_length=16)
  docs = ["Mvua kubwa ilinyesha jana jioni katika mji wa Dodoma na kusababisha mafuriko.",
          "Habari za asubuhi?"]
  rolling = adapter.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (d,), 0)
                                           for d in docs])
  _, rows = tasks.text_bpb(docs, tok, tasks.jax_scorer(graphdef, params, mesh, 16, 4), 16)
  np.testing.assert_allclose([-x for x in rolling], [r["nats"] for r in rows], rtol=1e-5)
  prompt = "Watoto walicheza mpira"
  # contexts keep their last max_length - max_gen_toks = 4 tokens, as lm-eval's HFLM does
  ids = generate.generate_ids(model, tok.encode(prompt).ids[-4:], 12, eos_id=None)
  text = tok.decode(ids)
  stop = text[len(text) // 2:][:2] if len(text) > 4 else "\n"
  [got] = adapter.generate_until([Instance("generate_until", {}, (prompt, {
      "until": [stop], "max_gen_toks": 12, "do_sample": False}), 0)])
  assert got == text[:text.find(stop)] and stop not in got


def test_cli_harness_lm_eval_gives_the_native_figures(run, tmp_path):
  pytest.importorskip("lm_eval")
  xcopa = _write_jsonl(tmp_path / "x.jsonl", XCOPA_ITEMS)
  figures = {}
  for mode in ("swahili100", "lm-eval"):
    out = tmp_path / mode / "eval.json"
    assert evaluate.main(["--checkpoint", run[0], "--tasks", "xcopa", "--data", f"xcopa={xcopa}",
                          "--harness", mode, "--output", str(out)]) == 0
    figures[mode] = json.loads(out.read_text())["tasks"]["xcopa"]
    figures[mode + " rows"] = [json.loads(l) for l in open(tmp_path / mode / "eval.items.jsonl")]
  assert figures["lm-eval"]["harness"] == "lm-eval:swahili100_xcopa"
  for key in ("acc", "acc_norm", "acc_stderr", "n", "chance", "majority", "data"):
    assert figures["lm-eval"][key] == figures["swahili100"][key], key
  for a, b in zip(figures["swahili100 rows"], figures["lm-eval rows"]):
    assert a["prediction"] == b["prediction"] and a["scores"] == pytest.approx(b["scores"],
                                                                                abs=1e-4)


# ------------------------------------------------------------------ three scorers agree


def _needs_shared(*parts):
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"{path} absent (../shared/data holds the real evaluation sets)")
  return str(path)


@pytest.mark.parametrize("task,parts", [("xcopa", ("xcopa-sw", "val.jsonl")),
                                        ("sib200", ("sib200-swh", "dev.tsv"))])
def test_ours_lm_eval_on_jax_and_lm_eval_hf_agree_per_item(task, parts, run, loaded, tmp_path):
  """Same prediction on every item and log-likelihoods within 1e-3 nats (float32; measured
  <= 3e-5): our scorer, lm-eval over the JAX adapter, lm-eval's `hf` on the HF export."""
  path = _needs_shared(*parts)
  lm_eval = pytest.importorskip("lm_eval")
  pytest.importorskip("transformers")
  pytest.importorskip("accelerate")
  from swahili100.evals import harness
  from swahili100.export import hf
  config, model, graphdef, params, mesh, tok = loaded
  items, _ = tasks.load(tasks.TASKS[task], path)
  ours, ours_rows = tasks.run(tasks.TASKS[task], items, tok,
                              tasks.jax_scorer(graphdef, params, mesh, 128, 32))
  kwargs = dict(tasks=[f"swahili100_{task}"], log_samples=True, bootstrap_iters=0,
                task_manager=harness.task_manager({task: path}))
  adapter = harness.Swahili100LM(config=config, model=model, mesh=mesh)
  jax_rows = harness.report(lm_eval.simple_evaluate(model=adapter, **kwargs), [task], {})[1]
  out = hf.export_hf(config, model, config.data.tokenizer, str(tmp_path / "hf"))
  hf_res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={out},dtype=float32",
                                   device="cpu", batch_size=32, **kwargs)
  hf_rows = harness.report(hf_res, [task], {})[1]
  assert len(ours_rows) == len(jax_rows) == len(hf_rows) == len(items)
  for a, b, c in zip(ours_rows, jax_rows, hf_rows):
    assert a["id"] == b["id"] == c["id"]
    assert a["prediction"] == b["prediction"] == c["prediction"], a["id"]
    assert a["prediction_norm"] == b["prediction_norm"] == c["prediction_norm"], a["id"]
    np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(c["scores"], a["scores"], atol=1e-3, rtol=0)
  # items differ by far more than the tolerance, so agreeing item by item means something
  assert np.std([r["scores"][0] for r in ours_rows]) > 0.05
  assert ours["n"] == len(items)


def test_without_lm_eval_evaluate_imports_and_the_harness_flag_says_what_to_install():
  """lm-eval is the [eval] extra: without it `evaluate` still imports (bpb and the native tasks
  run) and `--harness lm-eval` is refused with the install command."""
  code = ("import sys; sys.modules['lm_eval'] = None\n"
          "from swahili100 import evaluate\n"
          "from swahili100.evals import harness\n"
          "print(repr(harness.LM_EVAL_MISSING))")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert r.returncode == 0, r.stderr[-1500:]
  assert "--harness lm-eval needs lm-evaluation-harness (pip install -e '.[eval]')" in r.stdout
