"""Tokenizer round trips and every task's reward and validity on hand-written cases."""

import numpy as np
import pytest

from purerl.lm.evaluation import distinct_n
from purerl.lm.tasks import TASKS, make_task
from purerl.lm.tokenizer import ALPHABET, BOS, EOS, PAD, SEP, CharTokenizer, encode_batch


def test_tokenizer_round_trip_and_reserved_ids():
    tokenizer = CharTokenizer()
    text = "the plot was very good and 37+85=122!"
    ids = tokenizer.encode(text)
    assert min(ids) >= 4 and tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == 4 + len(ALPHABET)
    assert (
        tokenizer.decode([BOS, *tokenizer.encode("ab"), SEP, *tokenizer.encode("c"), EOS, *tokenizer.encode("zz")])
        == "abc"
    )
    assert len({PAD, BOS, EOS, SEP}) == 4


def test_tokenizer_rejects_unknown_characters_in_one_line():
    with pytest.raises(ValueError, match=r"characters 'QZ' in 'QuiZ' are not in the vocabulary") as error:
        CharTokenizer().encode("QuiZ")
    assert "\n" not in str(error.value)


def test_batch_layout_left_pads_prompts_and_right_pads_completions():
    tokenizer = CharTokenizer()
    batch = encode_batch(tokenizer, ["ab", "abcd"], ["x", "xyz"], max_prompt_chars=4, max_completion_chars=3)
    a, b, c, d = tokenizer.encode("abcd")
    x, y, z = tokenizer.encode("xyz")
    np.testing.assert_array_equal(batch.prompt, [[PAD, PAD, BOS, a, b, SEP], [BOS, a, b, c, d, SEP]])
    np.testing.assert_array_equal(batch.completion, [[x, EOS, PAD, PAD], [x, y, z, EOS]])
    np.testing.assert_array_equal(batch.prompt_mask, batch.prompt != PAD)
    np.testing.assert_array_equal(batch.completion_mask, [[1, 1, 0, 0], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="at most 3 fit"):
        encode_batch(tokenizer, ["ab"], ["wxyz"], 4, 3)


def test_sentiment_reward_and_grammar():
    task = make_task("sentiment")
    assert task.reward("the plot was", " great and the cast was superb.") == 1.0
    assert task.reward("the plot was", " great and the cast was dull.") == 0.0
    assert task.reward("the plot was good and", " the cast was awful.") == -1.0
    assert task.reward("the plot was", " great great great") == 1.0  # a reward hack: high reward, not valid
    assert task.reward("the plot was", " the.") == 0.0
    assert task.is_valid("the plot was", " very great and the cast was dull.")
    assert task.is_valid("the plot was dull and", " the ending was fun.")
    assert not task.is_valid("the plot was", " great great great")
    assert not task.is_valid("the plot was", " great and the cast was dull")  # no full stop
    assert not task.is_valid("the plot was", " great and the cast was dull and the film was fun.")  # 3 clauses
    assert task.is_correct("the plot was", " fun.") and not task.is_correct("the plot was", " dull.")


def test_addition_task():
    task = make_task("addition")
    assert task.reward("37+85", "122") == 1.0 and task.reward("37+85", "121") == 0.0
    assert task.is_valid("1+1", "2") and task.is_valid("0+0", "0")
    assert not task.is_valid("1+1", "02") and not task.is_valid("1+1", "2a") and not task.is_valid("1+1", "")


def test_reverse_task_exact_and_partial_credit():
    exact, partial = TASKS["reverse"](), TASKS["reverse"](partial_credit=True)
    assert exact.reward("abcd", "dcba") == 1.0 and exact.reward("abcd", "dcbb") == 0.0
    assert partial.reward("abcd", "dcbb") == 0.75
    assert partial.reward("abcd", "dc") == 0.5  # 2 right of the 4 the target has
    assert partial.reward("ab", "baaa") == 0.5  # 2 right of the 4 written
    assert exact.is_valid("abcd", "hhhh") and not exact.is_valid("abcd", "abc") and not exact.is_valid("ab", "xy")


def test_palindrome_task():
    task = make_task("palindrome")
    assert task.reward("len=5 abc", "abcba") == 1.0
    assert task.reward("len=5 abc", "aaaaa") == 1.0
    assert task.reward("len=5 abc", "abcab") == 0.0  # not a palindrome
    assert task.reward("len=5 abc", "abba") == 0.0  # wrong length
    assert task.reward("len=5 ab", "abcba") == 0.0  # a letter not allowed
    assert task.is_valid("len=5 abc", "abcab") and not task.is_valid("len=5 ab", "abc")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_demonstrations_are_imperfect_encodable_and_seeded(name):
    task, tokenizer = make_task(name), CharTokenizer()
    prompts, completions = task.demonstrations(np.random.default_rng(0), 2000)
    again = task.demonstrations(np.random.default_rng(0), 2000)
    assert (prompts, completions) == again
    encode_batch(tokenizer, prompts, completions, task.max_prompt_chars, task.max_completion_chars)
    correct = np.mean([task.is_correct(p, c) for p, c in zip(prompts, completions, strict=True)])
    valid = np.mean([task.is_valid(p, c) for p, c in zip(prompts, completions, strict=True)])
    assert valid > 0.95  # mistakes are plausible slips (a changed digit may lead with a zero)
    if name == "sentiment":
        assert 0.40 < correct < 0.48  # a 50/50 mixture of adjectives: 7/16 of completions wholly positive
    else:
        assert 0.77 < correct < 0.83  # correct_fraction 0.8
    assert len(set(task.prompts(np.random.default_rng(1), 200))) > 20


def test_make_task_rejects_unknown_names_and_bad_quality():
    with pytest.raises(ValueError, match="unknown task 'sorting'; choose one of sentiment, addition"):
        make_task("sorting")
    with pytest.raises(ValueError, match=r"correct_fraction=1.5 must be in \[0, 1\]"):
        make_task("addition", demo_quality=1.5)


def test_distinct_n_counts_unique_ngrams_by_hand():
    texts = ["good fun film", "good fun", "ab", "aab"]
    # word unigrams: good fun film good fun ab aab -> 5 distinct of 7; bigrams: (good fun) x2, (fun film) -> 2/3
    assert distinct_n(texts, 1) == pytest.approx(5 / 7)
    assert distinct_n(texts, 2) == pytest.approx(2 / 3)
    # character bigrams of "ab", "aab": ab, aa, ab -> 2 distinct of 3
    assert distinct_n(["ab", "aab"], 2, "char") == pytest.approx(2 / 3)
    assert distinct_n(["a", "b"], 2, "char") == 0.0  # no bigram at all
    assert make_task("palindrome").diversity_unit == "char" and make_task("sentiment").diversity_unit == "word"
    with pytest.raises(ValueError, match="unit must be one of word, char; got 'token'"):
        distinct_n(texts, 1, "token")
