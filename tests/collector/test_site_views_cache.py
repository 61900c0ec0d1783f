"""The state book's kept views are the views built afresh, whatever happened and whenever asked.

`StateBook.views` keeps each site's link and device views between calls and rebuilds a part
only when something it shows may have moved (collector/state.py's docstring). A part kept too
long would show staff a stale status, so two books are fed the same random steps (results of
links and devices from both vantage points, late ones among them, heartbeats, agents' clocks,
maintenance, correlation passes remembered or not, time moving on and back): one keeps its views,
the other forgets them before every call, and at every step both must show the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.state import SiteView, StateBook, Vantage
from collector.topology import Correlation
from probes.result import JsonValue, ProbeResult
from tests.collector.test_evidence import AGENTS, HOPS, INVENTORY, T0

LINKS = [link.id for _, link in INVENTORY.links()]
# the devices of the sites with an agent, and a few of a site without one
DEVICES = [d.id for site, d in INVENTORY.devices() if site.id in AGENTS.values()] + [
    d.id for site, d in INVENTORY.devices() if site.id not in AGENTS.values()
][:4]
SITE_OF = {link.id: site.id for site, link in INVENTORY.links()}
AGENT_OF = {site: agent for agent, site in AGENTS.items()}
MAINTAINABLE = [("site", "willowvale"), ("site", "tesko"), ("link", "willowvale-mpls")] + [
    ("device", device) for device in DEVICES[:3]
]


def _link_result(link: str, kind: str, ok: bool, at: float) -> ProbeResult:
    """A result of the link's ping, interface or path probe, as the probes write them."""
    when = T0 + timedelta(seconds=at)
    if kind == "icmp":
        loss = 0.0 if ok else 1.0
        return ProbeResult(link, "icmp", when, ok=ok, rtt_ms=4.0 if ok else None, loss=loss)
    if kind == "interface":
        oper = "up" if ok else "down"
        value: dict[str, JsonValue] = {"ifindex": 2, "ifname": "up0", "oper": oper, "admin": "up"}
        return ProbeResult(link, "interface", when, ok=ok, value=value)
    via = link if ok or link not in HOPS else next(other for other in HOPS if other != link)
    hop: dict[str, JsonValue] = {"toward": "10.99.0.254", "ttl": 1, "hop": HOPS.get(via, "")}
    return ProbeResult(link, "path", when, ok=via == link, value=hop | {"via": via})


