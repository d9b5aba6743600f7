"""Metrics, health, audit and logs of a role daemon: everything an operator watches.

The engine only calls an `EngineObserver` (nvo3/netconf/server/observer.py); what is here turns
those calls into Prometheus metrics (`metrics`, `role_metrics`), audit records (`audit`,
`edit_summary`), the HTTP endpoint (`http`, `health`) and the process's log set-up (`logs`).
"""
