"""Swahili-100 base: a 100,682,496-parameter Llama (vocab 16384, untied embeddings) on ~2.1B tokens.

Command (Cloud TPU v4-8, v5e-8, v5p-8 or v6e-8, one host; larger slices the same, one process
per worker, through launch/tpu_vm.py):
  swahili100 train --config configs/swahili_base.py --workdir gs://BUCKET/runs/base \
      --config.data.records_dir=gs://BUCKET/data/processed \
      --config.data.tokenizer=gs://BUCKET/tokenizer/swahili_bpe.json \
      [--config.data.mixture=gs://BUCKET/data/mixture.json]
Check it fits first, on any machine: swahili100 aot --config configs/swahili_base.py --topology
  v5e-8 (2026-12-01: 9.2 GiB of 16 per v5e chip, 14.4 of 32 per v4, 14.1 of 95 per v5p, 8.3 of 32
  per v6e; docs/benchmarks.md).
Shrunk for a laptop/CI smoke run: --config configs/swahili_base.py:runlocal
Expected: 16,000 steps x 64 rows x 2048 tokens = 2.1B tokens (~21 tokens/parameter, Chinchilla);
  6N+12LHQT = 7.55e8 FLOPs/token -> 1.6e18 FLOPs; at 40% MFU a v4-8 (4 chips x 275 TFLOP/s) takes
  ~1.0 hour and a v5e-8 (8 chips x 197 TFLOP/s) ~0.7 hour; an H100 (989 TFLOP/s) ~1.1 hours.
Recipe (docs/RESEARCH.md "Recipe"): Muon on the blocks' matrices, AdamW on the embedding, head
  and norms. On sw-news at 2-core scale Muon reached tuned AdamW's loss with ~3x fewer tokens and
  the embedding's own AdamW rate was worth as much again; the anchors at this model's scale
  (modded-nanogpt, nanochat, Wen et al. 2025: ~1.4x at 0.1B) say the gain shrinks but stays. Rates
  at d 768: Muon 0.02 (its update is shape-normalised, so the rate carries across width; the
  common default, inside our flat 0.01-0.04 optimum); AdamW groups scaled from the d 256 optimum
  by (768/256)^-0.5 as nanochat scales them: embedding 6e-3, untied head 2e-3 (not tuned: the
  first accelerator sweep is `--grid optim.head_lr=1e-3,2e-3,4e-3`), norms 3e-4. The switches
  stay off: none was resolved from noise at small scale, and qk_norm would lose the GGUF export.
Data plan (swahili100 plan-data, docs/RESEARCH.md): FineWeb-2 swh_Latn alone (~3.3 GB, ~0.67B
  tokens at 4.93 bytes/token) at 2.1B tokens is 3.13 epochs, 2.00B effective tokens under
  Muennighoff et al. 2023 (R* = 15.4): inside the ~4 epochs that cost little.
Predicted (swahili100 ladder, docs/RESEARCH.md "Scaling ladder"): none yet. The quick ladder on
  sw-news (0.06-1.7M non-embedding parameters, 33k-874k tokens) predicts its own held-out run
  within 1.3 % (inside a 0.05-wide 90 % interval), but this run is ~50x beyond its largest N and
  ~2,400x beyond its largest D, and its fit puts alpha at its bound: no interval at this size can
  be trusted. The size and token count above stand until the :full grid (1e13-1e15 FLOPs, depths
  3-6, AdamW and Muon) brackets the optimum.
"""

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  m = c.model
  m.vocab_size = 16384         # the tokenizer's --vocab-size
  m.d_model = 768
  m.num_layers = 12
  m.num_heads = 12
  m.num_kv_heads = 4           # GQA 3:1
  m.head_dim = 64
  m.mlp_dim = 2048             # SwiGLU hidden (~8/3 d_model)
  m.rope_theta = 10000.0
  m.tie_embeddings = False      # untied head: +12.6M params, 100.7M in all
  m.dtype = "bfloat16"         # compute dtype; parameters and optimizer stay float32
  m.attention = "auto"         # splash on TPU, cuDNN on GPU, reference on CPU
  m.remat = "none"             # 'dots' if activations do not fit

  c.data.records_dir = "data/processed"
  c.data.tokenizer = "tokenizer/swahili_bpe.json"
  c.data.seq_len = 2048
  c.data.batch_size = 64       # global rows per step: 131k tokens
  c.data.worker_count = 0
  c.data.prefetch = 4

  c.optim.name = "muon"        # Muon: q/k/v/o and MLP matrices; AdamW: embedding, head, norms
  c.optim.muon_lr = 0.02
  c.optim.embed_lr = 6e-3      # 0.01 at d 256 (ablation) x (768/256)^-0.5
  c.optim.head_lr = 2e-3       # untested at this width; sweep it first (docstring)
  c.optim.lr = 3e-4            # norm scales
  c.optim.schedule = "wsd"     # warmup-stable-decay: resumable and extendable
  c.optim.warmup_steps = 1000
  c.optim.decay_fraction = 0.2
  c.optim.z_loss = 1e-4

  c.train.num_steps = 16000
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.eval_batches = 50
  c.train.checkpoint_every = 1000
  c.train.keep_last = 3
  c.train.keep_every = 4000

  c.mesh.data = 1
  c.mesh.fsdp = -1             # shard params and optimizer over all chips
  c.mesh.tensor = 1
  if arg == "runlocal":        # big_vision style: same code path, tiny sizes
    m.update(d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, mlp_dim=128,
             dtype="float32", attention="reference")
    c.data.update(seq_len=128, batch_size=8)
    c.optim.warmup_steps = 5
    c.train.update(num_steps=20, log_every=5, eval_every=0, checkpoint_every=10)
  return c
