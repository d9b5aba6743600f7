"""nvo3: a NETCONF/YANG management and control stack for network virtualization overlays.

Implements draft-fw-nvo3-server2vcenter-01 (Network Virtualization Overlay Architecture).
"""

from pathlib import Path

__version__ = "0.1.0"

#: Where the YANG modules of every role live: package data in an installed wheel; in a checkout,
#: nvo3/yang is a link to the repository's yang/ folder.
YANG_DIR = Path(__file__).resolve().parent / "yang"
