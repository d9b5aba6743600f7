"""Names of nvo3's YANG modules and their XML namespaces, in one place."""

from __future__ import annotations

TYPES = "nvo3-types"
POLICY = "nvo3-policy"
VM = "nvo3-vm"
NVE = "nvo3-nve"
NDIRECTOR = "nvo3-ndirector"
VCENTER = "nvo3-vcenter"
VSERVER = "nvo3-vserver"


def namespace(module: str) -> str:
    """The XML namespace of one of nvo3's modules (`urn:nvo3:yang:<module>`)."""
    return f"urn:nvo3:yang:{module}"


NVE_NS = namespace(NVE)
NDIRECTOR_NS = namespace(NDIRECTOR)
VCENTER_NS = namespace(VCENTER)
VSERVER_NS = namespace(VSERVER)
