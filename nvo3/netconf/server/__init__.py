"""The NETCONF server engine: sessions, operations, datastores, notifications, the role API."""
