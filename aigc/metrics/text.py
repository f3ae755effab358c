"""Text metrics on strings and numbers: corpus BLEU, ROUGE-1/2/L, perplexity.

- ``bleu``: sacrebleu's corpus BLEU with its standard ``13a`` tokenization, on sacrebleu's
  0-100 scale (the number papers report); ``BLEU_SIGNATURE`` says exactly what was computed
  (tag it with the metric).
- ``rouge``: ROUGE-1/2/L F-measures on a 0-1 scale (``rouge_score``'s convention), each the
  mean over prediction/reference pairs, computed by torchmetrics without stemming; equal to
  Google's ``rouge_score`` with ``use_stemmer=False``. Never ``rougeLsum``: its sentence splitter
  tries to download NLTK's punkt, which fails offline.
- ``perplexity``: exp of the mean negative log-likelihood per token, in nats. Per token of
  *that* tokenizer: a char model's and a BPE model's perplexities are not comparable.
"""

import math

import torch
from sacrebleu.metrics import BLEU
from torchmetrics.functional.text.rouge import rouge_score

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def _bleu_metric() -> BLEU:
    return BLEU(tokenize="13a")


def _signature() -> str:
    metric = _bleu_metric()
    metric.corpus_score(["a"], [["a"]])  # sacrebleu only knows the reference count after scoring
    return str(metric.get_signature())


# e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
BLEU_SIGNATURE = _signature()


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) of ``predictions`` against one reference each, like ``sacrebleu.corpus_bleu``."""
    _check_pairs(predictions, references)
    return float(_bleu_metric().corpus_score(list(predictions), [list(references)]).score)


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0-1) over the pairs: keys ``rouge1``, ``rouge2``, ``rougeL``."""
    _check_pairs(predictions, references)
    scores = rouge_score(list(predictions), list(references), use_stemmer=False, rouge_keys=ROUGE_KEYS)
    return {key: float(scores[f"{key}_fmeasure"]) for key in ROUGE_KEYS}


def perplexity(mean_nll_nats: float | torch.Tensor) -> float:
    """exp(mean NLL per token in nats); ``inf`` when that overflows (an untrained or diverged model)."""
    try:
        return math.exp(float(mean_nll_nats))
    except OverflowError:
        return math.inf


def _check_pairs(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")
