"""Kernel data plane of the NVE agent: desired state, delta tracker, netlink."""
