"""SNMP v1/v2c/v3 on pysnmp's asyncio API, in four profiles: printer, interface, system, custom.

Also the `interface` probe kind (`interface_probe`): one router interface's IF-MIB row, read
for a link whose router's own view of its WAN interface is evidence bound to that link.

pysnmp is slow per varbind, so each profile asks only for the columns it reads, in one
multi-column GETBULK walk (GETNEXT for v1), never a whole table. MIB names are not resolved
(numeric OIDs, `lookupMib=False`): no MIB files are loaded, nothing is downloaded. Library
errors are mapped to result data in one place, `_check`; the values come back as plain Python.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from probes.errors import ProbeError, ProbeProtocolError, ProbeTimeout, ProbeUnreachable
from probes.result import ErrorKind, JsonValue, ProbeResult, failed, now, short
from probes.target import Target
from probes.tcp import classify
from sitewatch.config.model import InterfaceProbe, SnmpCredentials, SnmpProbe

_log = logging.getLogger(__name__)
_PYSMI_RENAMED = r"\w+ is deprecated\. Please use \w+ instead"

with warnings.catch_warnings():
    # pysnmp 7 imports pysmi's old camelCase names, which pysmi 1.5+ deprecates at import.
    warnings.filterwarnings("ignore", _PYSMI_RENAMED, DeprecationWarning)
    from pyasn1.error import PyAsn1Error
    from pysnmp.error import PySnmpError
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        Udp6TransportTarget,
        UdpTransportTarget,
        UsmUserData,
        bulk_cmd,
        get_cmd,
        next_cmd,
        usm3DESEDEPrivProtocol,
        usmAesCfb128Protocol,
        usmAesCfb192Protocol,
        usmAesCfb256Protocol,
        usmDESPrivProtocol,
        usmHMAC128SHA224AuthProtocol,
        usmHMAC192SHA256AuthProtocol,
        usmHMAC256SHA384AuthProtocol,
        usmHMAC384SHA512AuthProtocol,
        usmHMACMD5AuthProtocol,
        usmHMACSHAAuthProtocol,
    )
    from pysnmp.proto import errind
    from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject
    from pysnmp.smi import builder, view
    from pysnmp.smi.compiler import add_mib_compiler


MAX_REPETITIONS = 25
MAX_ROWS = 4096  # a column longer than this is not what a profile reads: stop walking
AUTH = {
    "md5": usmHMACMD5AuthProtocol,
    "sha": usmHMACSHAAuthProtocol,
    "sha224": usmHMAC128SHA224AuthProtocol,
    "sha256": usmHMAC192SHA256AuthProtocol,
    "sha384": usmHMAC256SHA384AuthProtocol,
    "sha512": usmHMAC384SHA512AuthProtocol,
}
PRIV = {
    "des": usmDESPrivProtocol,
    "3des": usm3DESEDEPrivProtocol,
    "aes": usmAesCfb128Protocol,
    "aes128": usmAesCfb128Protocol,
    "aes192": usmAesCfb192Protocol,
    "aes256": usmAesCfb256Protocol,
}
_AUTH_ERRORS = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.DecryptionError,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.UnsupportedSecurityLevel,
    errind.UnknownSecurityName,
    errind.UnknownCommunityName,
)

SYS_DESCR, SYS_OBJECT_ID = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"
SYS_UPTIME, SYS_NAME = "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0"
SUPPLY = "1.3.6.1.2.1.43.11.1.1"  # prtMarkerSuppliesEntry: .6 description, .8 max, .9 level
PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1"  # hrPrinterStatus
DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5"  # hrDeviceStatus
ALERT = "1.3.6.1.2.1.43.18.1.1"  # prtAlertEntry: .2 severity, .8 description
IF_ENTRY, IFX_ENTRY = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
PRINTER_STATES = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
DEVICE_STATES = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
ALERT_SEVERITIES = {1: "other", 3: "critical", 4: "warning", 5: "warning-binary-change-event"}
IF_STATES = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}
SUPPLY_LEVELS = {-1: "other", -2: "unknown", -3: "some_remaining"}  # RFC 3805 special values
LOW_PERCENT = 10.0

Value = int | str | None


@dataclass(frozen=True, slots=True)
class InterfaceSample:
    """Counters of one interface at one moment, for turning two samples into rates."""

    in_octets: int | None
    out_octets: int | None
    in_errors: int | None
    out_errors: int | None


def counter_delta(previous: int, current: int, bits: int = 64) -> int:
    """Return how far a counter moved, allowing for one wrap past 2**bits."""
    return current - previous if current >= previous else current + 2**bits - previous


def rebooted(previous_uptime: float, current_uptime: float) -> bool:
    """Return whether a device restarted between two readings (its uptime went backwards)."""
    return current_uptime < previous_uptime


def interface_rates(
    previous: tuple[float, dict[int, InterfaceSample]],
    current: tuple[float, dict[int, InterfaceSample]],
) -> dict[int, dict[str, float]]:
    """Return per-second rates per interface between two (uptime, samples) readings.

    A reboot (uptime going backwards) resets every counter, so that interval has no rate
    rather than a huge false spike; 64-bit octet counters and 32-bit error counters may wrap.
    """
    (before, old), (after, new) = previous, current
    seconds = after - before
    if seconds <= 0 or rebooted(before, after):
        return {}
    rates: dict[int, dict[str, float]] = {}
    for index, sample in new.items():
        earlier = old.get(index)
        if earlier is None:
            continue
        rate: dict[str, float] = {}
        for field, bits in (
            ("in_octets", 64),
            ("out_octets", 64),
            ("in_errors", 32),
            ("out_errors", 32),
        ):
            then, now_ = getattr(earlier, field), getattr(sample, field)
            if then is not None and now_ is not None:
                rate[field.replace("octets", "bps") if "octets" in field else field] = (
                    counter_delta(then, now_, bits) * (8 if "octets" in field else 1) / seconds
                )
        rates[index] = rate
    return rates


_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SnmpEngine] = (
    weakref.WeakKeyDictionary()
)
_BUILDING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[SnmpEngine]] = (
    weakref.WeakKeyDictionary()
)


def close() -> None:
    """Close this event loop's SNMP engine and its socket; a later probe opens a new one."""
    loop = asyncio.get_running_loop()
    building = _BUILDING.pop(loop, None)
    if building is not None and not building.done():
        building.add_done_callback(_close_built)
    engine = _ENGINES.pop(loop, None)
    if engine is not None:
        engine.close_dispatcher()


