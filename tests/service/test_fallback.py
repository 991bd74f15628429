"""The rule of `model=auto` (service.fallback): the teacher answers where the student's logit
margin is below the threshold, whatever temperature calibrated the student."""

import numpy as np
import pytest

from service.fallback import asks_teacher, auto_probs, logit_margin
from service.inference import softmax

LOGITS = np.array([[2.0, 0.5, -1.0, 0.0], [0.3, 0.1, 0.0, -0.2], [-1.0, 4.0, 3.9, 0.0]])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 5.4])
def test_the_margin_is_the_gap_between_the_two_largest_logits_at_any_temperature(temperature):
    probs = softmax(LOGITS, temperature)
    assert logit_margin(probs, temperature) == pytest.approx([1.5, 0.2, 0.1])
    assert asks_teacher(probs, 1.0, temperature).tolist() == [False, True, True]


def test_the_margin_over_a_subset_of_labels_is_that_of_their_logits():
    subset = softmax(LOGITS, 2.0)[:, [0, 1, 3]]
    renormalised = subset / subset.sum(axis=1, keepdims=True)
    assert logit_margin(renormalised, 2.0) == pytest.approx([1.5, 0.2, 4.0])


def test_auto_takes_the_teachers_row_only_where_the_student_is_unsure():
    student, teacher = softmax(LOGITS), np.eye(4)[[3, 3, 3]]
    expected = np.stack([student[0], teacher[1], teacher[2]])
    assert np.array_equal(auto_probs(student, teacher, 0.3, 1.0), expected)
    assert not asks_teacher(student, 0.0, 1.0).any()   # 0: the student always answers


def test_a_row_without_probabilities_never_asks_the_teacher():
    assert asks_teacher(np.full((1, 4), np.nan), 100.0, 1.0).tolist() == [False]   # no speech: nothing to ask
