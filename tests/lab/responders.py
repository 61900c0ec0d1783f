"""What answers as the lab's devices: snmpsim as printers and switches, sipp as phones.

snmpsim has no printer recording, so the printer's answers are written here: Printer-MIB
supplies (one toner nearly empty, a waste container that only knows "some remaining"),
host-resources printer and device status, an alert, and a system group naming the printer.
The switch recording is the IF-MIB of a small access switch with 64-bit counters.
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
        ("1.3.6.1.2.1.43.18.1.1.2.1.1", "2", "4"),  # prtAlertSeverityLevel: warning
        ("1.3.6.1.2.1.43.18.1.1.8.1.1", "4", "Cyan toner low"),  # prtAlertDescription
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


def switch_records(name: str, ports: int) -> str:
    """Return the .snmprec lines of a switch: every third port down, counters near 2**63."""
    records = [("1.3.6.1.2.1.1.3.0", "67", "123456"), ("1.3.6.1.2.1.1.5.0", "4", name)]
    for index in range(1, ports + 1):
        port = f"Gi0/{index}"
        octets = 2**40 + 7 if index % 3 == 1 else 0 if index % 3 == 2 else 2**63 + 5
        records += [
            (f"1.3.6.1.2.1.2.2.1.2.{index}", "4", port),
            (f"1.3.6.1.2.1.2.2.1.7.{index}", "2", "1"),  # ifAdminStatus: up
            (f"1.3.6.1.2.1.2.2.1.8.{index}", "2", "2" if index % 3 == 2 else "1"),
            (f"1.3.6.1.2.1.2.2.1.13.{index}", "65", str(index)),
            (f"1.3.6.1.2.1.2.2.1.14.{index}", "65", str(index * 10)),
            (f"1.3.6.1.2.1.2.2.1.19.{index}", "65", "0"),
            (f"1.3.6.1.2.1.2.2.1.20.{index}", "65", "0"),
            (f"1.3.6.1.2.1.31.1.1.1.1.{index}", "4", port),
            (f"1.3.6.1.2.1.31.1.1.1.6.{index}", "70", str(octets)),
            (f"1.3.6.1.2.1.31.1.1.1.10.{index}", "70", str(octets // 2)),
        ]
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