def _close_built(building: asyncio.Task[SnmpEngine]) -> None:
    if not building.cancelled() and building.exception() is None:
        building.result().close_dispatcher()


async def _engine() -> SnmpEngine:
    """Return this event loop's SNMP engine: creating one is expensive, so it is shared.

    It is built once per loop in a worker thread (half a second of MIB loading would stall the
    event loop), shielded so that a probe whose deadline passes meanwhile does not abandon the
    build for the next probe to start again. Its MIB view is made there too: pysnmp attaches a
    MIB compiler (local MIB folders only) on first use, and that code calls pysmi's deprecated
    names, warning each time it runs.
    """
    loop = asyncio.get_running_loop()
    engine = _ENGINES.get(loop)
    if engine is not None:
        return engine
    building = _BUILDING.get(loop)
    if building is None:
        building = _BUILDING[loop] = loop.create_task(asyncio.to_thread(_build_engine))
    engine = await asyncio.shield(building)
    if _BUILDING.get(loop) is building:  # not closed while it was being built
        del _BUILDING[loop]
        _ENGINES[loop] = engine
    return engine


def _build_engine() -> SnmpEngine:
    engine = SnmpEngine()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _PYSMI_RENAMED, DeprecationWarning)
        controller = view.MibViewController(builder.MibBuilder())
        add_mib_compiler(controller.mibBuilder, ifAvailable=True, ifNotAdded=True)
        ObjectType(ObjectIdentity(SYS_UPTIME)).resolve_with_mib(controller)  # loads base MIBs
    engine.cache["mibViewController"] = controller
    _drop_undecodable(engine)
    return engine


def _drop_undecodable(engine: SnmpEngine) -> None:
    """Drop a datagram pysnmp cannot decode instead of letting the error escape.

    pysnmp catches the decoder errors it expects, but some malformed messages make pyasn1 raise
    TypeError or the like, which would surface as a traceback from the event loop's callback.
    Dropping such a message is what pysnmp does with the ones it recognises: the request then
    times out, or is answered by a good retry.
    """
    receive = engine.message_dispatcher.receive_message

    def guarded(*args: Any) -> Any:
        try:
            return receive(*args)
        except Exception as err:  # noqa: BLE001 -- any failure here is a bad datagram
            _log.debug("dropped an undecodable SNMP message: %r", err)
            return b""

    engine.message_dispatcher.receive_message = guarded


