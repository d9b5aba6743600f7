"""Small helpers every part of nvo3 shares: trees, names, MAC addresses, time, backoff.

Nothing here knows NETCONF sessions or the kernel; each module has one job.
"""
