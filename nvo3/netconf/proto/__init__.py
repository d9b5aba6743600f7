"""The NETCONF protocol core, sans I/O: framing and hello, XML names, rpc-errors."""
