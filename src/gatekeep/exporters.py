"""Export :mod:`gatekeep.metrics` to Prometheus or OpenTelemetry.

Both read a snapshot (:meth:`Metrics.stats`) when they are scraped or collected;
nothing is added to the hot path.

Prometheus (extra ``prometheus``)::

    from prometheus_client import REGISTRY, make_asgi_app
    from gatekeep.exporters import PrometheusCollector
    REGISTRY.register(PrometheusCollector())
    app.mount("/metrics", make_asgi_app())

OpenTelemetry (extra ``otel``)::

    from gatekeep.exporters import instrument_opentelemetry
    instrument_opentelemetry()            # uses the global MeterProvider

Metric names follow Prometheus conventions (``_total`` counters, base units)::

    gatekeep_decisions_total{rule, result="allowed|denied|shadow_denied"}
    gatekeep_near_limit_total{rule}
    gatekeep_waits_total{rule}, gatekeep_settled_total{rule}
    gatekeep_fallback_decisions_total{breaker}
    gatekeep_backend_latency_seconds{backend}          (histogram)
    gatekeep_backend_errors_total{backend, error}
    gatekeep_circuit_breaker_state{breaker, state}     (1 for the current state)
    gatekeep_circuit_breaker_transitions_total{breaker}
    gatekeep_shard_breaker_state{breaker, shard, state} (Cluster: one breaker per primary)
    gatekeep_shard_fallback_decisions_total{breaker, shard}
    gatekeep_session_operations_total{operation="load|hit|miss|save|regenerate|destroy"}
    gatekeep_session_hit_ratio
    gatekeep_memory_keys{store}, gatekeep_memory_evictions_total{store}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .metrics import METRICS, Metrics

__all__ = ["PrometheusCollector", "instrument_opentelemetry", "samples"]

_RESULTS = ("allowed", "denied", "shadow_denied")
_SESSION_OPS = {
    "loads": "load",
    "hits": "hit",
    "misses": "miss",
    "saves": "save",
    "regenerations": "regenerate",
    "destroys": "destroy",
}
_BREAKER_STATES = ("closed", "open", "half_open")


def samples(stats: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str], float]]:
    """Flatten a snapshot into ``(name, kind, labels, value)``; kind is counter or gauge.

    Shared by both exporters (histograms are handled by each on its own).
    """
    for rule, c in stats["decisions"].items():
        for result in _RESULTS:
            yield "gatekeep_decisions", "counter", {"rule": rule, "result": result}, c[result]
        yield "gatekeep_near_limit", "counter", {"rule": rule}, c["near_limit"]
        yield "gatekeep_waits", "counter", {"rule": rule}, c["waits"]
        yield "gatekeep_settled", "counter", {"rule": rule}, c["settled"]
    for key, n in stats["backend_errors"].items():
        backend, _, error = key.partition(":")
        yield "gatekeep_backend_errors", "counter", {"backend": backend, "error": error}, n
    sessions = stats["sessions"]
    for field, op in _SESSION_OPS.items():
        yield "gatekeep_session_operations", "counter", {"operation": op}, sessions[field]
    yield "gatekeep_session_hit_ratio", "gauge", {}, sessions["hit_rate"]
    for name, watched in stats["watched"].items():
        kind = watched.get("kind")
        if kind == "breaker":
            for state in _BREAKER_STATES:
                yield (
                    "gatekeep_circuit_breaker_state",
                    "gauge",
                    {"breaker": name, "state": state},
                    float(watched["state"] == state),
                )
            yield (
                "gatekeep_circuit_breaker_transitions",
                "counter",
                {"breaker": name},
                watched.get("transitions", 0),
            )
            yield (
                "gatekeep_fallback_decisions",
                "counter",
                {"breaker": name},
                watched.get("fallback_calls", 0),
            )
            for shard, one in watched.get("shards", {}).items():
                for state in _BREAKER_STATES:
                    yield (
                        "gatekeep_shard_breaker_state",
                        "gauge",
                        {"breaker": name, "shard": shard, "state": state},
                        float(one["state"] == state),
                    )
                yield (
                    "gatekeep_shard_fallback_decisions",
                    "counter",
                    {"breaker": name, "shard": shard},
                    one["fallback_calls"],
                )
        elif kind == "sessions":
            for shard, n in watched.get("replica_reads_by_shard", {}).items():
                yield (
                    "gatekeep_session_replica_reads",
                    "counter",
                    {"store": name, "shard": shard},
                    n,
                )
            replicas = watched.get("replicas", {})
            for reason in ("down", "failed", "refused"):
                yield (
                    "gatekeep_session_replicas_skipped",
                    "counter",
                    {"store": name, "reason": reason},
                    replicas.get(f"skipped_{reason}", 0),
                )
        elif kind == "memory_store":
            yield "gatekeep_memory_keys", "gauge", {"store": name}, watched["keys"]
            yield ("gatekeep_memory_evictions", "counter", {"store": name}, watched["evictions"])
        elif kind == "denial_cache":
            yield "gatekeep_local_denials", "counter", {"cache": name}, watched["local_denials"]
            yield "gatekeep_denial_cache_keys", "gauge", {"cache": name}, watched["keys"]
        elif kind == "leases":
            yield "gatekeep_leases_held", "gauge", {"limiter": name}, watched["held"]
            yield "gatekeep_leases_lost", "counter", {"limiter": name}, watched["lost"]


#: Every metric ``samples`` yields, and its kind.
_KINDS = {
    "gatekeep_decisions": "counter",
    "gatekeep_near_limit": "counter",
    "gatekeep_waits": "counter",
    "gatekeep_settled": "counter",
    "gatekeep_fallback_decisions": "counter",
    "gatekeep_backend_errors": "counter",
    "gatekeep_session_operations": "counter",
    "gatekeep_session_hit_ratio": "gauge",
    "gatekeep_circuit_breaker_state": "gauge",
    "gatekeep_circuit_breaker_transitions": "counter",
    "gatekeep_memory_keys": "gauge",
    "gatekeep_memory_evictions": "counter",
    "gatekeep_shard_breaker_state": "gauge",
    "gatekeep_shard_fallback_decisions": "counter",
    "gatekeep_local_denials": "counter",
    "gatekeep_denial_cache_keys": "gauge",
    "gatekeep_session_replica_reads": "counter",
    "gatekeep_session_replicas_skipped": "counter",
    "gatekeep_leases_held": "gauge",
    "gatekeep_leases_lost": "counter",
}

_HELP = {
    "gatekeep_decisions": "Rate-limit decisions by rule and result.",
    "gatekeep_near_limit": "Allowed decisions with less than 20% of the limit remaining.",
    "gatekeep_waits": "Requests that slept before passing (acquire, a rule's delay).",
    "gatekeep_settled": "Reservations settled (reserve then settle, a rule's settle).",
    "gatekeep_fallback_decisions": "Calls answered by the fallback policy, not Redis.",
    "gatekeep_backend_errors": "Errors raised by a backend, by exception type.",
    "gatekeep_session_operations": "Session store operations.",
    "gatekeep_session_hit_ratio": "Session loads that found a session, over all loads.",
    "gatekeep_circuit_breaker_state": "1 for the circuit breaker's current state.",
    "gatekeep_circuit_breaker_transitions": "Circuit breaker state changes.",
    "gatekeep_memory_keys": "Keys held by an in-process store.",
    "gatekeep_shard_breaker_state": "1 for the current state of one shard's circuit breaker.",
    "gatekeep_shard_fallback_decisions": "Calls for one shard's keys answered by the fallback.",
    "gatekeep_memory_evictions": "Keys an in-process store evicted to stay bounded.",
    "gatekeep_local_denials": "Denials answered in process from the cache of denied keys.",
    "gatekeep_denial_cache_keys": "Keys held by a limiter's cache of denied keys.",
    "gatekeep_leases_held": "Concurrency slots this process holds (and renews) now.",
    "gatekeep_leases_lost": "Leases that lapsed before their renewal (holder paused too long).",
    "gatekeep_backend_latency_seconds": "Latency of one backend call (sampled).",
    "gatekeep_session_replica_reads": "Session reads a replica served, per failing shard.",
    "gatekeep_session_replicas_skipped": (
        "Replicas not used for a session read: known down, failed, or refused (not a copy)."
    ),
}


class PrometheusCollector:
    """A ``prometheus_client`` custom collector over a :class:`Metrics` registry."""

    def __init__(self, metrics: Metrics = METRICS) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # unchecked collector: the label sets depend on the rules in use

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self.metrics.stats()
        families: dict[str, Any] = {}
        for name, kind, labels, value in samples(stats):
            family = families.get(name)
            if family is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                family = families[name] = cls(name, _HELP[name], labels=list(labels))
            family.add_metric(list(labels.values()), value)
        yield from families.values()

        latency = HistogramMetricFamily(
            "gatekeep_backend_latency_seconds",
            _HELP["gatekeep_backend_latency_seconds"],
            labels=["backend"],
        )
        for backend, hist in stats["latency"].items():
            buckets = [(_le(bound), n) for bound, n in hist["buckets"].items()]
            latency.add_metric([backend], buckets, hist["sum"])
        yield latency


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def instrument_opentelemetry(meter_provider: Any = None, metrics: Metrics = METRICS) -> Any:
    """Register observable instruments on an OpenTelemetry meter; returns the meter.

    Counters become observable counters, gauges observable gauges; the latency
    histogram is reported as ``gatekeep.backend.latency.count`` and ``.sum``
    (an OpenTelemetry histogram cannot be observed asynchronously).
    """
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Observation

    meter = (
        meter_provider.get_meter("gatekeep")
        if meter_provider is not None
        else otel_metrics.get_meter("gatekeep")
    )

    def observe(wanted: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(value, labels)
                for name, _, labels, value in samples(metrics.stats())
                if name == wanted
            ]

        return callback

    for name, kind in _KINDS.items():
        otel_name = name.replace("_", ".")
        if kind == "counter":
            meter.create_observable_counter(
                otel_name, callbacks=[observe(name)], description=_HELP[name]
            )
        else:
            meter.create_observable_gauge(
                otel_name, callbacks=[observe(name)], description=_HELP[name]
            )

    def latency(field: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(h[field], {"backend": backend})
                for backend, h in metrics.stats()["latency"].items()
            ]

        return callback

    meter.create_observable_counter("gatekeep.backend.latency.count", callbacks=[latency("count")])
    meter.create_observable_counter(
        "gatekeep.backend.latency.sum", unit="s", callbacks=[latency("sum")]
    )
    return meter
