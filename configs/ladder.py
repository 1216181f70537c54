"""Ladder: a Llama family indexed by depth alone, for scaling ladders on sw-news.

Command (2 CPU cores; the sw-news records and 16k BPE of docs/benchmarks.md "Small model"):
  swahili100 ladder --config configs/ladder.py:quick --workdir runs/ladder-quick \
      -- --config.data.records_dir=data/processed --config.data.tokenizer=tokenizer/swahili_bpe.json
  swahili100 train --config configs/ladder.py:4 --workdir runs/d4      # one rung, depth 4
Hardware: 2 CPU cores; `:quick` (3 budgets x 3 sizes + 1 held-out run, two at a time) 9.7 min;
  `:full` (docs/RESEARCH.md "Scaling ladder") a few hours.

The family (one number names a model; `depth` = layers):
  d_model = 64 * depth (nanochat's aspect ratio), head_dim 32, heads = 2 * depth, kv heads =
  depth (GQA 2:1 at every size), SwiGLU hidden = 4 * d_model, tied embeddings.
Learning rates transfer by rule, not by tuning per size: Muon's update is orthogonalised and
  scaled by the matrix shape (optax.contrib.muon), so its rate is held fixed across widths;
  the AdamW groups (the tied embedding and the norm scales) are held fixed too, the muP choice
  for embeddings and vector parameters under Adam. The small model's tuned values (configs/
  small.py): Muon 0.04, embedding 0.01, norms 2e-3. The rule is not yet measured at two widths
  (docs/RESEARCH.md "Scaling ladder"): do that before reading the `:full` ladder's exponents.
`ladder` section: the grid `swahili100 ladder` runs (sizes as depths, budgets in training FLOPs,
  FLOPs from flops.py including the tied head); `--sizes` / `--flops` override it.
"""

from configs import base

GRIDS = {   # depths, compute budgets (FLOPs), the held-out run (depth, FLOPs), runs at once
    "quick": ([1, 2, 3], [1e12, 2.5e12, 6e12], (3, 1.2e13), 2),
    "full": ([1, 2, 3, 4, 5], [1e12, 3e12, 1e13, 3e13], (6, 1e14), 2),
}
# What every ladder predicts: configs/small.py (depth 4's shapes) at its 4.3M tokens, and the
# compute-optimal model for the same budget (2 CPU cores for 30 minutes: ~2.2e14 FLOPs).
PREDICT, BUDGET = "4:4.3e6", "2.2e14"


def model(m, depth: int):
  """The family's rule: every shape from `depth`."""
  m.num_layers = depth
  m.d_model = 64 * depth
  m.head_dim = 32
  m.num_heads = 2 * depth      # d_model / head_dim
  m.num_kv_heads = depth       # GQA 2:1 at every size
  m.mlp_dim = 4 * m.d_model
  m.tie_embeddings = True


def get_config(arg: str | None = None):
  c = base.get_config()
  grid = arg if arg in GRIDS else "quick"
  depth = int(arg) if arg and arg.isdigit() else 2
  model(c.model, depth)
  c.model.vocab_size = 16384   # the sw-news 16k BPE (the records' manifest decides)

  c.data.records_dir = "data/processed"
  c.data.tokenizer = "tokenizer/swahili_bpe.json"
  c.data.seq_len = 256
  c.data.batch_size = 4        # 1,024 tokens a step: the smallest budgets still get ~35+ steps

  c.optim.name = "muon"
  c.optim.muon_lr = 0.04       # held fixed across widths (the transfer rule above)
  c.optim.embed_lr = 0.01
  c.optim.lr = 2e-3
  c.optim.schedule = "cosine"  # the ladder sets num_steps and 10 % warmup per run

  c.train.log_every = 10
  c.train.eval_every = 0       # one validation pass, at the end...
  c.train.eval_batches = -1    # ...over the whole split: the figure the fit reads
  c.train.checkpoint_every = 100000   # only the final checkpoint (the sweep's marker)

  sizes, budgets, (hold_depth, hold_flops), parallel = GRIDS[grid]
  c.ladder = {"grid": grid, "sizes": ",".join(map(str, sizes)),
              "flops": ",".join(f"{f:g}" for f in budgets),
              "holdout": f"{hold_depth}:{hold_flops:g}", "warmup_fraction": 0.1,
              "min_steps": 30,   # fewer steps are mostly warmup: such a run is left out
              "parallel": parallel,   # runs at once: 1-10M models use one core each well
              "predict": PREDICT,     # DEPTH:TOKENS or N=..,D=.. (";" between several)
              "budget": BUDGET}       # FLOPs, comma-separated; `--predict` / `--budget` add
  return c
