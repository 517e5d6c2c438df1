"""Machinery shared by the recipes: configuration files and overrides,
WordPiece tokenisation, tf.data bucketing, learning-rate schedules, losses,
the training harness, distribution strategies, metrics, atomic files and
command-line helpers."""
