"""A lab municipality in Linux network namespaces, built from an inventory file.

    lab = Lab(Path("config/inventory.yaml")); lab.up()
    lab.cut_link("customer-care-mpls"); ...; lab.restore_link("customer-care-mpls")
    lab.cut_links("elliotdale-mpls", "elliotdale-wireless")  # together: no failover between
    lab.hop_toward("willowvale")  # who answers a TTL-1 echo toward the core: the link in use
    lab.down()

Printers answer through snmpsim, phones through sipp, routers through a real net-snmp snmpd
whose IF-MIB lists their site's own interfaces.

See `tests.lab.lab` for the building and `tests.lab.plan` for the addressing and routing.
"""

from tests.lab.lab import Lab, can_build, sweep_stale, wait_until
from tests.lab.plan import LabError

__all__ = ["Lab", "LabError", "can_build", "sweep_stale", "wait_until"]
