"""The NETCONF engine and its edges: protocol core, server, SSH transport, client."""
