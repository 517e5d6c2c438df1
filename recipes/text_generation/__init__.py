"""Character-level (or byte-level) language modelling and text generation.

`python -m recipes.text_generation train|evaluate|generate|export` trains
a decoder-only Transformer or a residual LSTM/GRU language model on Tiny
Shakespeare (or any text file), reports the validation loss in nats per
character, generates text with greedy, sampling or beam search, and
exports a SavedModel with a `generate` signature.

Modules:
- `config`: the recipe's keys and defaults.
- `vocabulary`: character and byte vocabularies (Python and graph ops).
- `data`: text loading, the 90/10 split and the window datasets.
- `transformer_lm`, `rnn_lm`: the two model families with a cached step.
- `generation`: the compiled chunk decoder and the streaming loop.
- `training`: the `train` and `evaluate` commands, loading a run.
- `export`: the SavedModel with a `generate` signature.
"""
