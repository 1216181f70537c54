"""Base: every field a training run has, with the values of the debug run; every other config
(debug.py, small.py, swahili_base.py) starts from it and changes what it needs.

Command:  swahili100 train --config configs/base.py --workdir runs/base-defaults   (= debug.py)
Hardware: 2 CPU cores; ~1-2 min including compilation.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  c.model = m = ml_collections.ConfigDict()
  m.vocab_size = 2048          # must equal the records' manifest vocab_size (an imported or
  #                              extended model's may be larger: padding no token uses)
  m.d_model = 128              # residual width D
  m.num_layers = 2             # decoder blocks L
  m.num_heads = 4              # query heads N
  m.num_kv_heads = 2           # key/value heads K (GQA); must divide num_heads
  m.head_dim = 32              # per-head width H; d_model // num_heads is the usual choice
  m.mlp_dim = 384              # SwiGLU hidden F
  m.rope_theta = 10000.0       # RoPE base, Hugging Face Llama layout (rotate halves)
  m.rope_type = "default"      # default | llama3 (Llama 3.1+ frequency scaling: the four below)
  m.rope_factor = 8.0          # llama3: long wavelengths divided by this
  m.rope_low_freq_factor = 1.0   # llama3: wavelengths above original_max_len / this are scaled
  m.rope_high_freq_factor = 4.0  # llama3: below original_max_len / this kept; between: blended
  m.rope_original_max_len = 8192  # llama3: the context length the base model was trained at
  m.norm_eps = 1e-5            # RMSNorm epsilon
  m.tie_embeddings = True      # share the input embedding with the output head
  m.init_std = 0.02            # normal init std for weights
  m.dtype = "float32"          # compute dtype; parameters are always float32
  m.attention = "reference"    # reference | cudnn (GPU) | splash (TPU) | auto (by mesh platform)
  m.remat = "none"             # none | full | dots (rematerialization policy per block)
  m.layout_vjps = "auto"       # on | off | auto (= on for CPU only): XLA:CPU weight-grad layouts
  m.causal_chunks = 4          # reference attention: query chunks skipping the upper triangle
  m.loss_chunks = 0            # > 0: head + loss fused over T/loss_chunks slices (no [B,T,V] logits)
  # Architecture switches (docs/RESEARCH.md "Recipe"); all off = plain Llama, exportable everywhere.
  m.qk_norm = False            # RMSNorm on queries and keys per head, before RoPE (Qwen3)
  m.mlp_act = "swiglu"         # swiglu (gated, 3 matrices) | relu2 (down(relu(up(x))^2), 2 matrices)
  m.logit_softcap = 0.0        # cap * tanh(logits / cap) on the output logits (0 = off)
  m.zero_init_out = False      # o_proj and down_proj start at zero (each block starts as identity)

  c.data = d = ml_collections.ConfigDict()
  d.records_dir = "demo_out/records"               # token records (manifest.json + shards)
  d.tokenizer = "demo_out/tokenizer/swahili_bpe.json"  # SHA-256 checked against the manifest
  d.seq_len = 128              # packed row length T
  d.batch_size = 16            # global batch B (rows per optimizer step)
  d.shuffle_seed = 0           # Grain shuffle seed
  d.mixture = ""               # a `swahili100 plan-data` mixture.json ("" = records as they are)
  d.worker_count = 0           # Grain worker processes (0 = in-process)
  d.prefetch = 2               # batches prefetched by a background thread

  c.optim = o = ml_collections.ConfigDict()
  o.name = "adamw"             # adamw | muon (Muon on the blocks' matrices, AdamW on the rest)
  o.lr = 3e-3                  # peak learning rate (AdamW; under muon: norms and scalars)
  o.embed_lr = 0.0             # AdamW peak lr of the embedding (tied: also the head); 0 = lr
  o.head_lr = 0.0              # AdamW peak lr of an untied output head; 0 = lr
  o.muon_lr = 0.02             # muon only: peak lr of the hidden matrices
  o.muon_momentum = 0.95       # muon only: Nesterov momentum of the hidden matrices
  o.muon_weight_decay = 0.0    # muon only: decoupled weight decay (times muon_lr) on them
  o.schedule = "cosine"        # cosine | wsd (warmup-stable-decay)
  o.warmup_steps = 20          # linear warmup
  o.decay_fraction = 0.2       # wsd only: share of steps spent decaying
  o.min_lr_ratio = 0.1         # final lr = lr * min_lr_ratio
  o.b1 = 0.9
  o.b2 = 0.95
  o.eps = 1e-8
  o.weight_decay = 0.1         # AdamW; masked off norms and biases
  o.grad_clip = 1.0            # global-norm clipping
  o.grad_accum = 1             # micro-batches per step (batch_size divides by it)
  o.z_loss = 0.0               # coefficient of log(Z)^2 (PaLM), 0 = off

  c.train = t = ml_collections.ConfigDict()
  t.num_steps = 200
  t.seed = 0                   # parameter init and dropout-free RNG
  t.log_every = 10             # steps between training.jsonl lines
  t.eval_every = 100           # steps between validation passes (0 = only at the end)
  t.eval_batches = 8           # validation batches per pass (-1 = whole split)
  t.eval_tasks = ""            # tasks also run at eval steps, e.g. "xcopa,sib200" (evals/tasks.py)
  t.eval_data = ""             # their files, "xcopa=PATH,sib200=PATH" (TASK=hub: public test)
  t.eval_limit = 0             # items per task at eval steps (0 = all)
  t.checkpoint_every = 100     # steps between checkpoints
  t.keep_last = 2              # newest checkpoints kept
  t.keep_every = 0             # also keep every N-th step forever (0 = off)
  t.barrier_timeout_s = 1800   # every cross-process wait (checkpoint, restore) gives up after this
  t.save_timeout_s = 900       # a checkpoint still not written after this long (storage failing
  #                              past the clients' retries) stops the run: exit 3, resumable
  t.wandb = w = ml_collections.ConfigDict()   # Weights & Biases (swahili100/tracking.py)
  w.mode = "disabled"          # disabled | online | offline (files in <workdir>/wandb/)
  w.project = "swahili100"
  w.entity = ""                # "" = the logged-in user's default
  w.name = ""                  # "" = W&B's generated name
  t.host_malloc = "jemalloc"   # jemalloc | system: train/align re-run themselves with jemalloc
  #                              keeping freed pages (no page faults per step; host_memory.py)

  # A run (or one of its steps) whose parameters start training, with a fresh optimizer: a
  # `swahili100 import` folder, a pretraining run, the base of align. Its config.json gives the
  # model section; a --config.model.* that contradicts it is refused (back-end switches may differ).
  c.init = ml_collections.ConfigDict({"from": ""})   # --config.init.from=RUN ("" = fresh init)

  c.mesh = x = ml_collections.ConfigDict()
  x.data = -1                  # data-parallel axis (-1 = remaining devices)
  x.fsdp = 1                   # parameter/optimizer sharding axis
  x.tensor = 1                 # heads / MLP hidden sharding axis
  x.distributed = False        # call jax.distributed.initialize() with cluster auto-detection
  x.coordinator_address = ""   # "host:port" of process 0: several processes, set explicitly
  x.num_processes = 0          # with coordinator_address: how many processes (0 = auto)
  x.process_id = -1            # with coordinator_address: this process (-1 = auto)
  x.heartbeat_timeout_s = 100  # a process silent this long is declared dead; the others exit
  x.init_timeout_s = 300       # how long processes wait for each other at start
  return c
