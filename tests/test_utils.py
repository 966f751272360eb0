from django_prometheus.utils import PowersOf, Time, TimeSince


def test_powers_of():
    assert PowersOf(2, 4) == [0, 1, 2, 4, 8]
    assert PowersOf(2, 4, lower=2) == [0, 4, 8]
    assert PowersOf(10, 3, include_zero=False) == [1, 10, 100]
    assert len(PowersOf(2, 30)) == 31


def test_time_since_is_non_negative_and_grows():
    t = Time()
    first = TimeSince(t)
    assert 0 <= first <= TimeSince(t)
