"""The keep-alive activity analyzer's two steps: learning a device's period, and the keep-alives off it."""
import numpy as np

from harness.analyzers.keepalive_activity import learn_period, off_period


def schedule(seed=1, period=120.0, duration=1800.0, jitter=0.1):
    rng = np.random.default_rng(seed)
    t, out = float(rng.uniform(5, period)), []
    while t < duration:
        out.append(round(t, 3))
        t += period * float(rng.uniform(1 - jitter, 1 + jitter))
    return out


def test_a_steady_schedule_has_its_period_and_nothing_off_it():
    times = schedule()
    period = learn_period(times)
    assert 108 <= period <= 132
    assert off_period(times, period) == []


def test_activity_pings_are_found_among_the_periodic_ones():
    periodic = schedule(seed=2)
    pings = [33.3, 250.0, 251.5, 700.2, 1333.0]
    times = sorted(periodic + pings)
    period = learn_period(times)
    assert 108 <= period <= 132
    found = off_period(times, period)
    # A ping a few seconds from a periodic keep-alive can swap places with it (both chains fit).
    assert len(set(found) & set(pings)) >= 4 and len(set(found) - set(pings)) <= 1


def test_too_few_keepalives_teach_no_period():
    assert learn_period([10.0, 130.0, 250.0]) is None
