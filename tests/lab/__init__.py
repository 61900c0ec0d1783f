"""A lab municipality in Linux network namespaces, built from an inventory file.

    lab = Lab(Path("config/inventory.yaml")); lab.up()
    lab.cut_link("customer-care-mpls"); ...; lab.restore_link("customer-care-mpls")
    lab.down()

See `tests.lab.lab` for the building and `tests.lab.plan` for the addressing and routing.
"""

from tests.lab.lab import Lab, can_build, sweep_stale, wait_until
from tests.lab.plan import LabError

__all__ = ["Lab", "LabError", "can_build", "sweep_stale", "wait_until"]
