"""Build, change and tear down a lab municipality in network namespaces.

Everything the lab creates is first written to a manifest under /run/sitewatch-lab, so that
`down()` (and `sweep_stale()`, for labs whose process died) can remove every namespace,
interface, address, route, forwarding switch and process, even after a failed test or a
kill -9.

Routers (devices of kind "router") are answered by a real net-snmp `snmpd` inside their site's
namespace, so their IF-MIB lists the site's own interfaces (up0, up1, ...) and ifOperStatus
follows the lab's cuts. The hub forwards only on its own lab veths (never the host's global
ip_forward), so that a TTL-limited echo toward the core address is answered "time exceeded"
by the hub end of the link the site's traffic uses.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sitewatch.config import load_inventory
from sitewatch.config.model import HUB
from tests.lab.plan import (
    DevicePlan,
    LabError,
    Plan,
    Routes,
    check_safe,
    compute_routes,
    make_plan,
)
from tests.lab.responders import SCENARIO, write_printer_data

MANIFESTS = Path("/run/sitewatch-lab")
READY_TIMEOUT = float(
    os.environ.get("LAB_READY_TIMEOUT", "30")
)  # seconds for snmpsim, snmpd and sipp to answer after start
SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"  # root's PATH may lack /usr/sbin
# NET-SNMP-AGENT-MIB nsCacheTimeout of ifTable (ifXTable shares its cache): 3 s by default,
# set to 1 s so that a cut shows in a router's ifOperStatus within a second.
IFTABLE_CACHE_TIMEOUT = "1.3.6.1.4.1.8072.1.5.3.1.2.1.3.6.1.2.1.2.2"
CORE_SIDE = "hub0"  # the core namespace's end of its veth to the hub


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, *, poll: float = 0.25
) -> None:
    """Poll `predicate` until it is true, or raise LabError naming `what` after `timeout`.

    Looks come quickly at first, then at most `poll` seconds apart: smaller to act on the
    moment something happens rather than near it.
    """
    deadline = time.monotonic() + timeout
    delay = min(0.02, poll)
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not happen within {timeout:g}s")
        time.sleep(delay)  # polling interval of a condition wait, not a synchronisation sleep
        delay = min(delay * 2, poll)


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run a command; raise LabError with its stderr if it fails and `check` is set."""
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
    )
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def can_build() -> str:
    """Return why this machine cannot build a lab, or nothing when it can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth pairs, routes)"
    for tool in ("ip", "sipp", "snmpget", "snmpset", "fping"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (make test installs it as root)"
    if not Path(SNMPD).exists():
        return "the lab needs net-snmp's snmpd for its routers (make test installs it as root)"
    responder = Path(sys.executable).with_name("snmpsim-command-responder")
    if not responder.exists():
        return "the lab needs snmpsim in the virtualenv (pip install -e '.[test]')"
    return ""


class Lab:
    """A municipality built from an inventory file: the root namespace is its hub."""

    def __init__(
        self,
        inventory_file: Path,
        *,
        hub_address: str = "10.99.0.1",
        core_address: str = "10.99.0.254",
    ) -> None:
        self.inventory = load_inventory(inventory_file)
        self.prefix = f"sw{secrets.token_hex(2)}"
        self.plan: Plan = make_plan(self.inventory, self.prefix, hub_address, core_address)
        self.manifest_path = MANIFESTS / f"{self.prefix}.json"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.up_links: set[str] = {link.id for link in self.plan.links}
        self.removed: set[str] = set()
        self.installed: Routes = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.manifest: dict[str, list[str] | int | str] = {
            "pid": os.getpid(),
            "workdir": str(self.workdir),
            "namespaces": [],
            "root_links": [],
            "root_addresses": [],
            "root_routes": [],
            "root_forwarding": [],
            "pids": [],
        }

    # -- building ---------------------------------------------------------------------------

    def up(self) -> None:
        """Build everything; on any failure, remove what was built and raise."""
        try:
            self._check_host()
            self._build_network()
            self._build_core()
            self._apply_routes()
            self._start_responders()
        except BaseException:
            self.down()
            raise

    def _check_host(self) -> None:
        resolvers = []
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                resolvers.append(parts[1].split("%")[0])
        addresses = json.loads(run(["ip", "-j", "addr"]))
        host = [info["local"] for link in addresses for info in link.get("addr_info", [])]
        taken = []
        for text in (*resolvers, *host):
            address = ipaddress.ip_address(text)
            if isinstance(address, ipaddress.IPv4Address):
                taken.append(address)
        routes = json.loads(run(["ip", "-j", "route"]))
        networks = [r["dst"] for r in routes if r.get("dst", "default") != "default"]
        check_safe(self.plan, taken, networks)

    def _remember(self, key: str, value: str) -> None:
        entries = self.manifest[key]
        assert isinstance(entries, list)
        entries.append(value)
        MANIFESTS.mkdir(parents=True, exist_ok=True)
        self.manifest_path.write_text(json.dumps(self.manifest))

    def _build_network(self) -> None:
        plan = self.plan
        for network in plan.networks:  # first: nothing of the lab may ever leave the host
            self._remember("root_routes", f"blackhole {network}")
            run(["ip", "route", "add", "blackhole", str(network)])
        for address in (plan.hub_address, plan.standby_address):
            self._remember("root_addresses", f"{address}/32")
            run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
        for site in plan.sites:
            namespace = plan.namespace(site)
            assert namespace is not None
            self._remember("namespaces", namespace)
            run(["ip", "netns", "add", namespace])
            commands = ["link set lo up"]
            commands += [f"route add blackhole {network}" for network in plan.networks]
            run(["ip", "-n", namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")
            for setting in (
                "net.ipv4.ip_forward=1",
                "net.ipv4.icmp_ratelimit=0",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ):
                run(["ip", "netns", "exec", namespace, "sysctl", "-qw", setting])
        for link in plan.links:
            parent_ns, child_ns = plan.namespace(link.parent.node), plan.namespace(link.child.node)
            assert child_ns is not None
            if parent_ns is None:
                self._remember("root_links", link.parent.interface)
            run(
                [
                    "ip",
                    "link",
                    "add",
                    link.parent.interface,
                    *self._netns_arg(parent_ns),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.child.interface,
                    "netns",
                    child_ns,
                ]
            )
            for namespace, end in ((parent_ns, link.parent), (child_ns, link.child)):
                prefix_len = end.network.prefixlen
                self._ip(
                    namespace, "addr", "add", f"{end.address}/{prefix_len}", "dev", end.interface
                )
                self._ip(namespace, "link", "set", end.interface, "up")
        for device in plan.devices:
            self._ip(
                plan.namespace(device.site), "addr", "add", f"{device.address}/32", "dev", "lo"
            )

    def _build_core(self) -> None:
        """Put the core address behind the hub, and let the hub forward on its lab veths only.

        The core routes only the lab's own networks back to the hub (no default route), and
        forwarding is switched on per interface, for the hub's ends of the lab's links and of
        the core's veth: the host's other interfaces and its global ip_forward stay untouched.
        """
        plan = self.plan
        core, hub = plan.core_namespace, plan.hub_address
        self._remember("namespaces", core)
        run(["ip", "netns", "add", core])
        self._remember("root_links", plan.core_interface)
        run(
            [
                "ip", "link", "add", plan.core_interface, "type", "veth",
                "peer", "name", CORE_SIDE, "netns", core,
            ]
        )  # fmt: skip
        commands = [
            "link set lo up",
            f"addr add {plan.core_address}/32 dev {CORE_SIDE}",
            f"link set {CORE_SIDE} up",
            f"route add {hub}/32 dev {CORE_SIDE}",
            *(f"route add {network} via {hub} dev {CORE_SIDE}" for network in plan.networks),
        ]
        run(["ip", "-n", core, "-batch", "-"], stdin="\n".join(commands) + "\n")
        run(["ip", "netns", "exec", core, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        self._ip(None, "link", "set", plan.core_interface, "up")
        self._remember("root_routes", f"{plan.core_address}/32")
        self._ip(
            None, "route", "replace", f"{plan.core_address}/32",
            "dev", plan.core_interface, "src", str(hub),
        )  # fmt: skip
        for interface in plan.hub_interfaces:
            self._remember("root_forwarding", interface)
            run(["sysctl", "-qw", f"net.ipv4.conf.{interface}.forwarding=1"])

    @staticmethod
    def _netns_arg(namespace: str | None) -> list[str]:
        return [] if namespace is None else ["netns", namespace]

    @staticmethod
    def _ip(namespace: str | None, *args: str) -> str:
        return run(["ip", *([] if namespace is None else ["-n", namespace]), *args])

    def _apply_routes(self) -> None:
        """Install the routes the current link states call for, and drop stale ones."""
        desired = compute_routes(self.plan, self.up_links)
        for node, table in desired.items():
            namespace = self.plan.namespace(node)
            old = self.installed.get(node, {})
            commands = [f"route del {d}/32" for d in old if d not in table]
            source = self.plan.source(node)
            src = f" src {source}" if source is not None else ""
            commands += [
                f"route replace {d}/32 via {via} dev {dev}{src}" for d, (via, dev) in table.items()
            ]
            if namespace is None:
                for destination in table:
                    if destination not in old:
                        self._remember("root_routes", f"{destination}/32")
            if commands:
                batch = ["ip", *([] if namespace is None else ["-n", namespace]), "-force"]
                run([*batch, "-batch", "-"], stdin="\n".join(commands) + "\n", check=False)
        self.installed = desired

    def _start_responders(self) -> None:
        plan = self.plan
        responder = str(Path(sys.executable).with_name("snmpsim-command-responder"))
        scenario = self.workdir / "phone.xml"  # written once: every sipp reads it at start
        scenario.write_text(SCENARIO)
        for site in plan.sites:
            namespace = plan.namespace(site)
            assert namespace is not None
            printers = [
                d for d in plan.devices if d.site == site and d.snmp_community and not d.router
            ]
            by_community: dict[str, list[DevicePlan]] = {}
            for printer in printers:
                by_community.setdefault(str(printer.snmp_community), []).append(printer)
            for community, members in by_community.items():
                data_dir = self.workdir / f"snmp-{site}-{community}"
                endpoints = write_printer_data(data_dir, site, community, members)
                self._spawn(
                    [
                        "ip",
                        "netns",
                        "exec",
                        namespace,
                        responder,
                        f"--data-dir={data_dir}",
                        f"--cache-dir={self.workdir / 'snmp-cache' / site}",
                        "--log-level=error",
                        *endpoints,
                    ],
                    env={"SNMPSIM_ALLOW_ROOT": "true"},
                )
            for phone in (d for d in plan.devices if d.site == site and d.sip_port):
                self._spawn(
                    [
                        "ip",
                        "netns",
                        "exec",
                        namespace,
                        "sipp",
                        "-sf",
                        str(scenario),
                        "-i",
                        str(phone.address),
                        "-p",
                        str(phone.sip_port),
                        "-nostdin",
                        "-nd",
                        "-max_recv_loops",
                        "1000",
                    ],
                    cwd=self.workdir,
                )
        for number, router in enumerate(d for d in plan.devices if d.router and d.snmp_community):
            self._start_snmpd(router, 1161 + number)
        for device in plan.devices:
            address = str(device.address)
            if device.snmp_community and not device.router:
                snmp = functools.partial(self.snmp_answers, address, device.snmp_community)
                wait_until(snmp, READY_TIMEOUT, f"snmpsim answering as {device.id}")
            if device.sip_port:
                sip = functools.partial(self.sip_answers, address, device.sip_port)
                wait_until(sip, READY_TIMEOUT, f"sipp answering as {device.id}")

    def _start_snmpd(self, router: DevicePlan, local_port: int) -> None:
        """Answer as a router: net-snmp's snmpd over the site namespace's own interfaces.

        It listens on the router's address with the device's community, and on loopback with
        a one-off write community (loopback of the site's namespace only), used once to set
        the ifTable cache to 1 s.
        """
        namespace = self.namespace(router.site)
        folder = self.workdir / f"snmpd-{router.id}"
        folder.mkdir()
        secret = secrets.token_hex(8)
        config = folder / "snmpd.conf"
        config.write_text(
            f"agentAddress udp:{router.address}:161,udp:127.0.0.1:{local_port}\n"
            f"rocommunity {router.snmp_community} default\n"
            f"rwcommunity {secret} 127.0.0.1\n"
            f"sysName {router.id}\n"
            f"sysDescr SiteWatch lab router {router.id} (net-snmp)\n"
            "dontLogTCPWrappersConnects yes\n"
        )
        self._spawn(
            [
                "ip", "netns", "exec", namespace, SNMPD, "-f", "-C", "-c", str(config),
                "-Lf", str(folder / "snmpd.log"), "-p", str(folder / "snmpd.pid"),
            ],
            env={"SNMP_PERSISTENT_DIR": str(folder / "persistent"), "MIBS": ""},
        )  # fmt: skip
        community = str(router.snmp_community)
        answers = functools.partial(self.snmp_answers, str(router.address), community)
        wait_until(answers, READY_TIMEOUT, f"snmpd answering as {router.id}")
        done = self.exec_in(
            router.site,
            [
                "snmpset", "-v2c", "-c", secret, "-r2", "-t1", f"127.0.0.1:{local_port}",
                IFTABLE_CACHE_TIMEOUT, "i", "1",
            ],
        )  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"{router.id}: could not set snmpd's ifTable cache: {done.stderr}")

    def _spawn(
        self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        log = (self.workdir / f"process-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd or self.workdir,
            start_new_session=True,  # so down() can stop the whole process group
        )
        log.close()  # the child holds its own descriptor
        self.processes.append(process)
        self._remember("pids", str(process.pid))

    # -- probing from the hub, for readiness and tests ---------------------------------------

    @staticmethod
    def snmp_answers(address: str, community: str, namespace: str | None = None) -> bool:
        """Return whether net-snmp's snmpget gets sysName from `address`."""
        argv = [
            "snmpget",
            "-v2c",
            "-c",
            community,
            "-r0",
            "-t0.5",
            "-Oqv",
            address,
            "1.3.6.1.2.1.1.5.0",
        ]
        if namespace:
            argv = ["ip", "netns", "exec", namespace, *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        return done.returncode == 0 and bool(done.stdout.strip())

    @staticmethod
    def sip_answers(address: str, port: int, timeout: float = 0.5) -> bool:
        """Return whether a SIP OPTIONS to `address` gets a final response."""
        call_id = secrets.token_hex(8)
        request = (
            f"OPTIONS sip:lab@{address}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:lab@sitewatch>;tag={call_id}\r\n"
            f"To: <sip:lab@{address}>\r\n"
            f"Call-ID: {call_id}@sitewatch\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(request, (address, port))
                while True:
                    data = sock.recv(65535)
                    if call_id.encode() in data and data.startswith(b"SIP/2.0 "):
                        return int(data[8:11]) >= 200
            except OSError:  # timeout, refused, unreachable
                return False

    def namespace(self, site_id: str) -> str:
        """Return the namespace of a site."""
        namespace = self.plan.namespace(site_id)
        if namespace is None:
            raise LabError("the hub is the root namespace")
        return namespace

    def exec_in(self, site_id: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run a command inside a site's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(site_id), *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def hop_toward(self, site_id: str, ttl: int = 1) -> str | None:
        """Return who answers a TTL-limited echo from a site toward the core, or None.

        At TTL 1 that is the hub end of the link the site's traffic uses now: the path the
        path probe sees. fping says "ICMP Time Exceeded from HOP for ICMP Echo sent to CORE".
        """
        core = str(self.plan.core_address)
        argv = ["fping", "-c1", "-t500", f"--ttl={ttl}", core]
        for line in self.exec_in(site_id, argv).stderr.splitlines():
            words = line.split()
            if line.startswith("ICMP Time Exceeded from ") and len(words) > 4:
                return words[4]
        return None

    # -- changing the network ----------------------------------------------------------------

    def cut_link(self, link_id: str) -> None:
        """Take a link down at both ends, and let the routes converge around it."""
        self.cut_links(link_id)

    def cut_links(self, *link_ids: str) -> None:
        """Take links down together, and let the routes converge once all of them are down.

        So traffic never fails over from one of them to another on the way.
        """
        for link_id in link_ids:
            link = self.plan.link(link_id)
            for end in (link.parent, link.child):
                self._ip(self.plan.namespace(end.node), "link", "set", end.interface, "down")
            self.up_links.discard(link_id)
        self._apply_routes()

    def restore_link(self, link_id: str) -> None:
        """Bring a link back up at both ends, and let the routes converge."""
        link = self.plan.link(link_id)
        for end in (link.parent, link.child):
            self._ip(self.plan.namespace(end.node), "link", "set", end.interface, "up")
        self.up_links.add(link_id)
        for end in (link.parent, link.child):  # the kernel dropped the routes through the link
            table = self.installed.get(end.node, {})
            self.installed[end.node] = {
                d: (via, dev) for d, (via, dev) in table.items() if dev != end.interface
            }
        self._apply_routes()

    def remove_device(self, device_id: str) -> None:
        """Take a device's address away: it stops answering, and requests to it time out."""
        device = self.plan.device(device_id)
        if device.address == self.plan.source(device.site):
            raise LabError(f"{device_id} is the address its site's traffic leaves from")
        self._ip(
            self.plan.namespace(device.site), "addr", "del", f"{device.address}/32", "dev", "lo"
        )
        self.removed.add(device_id)

    def restore_device(self, device_id: str) -> None:
        """Give a removed device its address back."""
        device = self.plan.device(device_id)
        self._ip(
            self.plan.namespace(device.site), "addr", "add", f"{device.address}/32", "dev", "lo"
        )
        self.removed.discard(device_id)

    def restore_all(self) -> None:
        """Undo every cut and removal, so the next test starts from a whole network."""
        for link in self.plan.links:
            if link.id not in self.up_links:
                self.restore_link(link.id)
        for device_id in list(self.removed):
            self.restore_device(device_id)

    # -- tearing down ------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything the lab made; safe to call twice."""
        for process in self.processes:
            _stop(process.pid)
            try:
                process.wait(timeout=5)  # reaped already; this tells the Popen object so
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        if self.manifest_path.exists():
            tear_down(json.loads(self.manifest_path.read_text()))
            self.manifest_path.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> str:
        """Return what the lab built, for a person."""
        plan = self.plan
        lines = [
            f"SiteWatch lab {plan.prefix}: hub {plan.hub_address} and {plan.standby_address} "
            f"(root namespace), core "
            f"{plan.core_address} behind it (namespace {plan.core_namespace})",
            f"  blackholed: {', '.join(str(n) for n in plan.networks)}",
            "  sites:",
        ]
        for site in plan.sites:
            lines.append(f"    {site:22} namespace {plan.namespace(site)}")
        lines.append("  links (parent end ⇄ site end):")
        for link in plan.links:
            lines.append(
                f"    {link.id:22} {link.role:8} {link.parent.node}:{link.parent.address} ⇄ "
                f"{link.child.node}:{link.child.address}"
            )
        lines.append("  devices:")
        for device in plan.devices:
            answers = []
            if device.snmp_community and device.router:
                answers.append(f"snmpd, the site's interfaces (community {device.snmp_community})")
            elif device.snmp_community:
                answers.append(f"snmpsim (community {device.snmp_community})")
            if device.sip_port:
                answers.append(f"sipp (SIP OPTIONS on udp/{device.sip_port})")
            lines.append(
                f"    {device.id:22} {device.address!s:15} {device.site:20} "
                f"{', '.join(answers) or 'ping only'}"
            )
        return "\n".join(lines)


def tear_down(manifest: dict[str, object]) -> None:
    """Remove what a manifest records; every step tolerates things already gone."""
    for pid in _strings(manifest.get("pids")):
        _stop(int(pid))
    for namespace in _strings(manifest.get("namespaces")):
        for pid in run(["ip", "netns", "pids", namespace], check=False).split():
            _stop(int(pid))
        run(["ip", "netns", "del", namespace], check=False)
    for interface in _strings(manifest.get("root_forwarding")):  # gone with the veth, else off
        if Path(f"/proc/sys/net/ipv4/conf/{interface}").exists():
            run(["sysctl", "-qw", f"net.ipv4.conf.{interface}.forwarding=0"], check=False)
    for interface in _strings(manifest.get("root_links")):
        run(["ip", "link", "del", interface], check=False)
    for address in _strings(manifest.get("root_addresses")):
        run(["ip", "addr", "del", address, "dev", "lo"], check=False)
    for route in _strings(manifest.get("root_routes")):
        run(["ip", "route", "del", *route.split()], check=False)
    workdir = manifest.get("workdir")
    if isinstance(workdir, str) and workdir.startswith(tempfile.gettempdir()):
        shutil.rmtree(workdir, ignore_errors=True)


def sweep_stale() -> list[str]:
    """Tear down labs whose owning process is gone; return their prefixes."""
    swept = []
    for path in sorted(MANIFESTS.glob("sw*.json")) if MANIFESTS.exists() else []:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = manifest.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
            continue
        tear_down(manifest)
        path.unlink(missing_ok=True)
        swept.append(path.stem)
    return swept


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pid: int) -> None:
    """Stop a process (its whole group when it leads one) and reap it if it is our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: watch it instead
                if not _alive(pid):
                    return
                finished = 0
            if finished:
                return
            time.sleep(0.02)  # polling a process's exit, not synchronisation


__all__ = ["HUB", "Lab", "LabError", "can_build", "sweep_stale", "tear_down", "wait_until"]
