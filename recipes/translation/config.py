"""Every configuration key of the translation recipe, with its default.

A named configuration (`recipes/configs/<name>.json`) sets some of these
keys; the rest keep the values below. See `KEY_HELP` for the keys that
have their own command-line flag.
"""

DEFAULT_CONFIG = "translation_transformer"

DEFAULTS = {
    # --- data ---
    # Registered dataset ("multi30k") used when no corpus files are given.
    "dataset": "multi30k",
    "source_lang": "en",
    "target_lang": "de",
    # A user corpus instead of the dataset: a TSV path (source<TAB>target)
    # or a list [source_file, target_file], one per split.
    "train_corpus": None,
    "valid_corpus": None,
    "test_corpus": None,
    # Names of the dataset's splits.
    "train_split": "train",
    "valid_split": "val",
    "test_split": "test_2016_flickr",
    # Use only the first N training / evaluation pairs (None: all).
    "max_train_examples": None,
    "max_eval_examples": None,
    # --- tokenisation ---
    "vocabulary_size": 8000,
    "shared_vocabulary": True,
    # Learn the vocabulary from the first N training pairs (None: all);
    # keras-hub's learner is pure Python and slow on a large corpus.
    "vocabulary_sample_size": None,
    # Longest source or target sequence in ids, special tokens included;
    # longer inputs are truncated.
    "max_length": 64,
    # Batches are padded to the smallest of these lengths that fits
    # (max_length is always added), so XLA compiles one program each.
    "bucket_lengths": [16, 24, 32, 48],
    # --- model ---
    "model": "transformer",
    "hidden_dim": 256,
    "intermediate_dim": 512,
    "num_heads": 4,
    "num_encoder_layers": 3,
    "num_decoder_layers": 3,
    "dropout": 0.1,
    # Transformer residual variant: pre, post, sandwich, deepnorm, rezero.
    "residual": "pre",
    "position": "learned",
    # RNN model only.
    "cell_type": "lstm",
    "residual_start": 1,
    "attention_score": "additive",
    "share_embeddings": False,
    # --- training ---
    # Per replica; the global batch is batch_size * replicas.
    "batch_size": 64,
    "learning_rate": 1e-3,
    "schedule": "inverse_sqrt",
    "warmup_steps": 1000,
    "lr_scaling": "sqrt",
    "label_smoothing": 0.1,
    "weight_decay": 0.0,
    "clipnorm": 1.0,
    # Steps are counted for one replica and divided by the replica count.
    "train_steps": 20000,
    "steps_per_epoch": 500,
    # Stop after this many seconds of training (None: no limit).
    "max_train_seconds": None,
    # End the cosine decay when max_train_seconds runs out, if that comes
    # before train_steps.
    "decay_by_time": False,
    "validation_steps": 20,
    "jit_compile": True,
    "seed": 1234,
    "strategy": "default",
    "tensorboard": True,
    # --- search and evaluation ---
    "beam_size": 4,
    "length_penalty": 0.6,
    # Longest output in ids, the start token included.
    "max_decode_length": 64,
    "eval_batch_size": 64,
}

KEY_HELP = {
    "source_lang": "source language of the dataset (en or de)",
    "target_lang": "target language of the dataset (en or de)",
    "train_corpus": (
        "training corpus instead of the dataset: a TSV file, or a JSON "
        'list of two aligned files, e.g. \'["train.en", "train.de"]\''
    ),
    "valid_corpus": "validation corpus, as --train-corpus",
    "test_corpus": "test corpus for evaluate, as --train-corpus",
    "max_train_examples": "use only the first N training pairs",
    "max_eval_examples": "evaluate on the first N test pairs only",
    "vocabulary_size": "largest WordPiece vocabulary (special tokens too)",
    "model": "model family: transformer or rnn",
    "batch_size": "batch size per replica",
    "learning_rate": "peak learning rate for one replica",
    "schedule": "learning-rate schedule: inverse_sqrt, cosine or constant",
    "warmup_steps": "linear warm-up steps of the schedule",
    "train_steps": "optimizer steps for one replica",
    "steps_per_epoch": "steps between backups (one Keras epoch)",
    "max_train_seconds": (
        "stop training after this many seconds (null or 0: no limit)"
    ),
    "decay_by_time": (
        "end the cosine decay when max_train_seconds runs out, if sooner; "
        "needs schedule cosine and a time limit"
    ),
    "strategy": "distribution: default, mirrored or multi_worker",
    "jit_compile": "compile training and search with XLA",
    "beam_size": "beam width (1: greedy search)",
    "length_penalty": "GNMT length penalty alpha of beam search",
}
