"""Probe timing and thresholds as the kubelet counts them (pure, no cluster)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import probes  # noqa: E402


def run(state, results, start=100.0):
    """Feed results at each due time; returns (time, turned) for each check."""
    out, now = [], start
    for ok in results:
        while not state.due(now, gated=False):
            now += 0.5
        state.begin(now)
        out.append((now, state.record(ok)))
    return out


def test_defaults_are_the_kubernetes_ones():
    timing = probes.Timing.of({})
    assert (timing.initial_delay, timing.period, timing.timeout, timing.success_threshold,
            timing.failure_threshold) == (0, 10, 1, 1, 3)


def test_first_check_after_the_initial_delay_then_every_period():
    state = probes.ProbeState("readinessProbe", {"initialDelaySeconds": 5, "periodSeconds": 2}, 100.0)
    assert not state.due(104.9, gated=False) and state.due(105.0, gated=False)
    times = [t for t, _ in run(state, [False, False, True])]
    assert times == [105.0, 107.0, 109.0]


def test_readiness_turns_after_its_thresholds():
    state = probes.ProbeState("readinessProbe", {"periodSeconds": 1, "successThreshold": 2, "failureThreshold": 3}, 0.0)
    assert state.result is False  # a container starts NotReady
    assert [turned for _, turned in run(state, [True, True])] == ["", "passed"]
    assert state.result is True
    assert [turned for _, turned in run(state, [False, False, True, False, False, False], start=10)] == \
        ["", "", "", "", "", "failed"]
    assert state.result is False


def test_liveness_fails_only_after_failure_threshold_in_a_row():
    state = probes.ProbeState("livenessProbe", {"periodSeconds": 1, "failureThreshold": 2}, 0.0)
    assert state.result is True
    assert [turned for _, turned in run(state, [False, True, False, False])] == ["", "", "", "failed"]


def test_startup_passes_once_and_fails_after_its_budget():
    passing = probes.ProbeState("startupProbe", {"periodSeconds": 1, "failureThreshold": 3}, 0.0)
    assert [turned for _, turned in run(passing, [False, True])] == ["", "passed"]
    failing = probes.ProbeState("startupProbe", {"periodSeconds": 1, "failureThreshold": 3}, 0.0)
    assert [turned for _, turned in run(failing, [False, False, False])] == ["", "", "failed"]


def test_gated_probes_wait_and_readiness_runs_at_once_when_ungated():
    readiness = probes.ProbeState("readinessProbe", {"periodSeconds": 10}, 0.0)
    liveness = probes.ProbeState("livenessProbe", {"periodSeconds": 10}, 0.0)
    assert not readiness.due(50.0, gated=True) and not liveness.due(50.0, gated=True)
    readiness.ungate(50.0)
    liveness.ungate(50.0)
    assert readiness.due(50.0, gated=False)
    assert not liveness.due(50.0, gated=False) and liveness.due(60.0, gated=False)


def test_a_check_in_flight_is_not_started_twice_and_missed_ticks_are_skipped():
    state = probes.ProbeState("readinessProbe", {"periodSeconds": 1}, 0.0)
    state.begin(0.0)
    assert not state.due(5.0, gated=False)
    state.begin(5.0)  # a slow check: ticks 1..5 are gone
    assert state.next_due == 6.0


@pytest.mark.parametrize("port, expected", [(8080, 8080), ("8080", 8080), ("http", 11434)])
def test_ports_by_number_or_name(port, expected):
    assert probes.resolve_port(port, {"ports": [{"name": "http", "containerPort": 11434}]}) == expected


def test_an_unknown_port_name_is_a_failed_check():
    ok, message = probes.run_check({"tcpSocket": {"port": "nope"}}, {"container": {"name": "c"}, "netns": "x", "ip": "1.2.3.4"})
    assert not ok and "not a named port" in message
