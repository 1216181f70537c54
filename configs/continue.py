"""Continue: continued pretraining of an imported open model (or any run) on Swahili records.

Command (2 CPU cores: an import of configs/small.py's own HF export, docs/benchmarks.md
"Continued pretraining"):
  swahili100 import --hf runs/small-hf --output runs/small-import
  swahili100 train --config configs/continue.py --workdir runs/small-continued \
      --config.init.from=runs/small-import --config.data.records_dir=data/processed \
      --config.data.tokenizer=runs/small-import/tokenizer.json
Hardware: 2 CPU cores; ~9 min for 300 steps x 16 x 256 = 1.2M tokens of the 8.1M-parameter model
  (150 steps took 257-278 s with compilation; the import itself takes 3 s); docs/benchmarks.md.
The model section is the imported run's (config.json of --config.init.from); only back-end
switches (model.attention, remat, dtype, loss_chunks, ...) may be set here. The optimizer starts
fresh, re-warms and decays as any run does: AdamW at 3e-4 (1e-4 / 3e-4 / 1e-3 / 3e-3 gave
1.4368 / 1.4332 / 1.4305 / 1.4340 bits/byte on the small model, within 0.006: 3e-4 is kept for
well-trained checkpoints; docs/RESEARCH.md "Continued pretraining").
With a Swahili vocabulary (`import --extend-vocab N --input data/filtered`, then tokenize with the
run's tokenizer.json) the new rows need more: 3e-3 was best of 3e-4 / 1e-3 / 3e-3 / 1e-2 for a
2k-vocabulary model extended by 6,016 tokens (docs/RESEARCH.md "a poor tokenizer extended"):
  --config.optim.lr=3e-3

Shapes for `swahili100 aot` without an import at hand (what a continued run of the open model
compiles to; docs/benchmarks.md "Continued pretraining on TPU"):
  swahili100 aot --config configs/continue.py:qwen3-0.6b --topology v5e-8
  swahili100 aot --config configs/continue.py:llama3.2-1b --topology v6e-8
"""

from configs import base

# The published config.json of each model, as `swahili100 import` maps it (export/hf.py).
OPEN_MODELS = {
    "qwen3-0.6b": dict(vocab_size=151936, d_model=1024, num_layers=28, num_heads=16,
                       num_kv_heads=8, head_dim=128, mlp_dim=3072, rope_theta=1000000.0,
                       norm_eps=1e-6, tie_embeddings=True, qk_norm=True),
    "llama3.2-1b": dict(vocab_size=128256, d_model=2048, num_layers=16, num_heads=32,
                        num_kv_heads=8, head_dim=64, mlp_dim=8192, rope_theta=500000.0,
                        rope_type="llama3", rope_factor=32.0, rope_low_freq_factor=1.0,
                        rope_high_freq_factor=4.0, rope_original_max_len=8192,
                        norm_eps=1e-5, tie_embeddings=True),
    "smollm2-135m": dict(vocab_size=49152, d_model=576, num_layers=30, num_heads=9,
                         num_kv_heads=3, head_dim=64, mlp_dim=1536, rope_theta=100000.0,
                         norm_eps=1e-5, tie_embeddings=True),
}


def get_config(arg: str | None = None):
  c = base.get_config()
  c.data.seq_len = 256
  c.data.batch_size = 16

  c.optim.name = "adamw"       # the open models were trained with AdamW; Muon restarts differ
  c.optim.lr = 3e-4            # 1e-4..3e-3 within 0.006 bpb on the small model (RESEARCH)
  c.optim.warmup_steps = 30    # re-warm the fresh optimizer state
  c.optim.schedule = "cosine"
  c.optim.min_lr_ratio = 0.1
  c.optim.weight_decay = 0.1

  c.train.num_steps = 300
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100

  if arg:   # an open model's shapes on a TPU slice: bf16 compute, FSDP over every chip
    if arg not in OPEN_MODELS:
      raise ValueError(f"configs/continue.py:{arg}: expected one of {sorted(OPEN_MODELS)}")
    c.model.update(OPEN_MODELS[arg])
    c.model.dtype = "bfloat16"
    c.model.attention = "auto"
    c.model.remat = "full"
    c.model.loss_chunks = 8    # no [B, T, V] logits: V is 128-152k
    c.data.seq_len = 2048
    c.data.batch_size = 32     # 64k tokens per step
    c.mesh.fsdp = -1
    c.mesh.data = 1
  return c
