"""NETCONF over SSH (RFC 6242): the listener, one session per channel, the user store."""
