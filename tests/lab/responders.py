"""What answers as the lab's devices: snmpsim as printers, sipp as phones.

snmpsim has no printer recording, so the printer's answers are written here: Printer-MIB
supplies (one toner nearly empty, a waste container that only knows "some remaining"),
host-resources printer and device status, and a system group naming the printer.
"""

from __future__ import annotations

from pathlib import Path

from tests.lab.plan import DevicePlan

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="SiteWatch lab phone: answer OPTIONS">
  <recv request="OPTIONS" />
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS
Content-Length: 0

    ]]>
  </send>
</scenario>
"""

# (index, description, max capacity, level): level -3 means "some remaining", -2 "unknown".
SUPPLIES = (
    (1, "Black Toner Cartridge", 10000, 7400),
    (2, "Cyan Toner Cartridge", 6000, 240),
    (3, "Waste Toner Box", -2, -3),
    (4, "Fuser Kit", 100000, -2),
)


def printer_records(name: str) -> str:
    """Return the .snmprec lines of a printer, sorted by OID as snmpsim requires."""
    records = [
        ("1.3.6.1.2.1.1.1.0", "4", f"SiteWatch lab printer ({name})"),
        ("1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.11.2.3.9.1"),
        ("1.3.6.1.2.1.1.3.0", "67", "360000"),
        ("1.3.6.1.2.1.1.5.0", "4", name),
        ("1.3.6.1.2.1.25.3.2.1.5.1", "2", "2"),  # hrDeviceStatus: running
        ("1.3.6.1.2.1.25.3.5.1.1.1", "2", "3"),  # hrPrinterStatus: idle
    ]
    for column, kind, pick in (
        (6, "4", lambda s: s[1]),
        (8, "2", lambda s: str(s[2])),
        (9, "2", lambda s: str(s[3])),
    ):
        for supply in SUPPLIES:
            records.append((f"1.3.6.1.2.1.43.11.1.1.{column}.1.{supply[0]}", kind, pick(supply)))
    records.sort(key=lambda record: tuple(int(part) for part in record[0].split(".")))
    return "".join(f"{oid}|{kind}|{value}\n" for oid, kind, value in records)


def write_printer_data(
    data_dir: Path, site: str, community: str, devices: list[DevicePlan]
) -> list[str]:
    """Write the data file of a site's printers and return snmpsim's endpoint arguments.

    snmpsim 1.2 chooses v1/v2c data by community only (its per-endpoint variants apply to
    SNMPv3 contexts), so all printers of one site give the same answers, named after the site.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{community}.snmprec").write_text(printer_records(f"{site}-printer"))
    return [f"--agent-udpv4-endpoint={device.address}:161" for device in devices]
