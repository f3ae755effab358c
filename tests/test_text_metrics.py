"""BLEU, ROUGE and perplexity agree with the reference implementations, offline."""

import math

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from aigc.metrics.text import BLEU_SIGNATURE, bleu, perplexity, rouge

PREDICTIONS = [
    "The cat sat on the mat.",
    "First Citizen: Before we proceed any further, hear me speak.",
    "We are accounted poor citizens, the patricians good!",
    "it's 3.14 -- isn't it?",
    "nothing matches here",
]
REFERENCES = [
    "The cat is sitting on the mat.",
    "First Citizen: Before we proceed any further, hear me speak!",
    "We are accounted poor citizens; the patricians, good.",
    "It is 3.14, isn't it?",
    "a completely different sentence",
]


pytestmark = pytest.mark.usefixtures("no_network")


def test_bleu_equals_sacrebleu_corpus_bleu():
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES], tokenize="13a").score
    assert bleu(PREDICTIONS, REFERENCES) == pytest.approx(expected, rel=1e-6)
    assert 0 < expected < 100  # on sacrebleu's 0-100 scale, neither trivial end
    assert bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert "tok:13a" in BLEU_SIGNATURE and "nrefs:1" in BLEU_SIGNATURE
    assert f"version:{sacrebleu.__version__}" in BLEU_SIGNATURE


def test_rouge_equals_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    pairs = [
        scorer.score(reference, prediction) for prediction, reference in zip(PREDICTIONS, REFERENCES, strict=False)
    ]
    ours = rouge(PREDICTIONS, REFERENCES)
    assert set(ours) == {"rouge1", "rouge2", "rougeL"}
    for key, value in ours.items():
        expected = sum(pair[key].fmeasure for pair in pairs) / len(pairs)
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert 0 < value < 1


def test_perplexity_is_exp_of_the_mean_nll():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(65)) == pytest.approx(65)  # uniform over tiny-shakespeare's characters
    assert perplexity(torch.tensor(math.log(2.0))) == pytest.approx(2.0)
    assert perplexity(1e4) == math.inf


def test_mismatched_or_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="pair up"):
        bleu(PREDICTIONS, REFERENCES[:-1])
    with pytest.raises(ValueError, match="pair up"):
        rouge(PREDICTIONS[:1], REFERENCES)
    with pytest.raises(ValueError, match="no predictions"):
        bleu([], [])
