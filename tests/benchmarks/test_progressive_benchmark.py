"""tools/benchmarks/progressive.py: the equal-wall-clock epochs of both arms, by hand."""

from __future__ import annotations

from benchmarks.progressive import progressive_epochs


def test_equal_minutes_buy_more_epochs_when_half_of_them_are_cheaper() -> None:
    # 10 min of 600 images: 5 img/s buys 5 epochs; half the epochs at 10 img/s cost
    # 600 * (0.5 / 10 + 0.5 / 5) = 90 s each, so 600 s buy 6.67 -> 7.
    assert progressive_epochs(10, 600, full_ips=5.0, small_ips=10.0, fraction=0.5) == (5, 7)
    # A side that trains no faster buys nothing more.
    assert progressive_epochs(10, 600, full_ips=5.0, small_ips=5.0, fraction=0.5) == (5, 5)
    # Never fewer than one epoch.
    assert progressive_epochs(0.01, 600, full_ips=5.0, small_ips=10.0, fraction=0.5) == (1, 1)
