"""lm-evaluation-harness on a JAX checkpoint: the `swahili100` model and the Swahili task YAMLs.

    import lm_eval
    from swahili100.evals import harness                   # registers the model "swahili100"
    lm = harness.Swahili100LM(checkpoint="runs/base")       # lm-eval's LM API, batched on JAX
    out = lm_eval.simple_evaluate(model=lm, tasks=["swahili100_xcopa"],
                                  task_manager=harness.task_manager("xcopa=val.jsonl"))
    # or: simple_evaluate(model="swahili100", model_args="checkpoint=runs/base", ...)

The tasks live in lm_eval_tasks/*.yaml (package data), named swahili100_<task>; their prompts,
choices and answers are the functions of tasks.py, so lm-eval and `swahili100 evaluate` ask the
same questions. They read local files (or `hub`) given as task metadata `swahili100_data`
("xcopa=PATH,sib200=PATH"; `task_manager` sets it), never lm-eval's own downloads. Any other
lm-eval task runs too (its data is lm-eval's business: offline, only cached ones).

Log-likelihoods come from `scoring.loglikelihoods`, rolling log-likelihoods from its
`rolling_windows` (max_length = the checkpoint's `config.data.seq_len`), and generate_until from
`generate.generate_batch` (greedy unless the request samples; cut at its `until` strings).
"""

import os

import jax
from flax import nnx

from swahili100 import generate, inference, lm, sharding, special_tokens
from swahili100.align import chat
from swahili100.evals import EvalDataError, datasets, scoring, tasks

try:   # the [eval] extra; without it this module imports and LM_EVAL_MISSING says why
  import lm_eval.models  # noqa: F401 (lm-eval fills its registry lazily only while it is empty:
  from lm_eval.api.model import TemplateLM  # registering ours first would hide "hf" and the rest)
  from lm_eval.api.registry import register_model
  LM_EVAL_MISSING = ""
except ImportError as e:
  TemplateLM, register_model = object, lambda name: (lambda cls: cls)
  LM_EVAL_MISSING = f"--harness lm-eval needs lm-evaluation-harness (pip install -e '.[eval]'): {e}"

TASKS_DIR = os.path.join(os.path.dirname(__file__), "lm_eval_tasks")
PREFIX = "swahili100_"  # lm-eval name of task t: swahili100_<t>
DATA_KEY = "swahili100_data"


def harness_name(task: str) -> str:
  """lm-eval task name of a `--tasks` entry: ours get the prefix, lm-eval's pass through."""
  return PREFIX + task if task in tasks.NAMES else task


def task_manager(data=None, include_defaults: bool = False):
  """A TaskManager that knows the Swahili YAMLs and hands them `data` ({task: path} or
  'task=path,...'); include_defaults also indexes lm-eval's own tasks (slower to build)."""
  from lm_eval.tasks import TaskManager  # noqa: PLC0415
  if isinstance(data, dict):
    data = ",".join(f"{k}={v}" for k, v in data.items())
  return TaskManager(include_path=TASKS_DIR, include_defaults=include_defaults,
                     metadata={DATA_KEY: data or ""})


def dataset_loader(name: str):
  """custom_dataset of the YAML of task `name`: {'test': Dataset} of its items."""
  def load(**metadata):
    import datasets as hf_datasets  # noqa: PLC0415 (lm-eval's dependency)
    specs = datasets.parse_specs(metadata.get(DATA_KEY) or "", flag=f"metadata {DATA_KEY}")
    if name not in specs:
      raise EvalDataError(f"lm-eval task {PREFIX}{name} needs its data: pass --data {name}=PATH "
                          f"to `swahili100 evaluate`, or metadata {{'{DATA_KEY}': "
                          f"'{name}=PATH'}} to lm-eval (TaskManager(metadata=...))")
    if name == "bpb":
      rows = [{"id": str(i), "text": t} for i, t in enumerate(datasets.documents(specs[name]))]
    else:
      rows, _ = tasks.load(tasks.TASKS[name], specs[name])
    return {"test": hf_datasets.Dataset.from_list(rows)}
  return load


def _batch_size(value, default: int = 32) -> int:
  """lm-eval passes batch_size as an int, a digit string or 'auto' (= our default)."""
  return int(value) if str(value).isdigit() else default


