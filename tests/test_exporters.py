from __future__ import annotations

from gatekeep import Limiter
from gatekeep.exporters import PrometheusCollector, instrument_opentelemetry
from gatekeep.metrics import Metrics


def _traffic(metrics: Metrics) -> None:
    limiter = Limiter("2/minute", metrics=metrics, name="api")
    for _ in range(3):
        limiter.hit("k")
    metrics.sessions.loads, metrics.sessions.hits = 4, 3
    metrics.backend_error("redis", "TimeoutError")
    metrics.watch("primary", lambda: {"kind": "breaker", "state": "half_open", "transitions": 3})


def test_prometheus_collector():
    from prometheus_client import CollectorRegistry, generate_latest

    metrics = Metrics(latency_sample=1)
    _traffic(metrics)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(metrics))
    text = generate_latest(registry).decode()
    assert 'gatekeep_decisions_total{result="allowed",rule="api"} 2.0' in text
    assert 'gatekeep_decisions_total{result="denied",rule="api"} 1.0' in text
    assert 'gatekeep_backend_errors_total{backend="redis",error="TimeoutError"} 1.0' in text
    assert 'gatekeep_session_operations_total{operation="hit"} 3.0' in text
    assert "gatekeep_session_hit_ratio 0.75" in text
    assert 'gatekeep_circuit_breaker_state{breaker="primary",state="half_open"} 1.0' in text
    assert 'gatekeep_circuit_breaker_state{breaker="primary",state="open"} 0.0' in text
    assert 'gatekeep_backend_latency_seconds_count{backend="memory"} 3.0' in text
    assert 'gatekeep_backend_latency_seconds_bucket{backend="memory",le="+Inf"} 3.0' in text
    # a second scrape sees new decisions
    Limiter("2/minute", metrics=metrics, name="api").hit("other")
    assert 'result="allowed",rule="api"} 3.0' in generate_latest(registry).decode()


def test_opentelemetry_instruments():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    metrics = Metrics(latency_sample=1)
    _traffic(metrics)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument_opentelemetry(provider, metrics)
    data = reader.get_metrics_data()
    points: dict[str, list] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = list(m.data.data_points)
    decisions = {
        (p.attributes["rule"], p.attributes["result"]): p.value
        for p in points["gatekeep.decisions"]
    }
    assert decisions[("api", "allowed")] == 2 and decisions[("api", "denied")] == 1
    assert points["gatekeep.session.hit.ratio"][0].value == 0.75
    assert points["gatekeep.backend.latency.count"][0].value == 3
    provider.shutdown()
