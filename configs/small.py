"""Small: an 8.1M-parameter Llama (vocab 16384, tied embeddings) on the sw-news token records.

Command (2 CPU cores; records and a 16k BPE made by the project's pipeline on sw-news, as in
docs/benchmarks.md "Small model"):
  swahili100 train --config configs/small.py --workdir runs/small \
      --config.data.records_dir=data/processed --config.data.tokenizer=tokenizer/swahili_bpe.json
Hardware: 2 CPU cores; 27 min for 1,700 steps x 8 x 256 = 3.5M tokens (2.2k tokens/s), reaching
  1.419 validation bits/byte on sw-news (2026-12-01, docs/benchmarks.md).
Sizes chosen by the ablations in docs/RESEARCH.md ("Ablations on sw-news"): batch 8 and SwiGLU
  1024 won at equal tokens, GQA 2:1 costs nothing measurable.
Ablations: --config configs/small.py:ablation, a 2-layer, 256-step variant (1M tokens a run with
  `swahili100 sweep --tokens 1048576`), ~6 min a run on 2 cores.
"""

from configs import debug


def get_config(arg: str | None = None):
  c = debug.get_config()
  m = c.model
  m.vocab_size = 16384         # the tokenizer's --vocab-size
  m.d_model = 256
  m.num_layers = 4
  m.num_heads = 4
  m.num_kv_heads = 2           # GQA 2:1
  m.head_dim = 64
  m.mlp_dim = 1024             # SwiGLU hidden (4 d_model): 1.784 vs 1.799 bpb for 768 (ablation)
  m.tie_embeddings = True      # the 4.2M-parameter embedding is most of the model: share it

  c.data.records_dir = "data/processed"
  c.data.tokenizer = "tokenizer/swahili_bpe.json"
  c.data.seq_len = 256
  c.data.batch_size = 8        # 2,048 tokens per step: more steps per token won (ablation)

  c.optim.lr = 1e-3            # flat optimum 6e-4..2e-3 at 256 steps; a 7x longer run: middle
  c.optim.warmup_steps = 100
  c.optim.schedule = "cosine"

  c.train.num_steps = 1700
  c.train.log_every = 20
  c.train.eval_every = 340     # 5 points on the curve
  c.train.eval_batches = 32    # 65k tokens a pass, harder than the split's mean (1.52 vs 1.42):
                               # the curve's shape; `evaluate --tasks bpb` gives the figure
  c.train.checkpoint_every = 340
  if arg == "ablation":        # half the depth, 1M tokens (256 steps), the grid's old defaults
    m.num_layers = 2
    m.mlp_dim = 768
    c.data.batch_size = 16
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 26  # 10%, as `swahili100 sweep --warmup-fraction 0.1` sets it
    c.train.eval_batches = -1  # the whole validation split (246k tokens on sw-news)
    c.train.update(num_steps=256, log_every=8, eval_every=64,  # 4 validation passes
                   checkpoint_every=100000)  # only the final checkpoint (the sweep's marker)
  return c