@register_model("swahili100")
class Swahili100LM(TemplateLM):
  """lm-eval's LM over a checkpoint (`inference.load`: a run, a step or a quantized folder), or
  over an in-memory (config, model); batched on a ('data',) mesh of every device."""

  def __init__(self, checkpoint: str | None = None, batch_size=32, max_length=None,
               max_gen_toks: int = 256, prefix_token_id=None, tokenizer: str | None = None,
               *, config=None, model=None, mesh=None, **unused):
    super().__init__()
    del unused  # lm-eval also passes device / max_batch_size: JAX places the batch itself
    self.mesh = mesh or sharding.make_mesh({"data": -1}, jax.devices())
    if model is None:
      if not checkpoint:
        raise EvalDataError("model swahili100 needs model_args checkpoint=<run folder or step>")
      config, model = inference.load(checkpoint, self.mesh)
    self.config, self.model = config, model
    self.graphdef, params = nnx.split(model, nnx.Param)
    self.params = jax.device_put(params, sharding.param_shardings(params, self.mesh))
    self.tokenizer_path = tokenizer or config.data.tokenizer
    self.tok = lm.load_tokenizer(self.tokenizer_path)
    self.batch_size = _batch_size(batch_size)
    self._max_length = int(max_length or config.data.seq_len)
    self.max_gen_toks = int(max_gen_toks)
    self.specials = special_tokens.of(self.tok, self.tokenizer_path)
    self._prefix = self.specials.eos if prefix_token_id is None else int(prefix_token_id)
    self.min_len = scoring.min_len_for(model.config)

  @property
  def eot_token_id(self) -> int:
    return self.specials.eos

  @property
  def prefix_token_id(self) -> int:
    return self._prefix

  @property
  def max_length(self) -> int:
    return self._max_length

  @property
  def tokenizer_name(self) -> str:
    return self.tokenizer_path

  def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
    del add_special_tokens, kwargs  # documents carry no BOS; the prefix token is added apart
    return self.tok.encode(string).ids

  def _score(self, token_requests):
    return scoring.loglikelihoods(self.graphdef, self.params, token_requests, self.mesh,
                                  self._max_length, self.batch_size, self.min_len)

  def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
    del disable_tqdm, kwargs
    out = self._score([(ctx, cont) for _, ctx, cont in requests])
    for (key, _, _), result in zip(requests, out):
      if key is not None:
        self.cache_hook.add_partial("loglikelihood", key, result)
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    del disable_tqdm
    windows, owner = [], []
    for i, (text,) in enumerate(req.args for req in requests):
      for w in scoring.rolling_windows(self.tok_encode(text), self._prefix, self._max_length):
        windows.append(w)
        owner.append(i)
    totals = [0.0] * len(requests)
    for i, (ll, _) in zip(owner, self._score(windows)):
      totals[i] += ll
    for req, total in zip(requests, totals):
      self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
    return totals

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    del disable_tqdm
    out = [None] * len(requests)
    groups = {}  # requests with the same generation arguments run in batches together
    for i, req in enumerate(requests):
      context, kwargs = req.args
      groups.setdefault(repr(sorted(kwargs.items())), []).append((i, context, kwargs))
    for members in groups.values():
      kwargs = dict(members[0][2])
      until = kwargs.pop("until", None) or []
      until = [until] if isinstance(until, str) else list(until)
      max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
      sample = kwargs.pop("do_sample", False)
      temperature = float(kwargs.pop("temperature", 0.0)) if sample else 0.0
      budget = max(self._max_length - max_new, 1)  # left-truncate contexts as HFLM does
      for start in range(0, len(members), self.batch_size):
        chunk = members[start:start + self.batch_size]
        prompts = [(self.tok_encode(c) or [self._prefix])[-budget:] for _, c, _ in chunk]
        new = generate.generate_batch(
            self.model, prompts, max_new, temperature=temperature,
            top_p=float(kwargs.get("top_p", 1.0)), top_k=int(kwargs.get("top_k", 0) or 0),
            seed=int(kwargs.get("seed", 0) or 0), eos_id=self.specials.stop, stop_strings=until,
            decode=self.tok.decode)
        for (i, context, _), ids in zip(chunk, new):
          text = generate.cut_at_stop(
              self.tok.decode(generate.strip_stop(ids, self.specials.stop)), until)
          out[i] = text
          self.cache_hook.add_partial("generate_until", (context, members[0][2]), text)
    return out

  def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
    return chat.render(chat_history, add_generation_prompt=add_generation_prompt)


def report(results: dict, names: list[str], data: dict) -> tuple[dict, list[dict]]:
  """({task: metrics}, item rows) in `swahili100 evaluate`'s format from simple_evaluate's
  output (run with log_samples=True); our tasks are rescored from the logged log-likelihoods
  by tasks.score, so both paths compute every figure the same way."""
  out, rows = {}, []
  for name in names:
    hname = harness_name(name)
    samples = sorted(results.get("samples", {}).get(hname, []), key=lambda s: s["doc_id"])
    if name in tasks.TASKS:
      task = tasks.TASKS[name]
      items = [s["doc"] for s in samples]
      scores = [(float(ll), bool(greedy)) for s in samples for ll, greedy in s["filtered_resps"]]
      metrics, task_rows = tasks.score(task, items, scores)
      rows += task_rows
    elif name == "bpb":
      nats = [-float(s["filtered_resps"][0]) for s in samples]
      nbytes = [len(s["doc"]["text"].encode("utf-8")) for s in samples]
      metrics = {"bpb": lm.bits_per_byte(sum(nats), sum(nbytes)), "bytes": sum(nbytes),
                 "n": len(samples)}
      rows += [{"task": "bpb", "id": s["doc"]["id"], "nats": n, "bytes": b}
               for s, n, b in zip(samples, nats, nbytes)]
    else:
      metrics = {k.split(",")[0]: v for k, v in results["results"].get(hname, {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
      metrics["n"] = len(samples)
    metrics.update(data=data.get(name, "lm-eval"), harness=f"lm-eval:{hname}")
    out[name] = metrics
  return out, rows
