import json
from pathlib import Path

from django_prometheus.utils import PowersOf, Time, TimeSince
from tests.powers_of_grid import grid

UPSTREAM_GRID = Path(__file__).parent / "data" / "powers_of_2_5_0.json"


def test_powers_of():
    assert PowersOf(2, 4) == [0, 1, 2, 4, 8]
    assert PowersOf(2, 4, lower=2) == [0, 4, 8, 16, 32]
    assert PowersOf(3, 5, lower=1) == [0, 3, 9, 27, 81, 243]
    assert PowersOf(10, 3, include_zero=False) == [1, 10, 100]
    assert len(PowersOf(2, 30)) == 31


def test_time_since_is_non_negative_and_grows():
    t = Time()
    first = TimeSince(t)
    assert 0 <= first <= TimeSince(t)


def test_powers_of_returns_what_upstream_2_5_0_returns_over_the_whole_grid():
    # 842 calls (bases, counts, lowers, truthy and falsy include_zero, float arguments),
    # recorded from django-prometheus 2.5.0 (see tests/powers_of_grid.py): values and exceptions.
    expected = json.loads(UPSTREAM_GRID.read_text())
    ours = json.loads(json.dumps(grid(PowersOf)))
    assert len(ours) == len(expected) == 842
    assert [row for row, want in zip(ours, expected, strict=True) if row != want] == []
