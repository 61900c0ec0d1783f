"""`GET /metrics`: the collector's state in the Prometheus text format, read at scrape time.

Nothing is counted twice: the metrics are built from the collector's own state when Prometheus
asks (a custom collector on a registry of our own, not the library's global one), so they can
never drift from what the API and the dashboard show. States are one series per entity with
the status as a label and the value 1, the way kube-state-metrics does it, so a query like
`sitewatch_site_status{status="down"} == 1` lists the sites down.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as MetricSource

from collector.service import Collector
from sitewatch.config.model import PRIORITIES


class StateMetrics(MetricSource):
    """The metrics of one collector."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        collector, pipeline = self.collector, self.collector.pipeline
        views = pipeline.views()
        sites = GaugeMetricFamily(
            "sitewatch_site_status",
            "The site's status (1 for the current one)",
            labels=["site", "status"],
        )
        links = GaugeMetricFamily(
            "sitewatch_link_status",
            "The link's status (1 for the current one)",
            labels=["link", "site", "kind", "role", "status"],
        )
        devices = GaugeMetricFamily(
            "sitewatch_device_status",
            "The device's status (1 for the current one)",
            labels=["device", "site", "kind", "status"],
        )
        for view in views:
            sites.add_metric([view.id, view.status], 1)
            for link in view.links:
                links.add_metric([link.id, view.id, link.kind, link.role, link.status], 1)
            for device in view.devices:
                devices.add_metric([device.id, view.id, device.kind, device.status], 1)
        yield from (sites, links, devices)

        by_priority = Counter(str(i.priority) for i in collector.incidents.open_incidents())
        open_incidents = GaugeMetricFamily(
            "sitewatch_incidents_open", "Incidents open or acknowledged", labels=["priority"]
        )
        for priority in PRIORITIES:
            open_incidents.add_metric([priority], by_priority[priority])
        yield open_incidents

        ingested = CounterMetricFamily(
            "sitewatch_results_ingested", "Probe results stored from agents", labels=[]
        )
        ingested.add_metric([], pipeline.ingested)
        yield ingested

        duplicates = CounterMetricFamily(
            "sitewatch_ingest_duplicates",
            "Results an agent sent that were stored already, refused as duplicates",
            labels=["agent"],
        )
        for agent, count in sorted(pipeline.duplicates.items()):
            duplicates.add_metric([agent], count)
        yield duplicates

        intake = collector.intake  # what agents sent that this collector could not take
        for name, text, counts in (
            ("sitewatch_results_refused", "Results refused for good (set aside by the agent)",
             intake.results_refused),
            ("sitewatch_heartbeats_refused", "Heartbeats refused; their batch's results kept",
             intake.heartbeats_refused),
            ("sitewatch_ingest_keys_ignored", "Unknown keys dropped from values and heartbeats",
             intake.keys_ignored),
        ):  # fmt: skip
            family = CounterMetricFamily(name, text, labels=["agent"])
            for agent, count in sorted(counts.items()):
                family.add_metric([agent], count)
            yield family

        outbox = GaugeMetricFamily(
            "sitewatch_agent_outbox_depth",
            "Results waiting in the agent's outbox, as of its last heartbeat",
            labels=["agent", "site"],
        )
        for site, heartbeat in pipeline.heartbeats.items():
            if heartbeat.outbox_depth is not None:  # checked at ingest: 0..2**63-1, a float
                outbox.add_metric([heartbeat.agent, site], heartbeat.outbox_depth)
        yield outbox

        passes = GaugeMetricFamily(
            "sitewatch_correlation_pass_seconds", "How long the latest correlation pass took"
        )
        passes.add_metric([], pipeline.pass_seconds)
        yield passes
        yield from self._leadership()

    def _leadership(self) -> Iterator[Metric]:
        """This collector's role among those on its database (collector.leadership)."""
        election = self.collector.election
        leader = GaugeMetricFamily(
            "sitewatch_leader",
            "1 if this collector leads the others on its database",
            labels=["replica"],
        )
        leader.add_metric([election.name], 1.0 if election.leading else 0.0)
        yield leader
        epoch = GaugeMetricFamily(
            "sitewatch_leader_epoch", "The leadership epoch, raised at each takeover, as last seen"
        )
        epoch.add_metric([], float(election.epoch or election.epoch_seen))
        yield epoch
        read = CounterMetricFamily(
            "sitewatch_results_read_back",
            "Results other collectors on the database stored, read into this one's state",
        )
        read.add_metric([], float(self.collector.arrivals.read))
        yield read


METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)


def registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateMetrics(collector))
    return registry


async def get_metrics(request: web.Request) -> web.StreamResponse:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
