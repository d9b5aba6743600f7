"""What an operator sees of the NVE's kernel objects: their names in messages, the configuration
entry behind each, and the programming status of every configured entry in ``<get>``.

Status of one entry (nvo3-nve's ``programming-status``): ``failed`` (the kernel refused it,
or a check YANG cannot make failed, with the reason), ``pending`` (deliberately not
programmed, e.g. an associated attachment, or not programmed yet) or ``programmed`` (desired
and found in the kernel as desired, with the time it was last programmed).
"""

from __future__ import annotations

from dataclasses import dataclass

from nvo3.common.tree import Tree, entries
from nvo3.dataplane.kernel import LinkCounters
from nvo3.dataplane.model import KIND_OF, FloodEntry, KernelObject, Network, Port, RemoteMac
from nvo3.dataplane.tracker import DeltaTracker
from nvo3.roles.nve import desired as nd
from nvo3.roles.nve.desired import StatusKey

NETWORKS = "/nvo3-nve:nve/networks/network"


def status_key(obj: KernelObject) -> StatusKey:
    """(kind, tracker key) of a dataplane object."""
    return (KIND_OF[type(obj)], obj.key)


def describe(obj: KernelObject) -> str:
    """An operator-facing name of a dataplane object."""
    if isinstance(obj, Network):
        return f"network {obj.vni}"
    if isinstance(obj, RemoteMac):
        return f"remote MAC {obj.mac} in VNI {obj.vni} (remote VTEP {obj.remote_vtep})"
    if isinstance(obj, FloodEntry):
        return f"flood-list VTEP {obj.remote_vtep} of VNI {obj.vni}"
    if isinstance(obj, Port):
        return f"port {obj.name} of VNI {obj.vni}"
    return f"policy of port {obj.port}"


def config_path(obj: KernelObject) -> str | None:
    """Data path of the configuration entry behind a dataplane object (None: not one entry)."""
    if isinstance(obj, Network):
        return f"{NETWORKS}[vni='{obj.vni}']"
    if isinstance(obj, RemoteMac):
        return f"{NETWORKS}[vni='{obj.vni}']/remote-macs/remote-mac[mac='{obj.mac}']"
    if isinstance(obj, FloodEntry):
        return f"{NETWORKS}[vni='{obj.vni}']/flood-list/vtep[address='{obj.remote_vtep}']"
    return None


@dataclass(frozen=True)
class ProgrammingStatus:
    """What the status of an entry is judged from (the role's, read under its lock)."""

    tracker: DeltaTracker
    derived: nd.Derived
    failed: dict[StatusKey, str]           # refused, with the reason
    programmed_at: dict[StatusKey, str]    # when last programmed (date-and-time)

    def of(self, key: StatusKey) -> Tree:
        """programming-status (and reason or last-programmed) of one entry."""
        if key in self.failed:
            return {"programming-status": "failed", "programming-reason": self.failed[key]}
        if key in self.derived.pending:
            return {"programming-status": "pending",
                    "programming-reason": self.derived.pending[key]}
        kind, k = key
        want = self.tracker.desired[kind].get(k)
        if want is None or self.tracker.dataplane[kind].get(k) != want:
            return {"programming-status": "pending", "programming-reason": "not programmed yet"}
        out: Tree = {"programming-status": "programmed"}
        if key in self.programmed_at:
            out["last-programmed"] = self.programmed_at[key]
        return out

    def of_policy(self, port: str | None) -> Tree:
        """Status of a policy enforced on ``port`` (None: no attachment it applies to)."""
        if port is None:
            return {"programming-status": "pending",
                    "programming-reason": "no attachment with this VNI and MAC"}
        key = nd.policy_key(port)
        if key in self.failed or key in self.derived.pending \
                or port in self.tracker.desired["policy"]:
            return self.of(key)
        att = self.of(nd.port_key(port))
        if att["programming-status"] != "programmed":
            return {"programming-status": "pending",
                    "programming-reason": f"waits for port {port}"}
        return {"programming-status": "programmed"}    # nothing to install (permit all)


def counters_tree(c: LinkCounters) -> Tree:
    """The ``counters`` container of a network or an attachment."""
    return {"rx-packets": c.rx_packets, "rx-bytes": c.rx_bytes, "rx-drops": c.rx_drops,
            "tx-packets": c.tx_packets, "tx-bytes": c.tx_bytes, "tx-drops": c.tx_drops}


def operational_state(nve: Tree, status: ProgrammingStatus,
                      counters: dict[str, LinkCounters]) -> Tree:
    """The config-false content of the ``nve`` container: the status of every configured
    network, remote MAC, flood-list VTEP, attachment and policy, and the counters of the
    devices and ports behind them (``nve``: the configured container)."""
    nets = []
    for net in entries(nve, "networks", "network"):
        vni = int(net["vni"])
        entry: Tree = {"vni": vni, **status.of(nd.network_key(vni))}
        if f"vx-{vni}" in counters:
            entry["counters"] = counters_tree(counters[f"vx-{vni}"])
        macs = [{"mac": rm["mac"], **status.of(nd.remote_mac_key(vni, rm["mac"]))}
                for rm in entries(net, "remote-macs", "remote-mac")]
        vteps = [{"address": v["address"], **status.of(nd.flood_key(vni, v["address"]))}
                 for v in entries(net, "flood-list", "vtep")]
        if macs:
            entry["remote-macs"] = {"remote-mac": macs}
        if vteps:
            entry["flood-list"] = {"vtep": vteps}
        nets.append(entry)
    atts = []
    for att in entries(nve, "attachments", "attachment"):
        entry = {"vni": int(att["vni"]), "mac": att["mac"], **status.of(nd.port_key(att["port"]))}
        if att["port"] in counters:
            entry["counters"] = counters_tree(counters[att["port"]])
        atts.append(entry)
    ports = {(int(a["vni"]), a["mac"].lower()): a["port"]
             for a in entries(nve, "attachments", "attachment")}
    pols = [{"vni": int(pol["vni"]), "mac": pol["mac"],
             **status.of_policy(ports.get((int(pol["vni"]), pol["mac"].lower())))}
            for pol in entries(nve, "policies", "policy")]
    out: Tree = {}
    if nets:
        out["networks"] = {"network": nets}
    if atts:
        out["attachments"] = {"attachment": atts}
    if pols:
        out["policies"] = {"policy": pols}
    return out
