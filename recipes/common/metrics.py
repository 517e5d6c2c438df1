"""Corpus-level translation metrics through sacrebleu.

BLEU is sacrebleu's default: detokenised, cased input, the `13a`
tokenizer, exponential smoothing; chrF is chrF2 (character 6-grams,
beta 2). Both take the system outputs and one list of references.
"""

import sacrebleu


def corpus_scores(hypotheses, references):
    """Returns `{"bleu": float, "chrf": float, "bleu_signature": str, ...}`.

    Args:
        hypotheses: list of system output strings.
        references: list of reference strings, aligned with `hypotheses`.

    >>> text = ["the cat sat on the mat"]
    >>> round(corpus_scores(text, text)["bleu"], 2)
    100.0
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            "Arguments `hypotheses` and `references` must be equally long. "
            f"Received: {len(hypotheses)} hypotheses, "
            f"{len(references)} references"
        )
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_detail": str(bleu_score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
