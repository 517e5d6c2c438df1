"""Machine translation recipe: Transformer or GNMT-style RNN models on
Multi30k (or any parallel corpus), trained with `model.fit`, decoded with
greedy or beam search, scored with sacrebleu and exported as a
SavedModel that translates raw strings.

Run `python -m recipes.translation --help`.
"""
