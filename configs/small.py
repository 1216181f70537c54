"""Small: an 8.1M-parameter Llama (vocab 16384, tied embeddings) on the sw-news token records.

Command (2 CPU cores; records and a 16k BPE made by the project's pipeline on sw-news, as in
docs/benchmarks.md "Small model"):
  swahili100 train --config configs/small.py --workdir runs/small \
      --config.data.records_dir=data/processed --config.data.tokenizer=tokenizer/swahili_bpe.json
Hardware: 2 CPU cores; 25.8 min for 1050 steps x 16 x 256 = 4.3M tokens (~2.8k tokens/s, jemalloc
  as the host allocator) including compilation and 3 validation passes: 1.3342 validation
  bits/byte on sw-news (docs/benchmarks.md "Small model").
Recipe (docs/RESEARCH.md "Recipe"): Muon on the blocks' matrices at lr 0.04 and AdamW at lr 0.01 on
  the tied embedding won the 0.5M-token ablations (1.646 vs tuned AdamW's 1.983 bits/byte); batch
  16, the batch those rates were tuned at, also keeps Muon's Newton-Schulz cost at 18 % of a step.
Ablations: --config configs/small.py:ablation, a 2-layer variant (AdamW as in 2026-12-01; the
  recipe's arms are `--config.optim.name=muon ...`), `swahili100 sweep --tokens 524288` runs,
  ~3 min each on 2 cores.
"""

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  m = c.model
  m.vocab_size = 16384         # the tokenizer's --vocab-size
  m.d_model = 256
  m.num_layers = 4
  m.num_heads = 4
  m.num_kv_heads = 2           # GQA 2:1
  m.head_dim = 64
  m.mlp_dim = 1024             # SwiGLU hidden (4 d_model): 1.784 vs 1.799 bpb for 768 (ablation)
  m.tie_embeddings = True      # tied and at a high AdamW lr beat untied at these sizes (ablation)

  c.data.records_dir = "data/processed"
  c.data.tokenizer = "tokenizer/swahili_bpe.json"
  c.data.seq_len = 256
  c.data.batch_size = 16       # 4,096 tokens per step

  c.optim.name = "muon"        # Muon on q/k/v/o and the MLP; AdamW on the embedding and norms
  c.optim.muon_lr = 0.04       # 0.01 / 0.02 / 0.04 / 0.08: 1.750 / 1.747 / 1.744 / 1.774 bpb
  c.optim.embed_lr = 0.01      # the tied embedding: 0.002 / 0.01 / 0.03 / 0.1: 1.744 / 1.646 /
                               # 1.655 / 1.725 bpb (Muon 0.04, ablation)
  c.optim.lr = 2e-3            # norm scales
  c.optim.warmup_steps = 105   # 10 %, as in the ablations
  c.optim.schedule = "cosine"

  c.train.num_steps = 1050     # 950 steps reached 1.3496 in 28 min on glibc's allocator; jemalloc
  #                              (train.host_malloc) makes a step ~20 % faster: the budget buys more
  c.train.log_every = 21
  c.train.eval_every = 350     # 3 points on the curve (350, 700, 1050)
  c.train.eval_batches = 16    # 65k tokens a pass: the curve's shape; `evaluate --tasks bpb`
                               # on the whole split gives the figure
  c.train.checkpoint_every = 350
  if arg == "ablation":        # half the depth, the 2026-12-01 AdamW grid's defaults
    m.num_layers = 2
    m.mlp_dim = 768
    c.optim.name = "adamw"
    c.optim.embed_lr = 0.0     # = lr
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 26  # 10%, as `swahili100 sweep --warmup-fraction 0.1` sets it
    c.train.eval_batches = -1  # the whole validation split
    c.train.update(num_steps=256, log_every=8, eval_every=64,  # 4 validation passes
                   checkpoint_every=100000)  # only the final checkpoint (the sweep's marker)
  return c
