"""Kernel data plane of the NVE agent.

``model`` (desired state as frozen values), ``tracker`` (desired versus actual deltas),
``kernel`` (the :class:`~nvo3.dataplane.kernel.Kernel` interface), ``linux`` (it on Linux),
``fake`` (it in memory, for unit tests), ``links``/``nlbulk``/``policy`` (pyroute2 devices,
bulk netlink FDB, nftables), ``monitor`` (netlink events).
"""
