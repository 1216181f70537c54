"""Defaults for the data pipeline (phases 1-4); every threshold a phase applies lives here.

Command:  swahili100 clean --input data/raw --output data/cleaned [--config.clean.min_chars=80]
Every data phase accepts `--config.<section>.<key>=value` for any key below (data_pipeline/shards.py
`parse_cli`); a phase's short flags (e.g. clean --min-chars) are other names of these keys, and
giving one key both ways is refused.
The FineWeb-2 `swh_Latn` filter thresholds are from FineWeb-2's published per-language configs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.runner = r = ml_collections.ConfigDict()   # the unit runner of every phase (shards.run_units)
  r.workers = 1                     # worker processes over units (shards, download files)
  r.max_line_bytes = 8 << 20        # longer input lines are dropped as line_too_long (8 MiB)
  r.start_method = "fork"           # worker start method; tokenize uses tokenize.start_method

  c.download = dl = ml_collections.ConfigDict()
  dl.shard_docs = 50_000            # documents per output shard (<source>/<unit>-<part>.jsonl.gz)
  dl.txt_mode = "paragraph"         # plain text: one document per blank-line paragraph/line/file
  dl.max_docs = None                # stop each source after this many documents (None: all)
  dl.licence = "unknown (local files)"   # --source local: licence written on every document
  dl.revision = None                # Hub revision (None: each source's own, resolved to a commit)
  dl.cache_dir = None               # Hub cache folder (None: huggingface_hub's HF_HUB_CACHE)
  dl.text_field = "text"            # row field that holds the text

  c.clean = k = ml_collections.ConfigDict()
  k.min_chars = 50                  # shorter cleaned documents are dropped (too_short)
  k.fix_mojibake = True             # ftfy.fix_text on each document
  k.strip_html = True               # tags and entities removed
  k.drop_boilerplate = True         # share/cookie/"Soma zaidi" lines removed
  k.unify_apostrophes = True        # U+2019 / U+02BC / ` / U+2018 between letters -> '
  k.mask_pii = True                 # e-mails -> <EMAIL>, phone numbers -> <PHONE>

  c.dedup = d = ml_collections.ConfigDict()
  d.threshold = 0.8                 # MinHash LSH Jaccard threshold
  d.num_perm = 128                  # MinHash permutations
  d.shingle = 5                     # word n-gram size of shingles
  d.batch = 512                     # documents per signature batch (per worker task)
  d.seed = 1                        # MinHash permutation seed (datasketch-compatible)
  d.index = None                    # persistent index across runs: a folder or redis://host:port/db
  d.memory_mb = 64                  # pass 2 works on this much at a time (+~20 bytes per document)
  d.num_processes = 1               # processes (machines) sharing one output folder
  d.process_id = 0                  # this one's share: shards k with k % num_processes == id
  d.wait_timeout_s = 86400.0        # how long a process waits for the others' shares

  c.filter = f = ml_collections.ConfigDict()
  f.lang = "sw"                     # target language (ISO 639-1)
  f.lang_detector = "pycld2"        # data_pipeline/langid.py DETECTORS; chosen in docs/RESEARCH.md
  f.lang_threshold = 0.5            # min share of the text in the target language (code-switching)
  f.stop_words = ("ya", "na", "wa", "katika", "kwa", "ni", "la", "za", "mwaka")
  f.min_stop_words = 2              # FineWeb-2 swh_Latn
  f.min_words = 50                  # Gopher: min words per document
  f.max_words = 100_000             # Gopher: max words per document
  f.min_mean_word_len = 3.0         # FineWeb-2 swh_Latn
  f.max_mean_word_len = 9.0
  f.max_symbol_word_ratio = 0.1     # Gopher: '#' and '...' per word
  f.max_bullet_lines = 0.9          # Gopher: lines starting with a bullet
  f.max_ellipsis_lines = 0.3        # Gopher: lines ending with an ellipsis
  f.min_alpha_words = 0.802         # FineWeb-2 swh_Latn: share of words with a letter (Gopher 0.8)
  f.dup_line_frac = 0.302           # FineWeb-2 swh_Latn: duplicate lines / lines
  f.dup_line_char_frac = 0.2        # Gopher: chars in duplicate lines / chars
  f.top_ngram_frac = {"2": 0.396, "3": 0.282, "4": 0.231}
  f.dup_ngram_frac = {"5": 0.193, "6": 0.17, "7": 0.155, "8": 0.14, "9": 0.126, "10": 0.113}
  f.min_punct_line_frac = 0.143     # FineWeb-2 swh_Latn: lines ending in punctuation
  f.max_short_line_frac = 0.67      # FineWeb: lines under 30 chars
  f.max_newline_ratio = 0.167       # FineWeb-2 swh_Latn: newlines / words
  f.short_line_chars = 30           # FineWeb: what counts as a short line

  c.tokenizer = t = ml_collections.ConfigDict()
  t.vocab_size = 16384              # byte-level BPE vocabulary, special tokens included
  t.min_frequency = 2               # BPE merges need a pair seen this often
  t.pretokenizer = "gpt2"           # gpt2 (GGUF export maps only this) | swahili (ng'ombe whole)
  t.heldout_fraction = 0.05         # documents (by id hash) held out for the report
  t.max_heldout_docs = 2000         # cap on held-out documents evaluated in the report
  t.threads = 0                     # training threads (0: all cores), via RAYON_NUM_THREADS

  c.tokenize = z = ml_collections.ConfigDict()
  z.validation_fraction = 0.01      # documents (by id hash) in the validation split
  z.num_shards = 8                  # ArrayRecord shards of the train split
  z.num_validation_shards = 1       # ArrayRecord shards of the validation split
  z.batch_docs = 512                # documents per encode_batch call
  z.start_method = "spawn"          # a forked child of a process that ran tokenizers is 1-threaded

  c.plan = p = ml_collections.ConfigDict()   # data_pipeline/plan_data.py (swahili100 plan-data)
  p.rule = "muennighoff"            # muennighoff (equal epochs, capped) | rehydrate (FineWeb-2)
  p.tokens = 2.097152e9             # training budget: configs/swahili_base.py 16,000 x 64 x 2048
  p.max_epochs = 16.0               # cap per source: Muennighoff et al. 2023, ~worthless beyond
  p.warn_epochs = 4.0               # up to ~4 epochs of repeats cost little (ibid.); more is warned
  p.source_max_epochs = ""          # per-source caps under max_epochs, e.g. "cc100=1,wikipedia=8"
  p.r_d_star = 15.4                 # fitted R_D* of D' = U + U R*(1 - exp(-R/R*)) (ibid., 15.39)
  p.bytes_per_token = 4.93          # without --records: sw-news held out, 16,384 BPE (RESEARCH.md)
  p.split = "train"                 # with --records: the split whose tokens the loader samples
  # FineWeb-2 rehydration (github.com/huggingface/fineweb-2 README): copies of a document by the
  # size of its dedup cluster, from each key up to the next: 1, 2, 3-4 -> 3, 5-99 -> 5,
  # 100-999 -> 8, 1000+ -> 1 (very large clusters are assumed to be spam/boilerplate).
  p.rehydrate = {"1": 1, "2": 2, "3": 3, "5": 5, "100": 8, "1000": 1}
  return c