class _Session:
    """One device, one set of credentials, one deadline: gets and column walks."""

    def __init__(self, credentials: SnmpCredentials, transport: Any, engine: SnmpEngine) -> None:
        self.credentials = credentials
        self.auth = _auth_data(credentials)
        self.transport = transport
        self.engine = engine
        self.context = ContextData(contextName=credentials.context.encode())
        self.first_rtt_ms: float | None = None

    async def get(self, oids: Sequence[str], *, all_or_none: bool = False) -> dict[str, Value]:
        """Return the values of some scalar OIDs; a missing object is None.

        SNMPv1 answers a GET that names a missing object with noSuchName for the whole
        request; with `all_or_none` (reading one row of a table) every value is None then.
        """
        begin = time.perf_counter()
        indication, status, index, var_binds = await get_cmd(
            self.engine,
            self.auth,
            self.transport,
            self.context,
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        self._timed(begin)
        if all_or_none and not indication and str(status) == "noSuchName":
            return dict.fromkeys(oids)
        _check(indication, status, index)
        names = [str(name) for name, _ in var_binds]
        if names != list(oids):
            raise ProbeProtocolError(
                f"asked for {', '.join(oids)}, answer names {', '.join(names)}"
            )
        return {name: _plain(value) for name, (_, value) in zip(names, var_binds, strict=True)}

    async def walk(self, columns: Sequence[str]) -> dict[str, dict[str, Value]]:
        """Return each column's rows (index suffix → value), walked together."""
        rows: dict[str, dict[str, Value]] = {column: {} for column in columns}
        cursor = {column: column for column in columns}
        while cursor:
            active = list(cursor)
            begin = time.perf_counter()
            if self.credentials.version == "1":
                indication, status, index, var_binds = await next_cmd(
                    self.engine,
                    self.auth,
                    self.transport,
                    self.context,
                    *(ObjectType(ObjectIdentity(cursor[c])) for c in active),
                    lookupMib=False,
                )
            else:
                indication, status, index, var_binds = await bulk_cmd(
                    self.engine,
                    self.auth,
                    self.transport,
                    self.context,
                    0,
                    MAX_REPETITIONS,
                    *(ObjectType(ObjectIdentity(cursor[c])) for c in active),
                    lookupMib=False,
                )
            self._timed(begin)
            if self.credentials.version == "1" and str(status) == "noSuchName":
                # v1 answers a GETNEXT past the last object with noSuchName for the whole
                # request, naming the varbind: that column is done; ask again for the rest.
                position = int(index) - 1
                if not 0 <= position < len(active):
                    break
                cursor.pop(active[position])
                continue
            _check(indication, status, index)
            if not var_binds:
                break
            finished = set()
            for position, (name, value) in enumerate(var_binds):
                column = active[position % len(active)]
                if column in finished:
                    continue
                oid = str(name)
                if isinstance(value, EndOfMibView) or not oid.startswith(column + "."):
                    finished.add(column)
                    continue
                rows[column][oid[len(column) + 1 :]] = _plain(value)
                cursor[column] = oid
            for column in active:
                if column in finished or len(rows[column]) >= MAX_ROWS:
                    cursor.pop(column, None)
        return rows

    def _timed(self, begin: float) -> None:
        if self.first_rtt_ms is None:
            self.first_rtt_ms = round((time.perf_counter() - begin) * 1000, 3)


T = TypeVar("T")


async def _session_read(
    target: Target,
    credentials: SnmpCredentials,
    timeout: float,
    read: Callable[[_Session], Awaitable[T]],
) -> tuple[T, _Session] | tuple[ErrorKind, str]:
    """Run `read` on a session with the device within `timeout`; map every failure once.

    Return what `read` returned and the session, or the error kind and detail of a failure.
    """
    try:
        async with asyncio.timeout(timeout):
            transport = await _transport(target.address, credentials.port, timeout)
            session = _Session(credentials, transport, await _engine())
            return await read(session), session
    except (TimeoutError, ProbeTimeout):
        return "timeout", _timeout_detail(credentials, timeout)
    except ProbeUnreachable as err:
        return "unreachable", str(err)
    except _AuthFailure as err:
        return "auth", str(err)
    except ProbeError as err:
        return "protocol", str(err)


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Read the spec's profile from the device once."""
    spec = target.spec
    if not isinstance(spec, SnmpProbe):
        raise TypeError(f"snmp probe given a {spec.kind} spec")
    started = now()
    reader = {
        "printer": _printer,
        "interface": _interface,
        "system": _system,
        "custom": _custom,
    }[spec.profile]
    done = await _session_read(
        target, spec.credentials, timeout, lambda session: reader(session, spec)
    )
    if isinstance(done[1], str):
        kind, detail = done
        return _failed(target, started, kind, detail)
    (value, problem), session = done
    value = {"profile": spec.profile, **value}
    if problem:
        return ProbeResult(
            target.name,
            "snmp",
            started,
            ok=False,
            rtt_ms=session.first_rtt_ms,
            value=value,
            error_kind="threshold",
            detail=short(problem),
        )
    return ProbeResult(
        target.name, "snmp", started, ok=True, rtt_ms=session.first_rtt_ms, value=value
    )


class _AuthFailure(ProbeError):
    """The agent answered, but refused our credentials."""


Reading = tuple[dict[str, JsonValue], str]  # the profile's values, and what is wrong if any


async def _printer(session: _Session, _spec: SnmpProbe) -> Reading:
    columns = [
        f"{SUPPLY}.6",
        f"{SUPPLY}.8",
        f"{SUPPLY}.9",
        PRINTER_STATUS,
        DEVICE_STATUS,
        f"{ALERT}.2",
        f"{ALERT}.8",
    ]
    rows = await session.walk(columns)
    if not rows[f"{SUPPLY}.9"] and not rows[PRINTER_STATUS]:
        raise ProbeProtocolError("no Printer-MIB supplies and no hrPrinterStatus: not a printer")
    supplies: list[JsonValue] = []
    for index, level in rows[f"{SUPPLY}.9"].items():
        maximum = rows[f"{SUPPLY}.8"].get(index)
        supplies.append(_supply(index, rows[f"{SUPPLY}.6"].get(index), maximum, level))
    printer_index, printer_status = next(iter(rows[PRINTER_STATUS].items()), (None, None))
    device_status = rows[DEVICE_STATUS].get(printer_index or "", None)
    alerts: list[JsonValue] = [
        {
            "severity": ALERT_SEVERITIES.get(_int(severity), str(severity)),
            "description": str(rows[f"{ALERT}.8"].get(index, "")),
        }
        for index, severity in rows[f"{ALERT}.2"].items()
    ]
    value: dict[str, JsonValue] = {
        "supplies": supplies,
        "printer_status": PRINTER_STATES.get(_int(printer_status)),
        "device_status": DEVICE_STATES.get(_int(device_status)),
        "alerts": alerts,
    }
    problem = "device status down" if value["device_status"] == "down" else ""
    return value, problem


def _supply(index: str, description: Value, maximum: Value, level: Value) -> JsonValue:
    """Return one supply with its percentage, or the state word RFC 3805's codes stand for."""
    entry: dict[str, JsonValue] = {
        "index": index,
        "description": str(description or ""),
        "level": level,
        "max": maximum,
    }
    if isinstance(level, int) and level in SUPPLY_LEVELS:
        entry |= {"percent": None, "state": SUPPLY_LEVELS[level]}
    elif isinstance(level, int) and isinstance(maximum, int) and maximum > 0:
        percent = round(100 * level / maximum, 1)
        state = "empty" if level == 0 else "low" if percent < LOW_PERCENT else "ok"
        entry |= {"percent": percent, "state": state}
    else:
        entry |= {"percent": None, "state": "unknown"}
    return entry


IF_COLUMNS = {  # what the interface profile and probe read of a row -> its IF-MIB column
    "descr": f"{IF_ENTRY}.2",
    "admin": f"{IF_ENTRY}.7",
    "oper": f"{IF_ENTRY}.8",
    "in_discards": f"{IF_ENTRY}.13",
    "in_errors": f"{IF_ENTRY}.14",
    "out_discards": f"{IF_ENTRY}.19",
    "out_errors": f"{IF_ENTRY}.20",
    "name": f"{IFX_ENTRY}.1",  # ifName
    "in_octets": f"{IFX_ENTRY}.6",  # ifHCInOctets: 64 bits, no wrap every 34 s at 1 Gbit/s
    "out_octets": f"{IFX_ENTRY}.10",  # ifHCOutOctets
}


async def _interface(session: _Session, _spec: SnmpProbe) -> Reading:
    uptime = await session.get([SYS_UPTIME])
    columns = IF_COLUMNS
    rows = await session.walk(list(columns.values()))
    if not rows[columns["oper"]]:
        raise ProbeProtocolError("no IF-MIB ifOperStatus rows")
    interfaces: list[JsonValue] = []
    for index in sorted(rows[columns["oper"]], key=_index_key):
        entry: dict[str, JsonValue] = {"index": int(index) if index.isdigit() else index}
        for field, column in columns.items():
            found = rows[column].get(index)
            if field in ("admin", "oper"):
                entry[field] = IF_STATES.get(_int(found), str(found))
            else:
                entry[field] = found
        interfaces.append(entry)
    return {"uptime_s": _seconds(uptime[SYS_UPTIME]), "interfaces": interfaces}, ""


async def _system(session: _Session, _spec: SnmpProbe) -> Reading:
    values = await session.get([SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME])
    missing = [oid for oid, found in values.items() if found is None and oid != SYS_NAME]
    if missing:
        raise ProbeProtocolError(f"no such object: {', '.join(missing)}")
    return {
        "descr": values[SYS_DESCR],
        "object_id": values[SYS_OBJECT_ID],
        "uptime_s": _seconds(values[SYS_UPTIME]),
        "name": values[SYS_NAME],
    }, ""


async def _custom(session: _Session, spec: SnmpProbe) -> Reading:
    values = await session.get([oid.oid for oid in spec.oids])
    readings: dict[str, JsonValue] = {}
    problems = []
    for oid in spec.oids:
        found = values.get(oid.oid)
        if found is None:
            raise ProbeProtocolError(f"{oid.name} ({oid.oid}): no such object")
        readings[oid.name] = found
        number = _number(found)
        if (oid.minimum is not None or oid.maximum is not None) and number is None:
            problems.append(f"{oid.name} is {found!r}, not a number")
        elif oid.minimum is not None and number is not None and number < oid.minimum:
            problems.append(f"{oid.name} is {number:g}, below {oid.minimum:g}")
        elif oid.maximum is not None and number is not None and number > oid.maximum:
            problems.append(f"{oid.name} is {number:g}, above {oid.maximum:g}")
    return {"values": readings}, "; ".join(problems)


# -- the interface probe: one router interface, for a link -----------------------------------

IF_NAME, IF_DESCR = IF_COLUMNS["name"], IF_COLUMNS["descr"]
V1_LACKS = ("name", "in_octets", "out_octets")
IF_UP = 1  # ifOperStatus up  # ifXTable: Counter64 has no SNMPv1 form
COUNTERS = ("in_errors", "out_errors", "in_discards", "out_discards", "in_octets", "out_octets")

# This process's memory of routers: the ifIndex each (address, port, ifName) was found at, and
# the last reading of each (address, port, ifIndex), from which the next one's rates come.
_IF_INDEXES: dict[tuple[str, int, str], int] = {}
_IF_READINGS: dict[tuple[str, int, int], tuple[float, InterfaceSample]] = {}

Row = dict[str, Value]


async def interface_probe(target: Target, *, timeout: float) -> ProbeResult:
    """Read one interface's IF-MIB row from a router; ok when its ifOperStatus is up."""
    spec = target.spec
    if not isinstance(spec, InterfaceProbe):
        raise TypeError(f"interface probe given a {spec.kind} spec")
    started = now()
    value: dict[str, JsonValue] = {
        "ifindex": spec.ifindex,
        "ifname": spec.ifname,
        **dict.fromkeys(("oper", "admin", *COUNTERS, "in_bps", "out_bps", "uptime_s")),
    }
    done = await _session_read(
        target, spec.credentials, timeout, lambda session: _interface_row(session, target, spec)
    )
    if isinstance(done[1], str):
        kind, detail = done
        return _failed(target, started, kind, detail, probe_kind="interface", value=value)
    found, session = done
    if found is None:
        wanted = f"named {spec.ifname}" if spec.ifname else f"with ifIndex {spec.ifindex}"
        detail = f"no interface {wanted} on {target.address}"
        return failed(target.name, "interface", started, "protocol", detail, value=value)
    index, row, uptime = found
    value |= _row_value(target, spec, index, row, uptime)
    oper, admin = value["oper"], value["admin"]
    if oper == "up":
        return ProbeResult(
            target.name, "interface", started, ok=True, rtt_ms=session.first_rtt_ms, value=value
        )
    name = value["ifname"] or spec.ifname
    label = f"{name} (ifIndex {index})" if name else f"ifIndex {index}"
    state = oper or f"in ifOperStatus {row['oper']!r}"
    return ProbeResult(
        target.name,
        "interface",
        started,
        ok=False,
        rtt_ms=session.first_rtt_ms,
        value=value,
        error_kind="unexpected",
        detail=short(f"{label} is {state}, admin {admin or row['admin']}"),
    )


async def _interface_row(
    session: _Session, target: Target, spec: InterfaceProbe
) -> tuple[int, Row, float | None] | None:
    """Return the interface's ifIndex, row and the router's uptime, or None if it has none.

    An interface named by ifName is looked up once (one walk of the ifName column) and its
    index remembered while its row reads up. A remembered row that is gone, renamed or not up
    sends the probe to look the name up again: a router may keep a vanished interface's row
    under its old index (net-snmp does, as down) while the name lives on at a new index.
    """
    found: tuple[Row, float | None] | None = None
    if spec.ifindex is not None:
        found = await _read_row(session, spec.ifindex)
        return (spec.ifindex, *found) if found[0]["oper"] is not None else None
    ifname = spec.ifname or ""  # the config allows exactly one of ifname and ifindex
    key = (target.address, spec.credentials.port, ifname)
    remembered = _IF_INDEXES.get(key)
    if remembered is not None:
        found = await _read_row(session, remembered)
        if found[0]["oper"] == IF_UP and _named(found[0], ifname):
            return (remembered, *found)
    index = await _find_index(session, ifname)
    if index is None:
        _IF_INDEXES.pop(key, None)
        return None
    if found is None or index != remembered:
        found = await _read_row(session, index)
    if found[0]["oper"] is None:
        _IF_INDEXES.pop(key, None)
        return None
    _IF_INDEXES[key] = index
    return (index, *found)


async def _read_row(session: _Session, index: int) -> tuple[Row, float | None]:
    """GET one interface's columns and sysUpTime in one request; a missing column is None."""
    fields = [
        field
        for field in IF_COLUMNS
        if not (session.credentials.version == "1" and field in V1_LACKS)
    ]
    oids = [SYS_UPTIME, *(f"{IF_COLUMNS[field]}.{index}" for field in fields)]
    values = await session.get(oids, all_or_none=True)
    row: Row = dict.fromkeys(IF_COLUMNS)
    row |= {field: values[f"{IF_COLUMNS[field]}.{index}"] for field in fields}
    return row, _seconds(values[SYS_UPTIME])


async def _find_index(session: _Session, ifname: str) -> int | None:
    """Return the ifIndex whose ifName (else ifDescr, without ifXTable) is `ifname`, or None."""
    columns = [IF_DESCR] if session.credentials.version == "1" else [IF_NAME]
    rows = await session.walk(columns)
    if not rows[columns[0]] and columns[0] == IF_NAME:
        rows = await session.walk([IF_DESCR])
        columns = [IF_DESCR]
    named = [int(suffix) for suffix, name in rows[columns[0]].items() if name == ifname
             and suffix.isdigit()]  # fmt: skip
    return max(named, default=None)  # of two rows by one name, the newer (higher) index


def _count(value: Value) -> int | None:
    return value if isinstance(value, int) else None


def _named(row: Row, ifname: str) -> bool:
    return ifname in (row["name"], row["descr"])


def _row_value(
    target: Target, spec: InterfaceProbe, index: int, row: Row, uptime: float | None
) -> dict[str, JsonValue]:
    """Return the interface value of a row read, with rates since this process's last read."""
    counters = {field: _count(row[field]) for field in COUNTERS}
    name = row["name"] if isinstance(row["name"], str) else spec.ifname
    value: dict[str, JsonValue] = {
        "ifindex": index,
        "ifname": name,
        "oper": IF_STATES.get(_int(row["oper"])),
        "admin": IF_STATES.get(_int(row["admin"])),
        **counters,
        "in_bps": None,
        "out_bps": None,
        "uptime_s": uptime,
    }
    sample = InterfaceSample(
        *(counters[field] for field in ("in_octets", "out_octets", "in_errors", "out_errors"))
    )
    key = (target.address, spec.credentials.port, index)
    previous = _IF_READINGS.get(key)
    if uptime is not None:
        _IF_READINGS[key] = (uptime, sample)
        if previous is not None:
            rates = interface_rates((previous[0], {index: previous[1]}), (uptime, {index: sample}))
            rate = rates.get(index, {})
            for field in ("in_bps", "out_bps"):
                if field in rate:
                    value[field] = round(rate[field], 3)
    return value


async def _transport(address: str, port: int, timeout: float) -> Any:
    """Return the UDP transport target; our own deadline bounds the whole probe."""
    _check_route(address, port)
    cls = Udp6TransportTarget if ":" in address else UdpTransportTarget
    try:
        return await cls.create((address, port), timeout=max(timeout / 2, 0.1), retries=1)
    except PySnmpError as err:
        raise ProbeUnreachable(f"cannot resolve {address}: {err}") from err


def _check_route(address: str, port: int) -> None:
    """Raise ProbeUnreachable when the kernel has no usable route to an address.

    pysnmp sends on an unconnected socket and asyncio drops the send error (a blackhole or a
    missing route), so such a probe would wait out its timeout and report silence. Connecting
    a UDP socket sends nothing but makes the kernel look the route up, so we ask it first.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return  # a host name: pysnmp resolves it, and reports what it cannot resolve
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, port))
        except OSError as err:
            raise ProbeUnreachable(classify(err)[1]) from err


def _check(indication: object, status: object, index: object) -> None:
    """Turn pysnmp's error indication and error status into our exceptions."""
    if indication:
        if isinstance(indication, errind.RequestTimedOut):
            raise ProbeTimeout(str(indication))
        if isinstance(indication, _AUTH_ERRORS):
            raise _AuthFailure(f"credentials refused: {indication}")
        raise ProbeProtocolError(f"SNMP error: {indication}")
    if status and str(status) != "noError":
        pretty = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
        raise ProbeProtocolError(f"SNMP error status {pretty} at varbind {index}")


def _auth_data(credentials: SnmpCredentials) -> CommunityData | UsmUserData:
    if credentials.version != "3":
        model = 0 if credentials.version == "1" else 1
        return CommunityData(credentials.community or "public", mpModel=model)
    return UsmUserData(
        credentials.user or "",
        authKey=credentials.auth_password,
        privKey=credentials.priv_password,
        authProtocol=AUTH[credentials.auth_protocol] if credentials.auth_protocol else None,
        privProtocol=PRIV[credentials.priv_protocol] if credentials.priv_protocol else None,
    )


def _plain(value: Any) -> Value:
    """Return an SNMP value as a plain int or str; missing objects become None."""
    if isinstance(value, NoSuchObject | NoSuchInstance | EndOfMibView):
        return None
    try:
        tag = value.__class__.__name__
        if tag in (
            "Integer",
            "Integer32",
            "Counter32",
            "Counter64",
            "Gauge32",
            "Unsigned32",
            "TimeTicks",
        ):
            return int(value)
        if tag == "OctetString":
            raw = bytes(value)
            try:  # Windows agents end their strings with a NUL, C style
                return raw.removesuffix(b"\x00").decode("utf-8")
            except UnicodeDecodeError:
                return "0x" + raw.hex()
        return str(value.prettyPrint())
    except (PyAsn1Error, ValueError, TypeError) as err:
        raise ProbeProtocolError(f"malformed value: {err}") from err


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _number(value: Value) -> float | None:
    if isinstance(value, int):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _seconds(ticks: Value) -> float | None:
    return round(ticks / 100, 2) if isinstance(ticks, int) else None


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(part) for part in index.split(".") if part.isdigit())


def _timeout_detail(credentials: SnmpCredentials, timeout: float) -> str:
    detail = f"no SNMP answer in {timeout:g}s"
    if credentials.version != "3":
        detail += " (a wrong community looks the same: v1/v2c agents stay silent)"
    return detail


def _failed(
    target: Target,
    started: datetime,
    kind: ErrorKind,
    detail: str,
    *,
    probe_kind: str = "snmp",
    value: dict[str, JsonValue] | None = None,
) -> ProbeResult:
    return failed(
        target.name, probe_kind, started, kind, f"{target.address}: {detail}", value=value
    )