What = Literal["link", "device", "heard", "clock", "maintenance", "correlate", "peek", "drop"]
# how often each happens: results most, then heartbeats and passes
HAPPENINGS: list[What] = [
    "link", "link", "link", "link", "device", "device", "device", "heard", "heard", "clock",
    "maintenance", "correlate", "correlate", "peek", "drop",
]  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One thing that happens to the collector, `at` seconds after T0 (its clock then)."""

    what: What
    at: float
    target: int = 0
    vantage: Vantage = "agent"
    kind: str = "icmp"
    ok: bool = True
    lag: float = 0.0  # how long before `at` the result was probed (or the agent's clock error)
    chosen: frozenset[int] = frozenset()


@st.composite
def steps(draw: st.DrawFn) -> list[Step]:
    """Up to 60 steps a few seconds apart (sometimes minutes, sometimes back in time)."""
    at = 0.0
    found = []
    for _ in range(draw(st.integers(1, 60))):
        at += draw(st.sampled_from([0.0, 1.0, 5.0, 30.0, 31.0, 89.0, 90.0, 91.0, 200.0, -20.0]))
        what = draw(st.sampled_from(HAPPENINGS))
        found.append(
            Step(
                what,
                at,
                target=draw(st.integers(0, 50)),
                vantage=draw(st.sampled_from(["agent", "centre"])),
                kind=draw(st.sampled_from(["icmp", "interface", "path", "tcp"])),
                ok=draw(st.booleans()),
                lag=draw(st.sampled_from([0.0, 2.0, 10.0, 60.0, 95.0, 300.0, -8.0])),
                chosen=draw(st.frozensets(st.integers(0, len(MAINTAINABLE) - 1))),
            )
        )
    return found


@dataclass
class Twin:
    """A state book and what the collector keeps beside it: its latest correlation pass."""

    book: StateBook = field(default_factory=lambda: StateBook(INVENTORY, dict(AGENTS)))
    correlation: Correlation | None = None
    maintained: frozenset[tuple[str, str]] = frozenset()

    def apply(self, step: Step) -> None:
        """Do to the book what the pipeline does on `step`."""
        now = (T0 + timedelta(seconds=step.at)).timestamp()
        probed = step.at - step.lag
        if step.what == "link":
            link = LINKS[step.target % len(LINKS)]
            kind = step.kind if step.vantage == "agent" and step.kind != "tcp" else "icmp"
            self.book.observe(step.vantage, _link_result(link, kind, step.ok, probed))
        elif step.what == "device":
            device = DEVICES[step.target % len(DEVICES)]
            kind = "icmp" if step.kind in ("interface", "path") else step.kind
            when = T0 + timedelta(seconds=probed)
            self.book.observe(step.vantage, ProbeResult(device, kind, when, ok=step.ok))
        elif step.what == "heard":
            agent = list(AGENTS)[step.target % len(AGENTS)]
            self.book.heard_from(agent, now, (T0 + timedelta(seconds=probed)).timestamp())
        elif step.what == "clock":
            agent = list(AGENTS)[step.target % len(AGENTS)]
            self.book.agent_clock(agent, now, now - step.lag)
        elif step.what == "maintenance":
            self.maintained = frozenset(MAINTAINABLE[i] for i in step.chosen)
        elif step.what == "correlate":  # the pipeline's pass
            self.correlation = self.book.correlate(now, self.maintained)
            self.book.track(self.correlation, now)
        elif step.what == "peek":  # a pass not remembered (`Pipeline.views` before the first)
            self.correlation = self.book.correlate(now, self.maintained)
        else:  # a replay drops the centre's states behind the book's back (collector.history)
            for key in [key for key in self.book.targets if key[2] == "centre"]:
                del self.book.targets[key]

    def views(self, at: float) -> list[SiteView]:
        return list(self.book.views((T0 + timedelta(seconds=at)).timestamp(), self.correlation))


@settings(max_examples=300, deadline=None)
@given(steps())
def test_kept_views_are_the_views_built_afresh_at_every_step(happened: list[Step]) -> None:
    kept, fresh = Twin(), Twin()
    for step in happened:
        kept.apply(step)
        fresh.apply(step)
        for ask in (step.at, step.at + 91.0, step.at + 45.0, step.at + 90.0):  # and back
            fresh.book.forget_views()
            assert kept.views(ask) == fresh.views(ask), (step, ask)


def _fed(book: StateBook) -> Callable[[float], list[SiteView]]:
    """Hear every agent and feed each link and device a few results; return the views at T0+s."""
    for second in (0.0, 30.0, 60.0):
        for link in LINKS:
            book.observe("centre", _link_result(link, "icmp", True, second))
            book.observe("agent", _link_result(link, "icmp", True, second))
        for device in DEVICES:
            book.observe(
                "agent", ProbeResult(device, "icmp", T0 + timedelta(seconds=second), ok=True)
            )
    for agent in AGENTS:
        book.heard_from(agent, (T0 + timedelta(seconds=60)).timestamp(), 0.0)
    correlation = book.correlate((T0 + timedelta(seconds=61)).timestamp())
    book.track(correlation, (T0 + timedelta(seconds=61)).timestamp())
    return lambda second: list(
        book.views((T0 + timedelta(seconds=second)).timestamp(), correlation)
    )


def test_a_view_nothing_moved_is_kept_and_one_a_result_moved_is_rebuilt() -> None:
    book = StateBook(INVENTORY, dict(AGENTS))
    views_at = _fed(book)
    first, again = views_at(61), views_at(62)
    assert all(a is b for a, b in zip(first, again, strict=True))  # kept: the same objects
    device = next(d.id for site, d in INVENTORY.devices() if site.id == "tesko")
    for second in (63.0, 64.0, 65.0):  # three failures: the device goes down
        failed = ProbeResult(device, "icmp", T0 + timedelta(seconds=second), ok=False)
        book.observe("agent", failed)
    moved = {view.id: view for view in views_at(66)}
    site = next(site.id for site, d in INVENTORY.devices() if d.id == device)
    shown = {d.id: d.status for d in moved[site].devices}
    assert shown[device] == "down"
    others = [view for view in views_at(66) if view.id != site]
    assert all(view is moved[view.id] for view in others)


def test_an_agents_word_goes_stale_with_time_alone() -> None:
    """With nothing new, the agent's readings stop counting once older than the allowance."""
    book = StateBook(INVENTORY, dict(AGENTS))
    views_at = _fed(book)
    tesko = next(view for view in views_at(61) if view.id == "tesko")
    assert all(word.counted for link in tesko.links for word in link.evidence)
    # its newest result was probed at T0+60 s: news until 90 s later (3 intervals of 30 s)
    still = next(view for view in views_at(150) if view.id == "tesko")
    stale = next(view for view in views_at(150.5) if view.id == "tesko")
    assert still.agent_alive
    assert stale.agent_alive is False
    book.heard_from("tesko-01", (T0 + timedelta(seconds=150)).timestamp())
    heard = next(view for view in views_at(150.5) if view.id == "tesko")
    agent_words = [w for link in heard.links for w in link.evidence if w.source == "far-end-ping"]
    assert agent_words
    assert not any(word.counted for word in agent_words)
