"""What the voice line says aloud: numbers as a caller can dial them."""

from __future__ import annotations

import pytest

from hotline.speech import digit_by_digit


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("call or text 988", "call or text 9 8 8"),
        ("Samaritans on 116 123", "Samaritans on 1 1 6, 1 2 3"),
        ("1-800-273-8255", "1, 8 0 0, 2 7 3, 8 2 5 5"),
        ("24/7, press 1", "24/7, press 1"),
        # An amount written with thousands apart is an amount: "1, 0 0 0" read as digits.
        ("over 1,000 clinicians a year", "over 1,000 clinicians a year"),
        ("12,500 staff", "12,500 staff"),
    ],
)
def test_numbers_are_said_digit_by_digit_and_amounts_as_amounts(written: str, said: str) -> None:
    assert digit_by_digit(written) == said
