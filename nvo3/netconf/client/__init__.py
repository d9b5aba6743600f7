"""The NETCONF client: `connect` opens a session over SSH and returns a `Client`.

    from nvo3.netconf.client import connect

    with connect("192.0.2.1", username="admin", password="...", host_key="SHA256:...") as nc:
        nc.get_config("running")
"""

from nvo3.netconf.client.fastssh import HostKeyError, fingerprint
from nvo3.netconf.client.session import Client, ClientError, RemoteRpcError, connect

__all__ = ["Client", "ClientError", "HostKeyError", "RemoteRpcError", "connect", "fingerprint"]
