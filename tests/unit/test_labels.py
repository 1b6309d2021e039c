"""Capped label values: the first ``cap`` pass as they are, later ones are ``other``, and a
value already seen keeps its own label after the cap is reached."""

from controlplane.labels import CappedLabels


def test_values_past_the_cap_are_other_and_seen_ones_keep_their_label():
    label = CappedLabels(2)
    assert [label("a"), label("b"), label("c"), label("a"), label("b"), label("d")] == [
        "a",
        "b",
        "other",
        "a",
        "b",
        "other",
    ]
