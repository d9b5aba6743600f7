"""A path-shaped subtree filter answered from the libyang tree equals the general filter.

Differential: random NVE configurations, with-defaults modes and filters built along the
schema's paths (keys present or absent, non-canonical or padded, branches cut anywhere); every
filter :func:`path_filter` takes must give, after C14N, exactly what the general lxml filter
gives on the printed datastore.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.common.names import NVE_NS
from nvo3.netconf.proto.xml import BASE_NS, PARSER
from nvo3.netconf.server.datastore import Snapshot, data_element
from nvo3.netconf.server.filters import subtree_filter
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.subtree_selection import path_filter

SCHEMA = Schema([YANG_DIR], ["nvo3-nve"])
MACS = ["02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"]
VNIS = ["1", "2", "100"]
MODES = ["explicit", "trim", "report-all", "report-all-tagged"]


def canon(xml: bytes | etree._Element) -> str:
    element = etree.fromstring(xml, PARSER) if isinstance(xml, bytes) else xml
    return etree.tostring(element, method="c14n").decode()


@st.composite
def configs(draw: st.DrawFn) -> str:
    networks = []
    for vni in draw(st.lists(st.sampled_from(VNIS), unique=True, max_size=3)):
        macs = draw(st.lists(st.sampled_from(MACS), unique=True, max_size=3))
        remote = "".join(f"<remote-mac><mac>{m}</mac><remote-vtep>198.18.0.2</remote-vtep>"
                         + ("<sticky>false</sticky>" if draw(st.booleans()) else "")
                         + "</remote-mac>" for m in macs)
        flood = "".join(f"<vtep><address>198.18.0.{i}</address></vtep>"
                        for i in draw(st.lists(st.sampled_from([5, 6]), unique=True, max_size=2)))
        networks.append(f"<network><vni>{vni}</vni>"
                        + (f"<remote-macs>{remote}</remote-macs>" if remote else "")
                        + (f"<flood-list>{flood}</flood-list>" if flood else "")
                        + ("<flood-mode>head-end-replication</flood-mode>"
                           if draw(st.booleans()) else "") + "</network>")
    if not networks and draw(st.booleans()):
        return ""
    return (f'<nve xmlns="{NVE_NS}"><local-vtep-address>198.51.100.1</local-vtep-address>'
            f"<networks>{''.join(networks)}</networks></nve>")


def key_text(draw: st.DrawFn, pool: list[str]) -> str:
    value = draw(st.sampled_from(pool))
    variant = draw(st.sampled_from(["same", "same", "padded", "upper", "zero", "quote"]))
    return {"same": value, "padded": f"  {value}\n", "upper": value.upper(),
            "zero": "0" + value, "quote": value + "'"}[variant]


@st.composite
def filters(draw: st.DrawFn) -> str:
    """A subtree filter down the NVE tree, cut at a random depth."""
    # each level: (element, key leaves and their value pool, the next levels)
    remote = ("remote-mac", [("mac", MACS)], [])
    vtep = ("vtep", [("address", ["198.18.0.5", "198.18.0.6"])], [])
    network = ("network", [("vni", VNIS)], [("remote-macs", [], [remote]),
                                            ("flood-list", [], [vtep])])
    level = ("nve", [], [("networks", [], [network]), ("udp-port", [], [])])
    opened: list[str] = []
    depth = draw(st.integers(0, 5))
    for _ in range(depth + 1):
        name, keys, below = level
        body = "".join(f"<{k}>{key_text(draw, pool)}</{k}>" for k, pool in keys
                       if draw(st.integers(0, 5)))
        opened.append(f"<{name}>{body}")
        if not below or len(opened) > depth:
            break
        level = draw(st.sampled_from(below))
    xml = "".join(opened[:1]).replace("<nve>", f'<nve xmlns="{NVE_NS}">') + "".join(opened[1:])
    for part in reversed(opened):
        xml += f"</{part[1:part.index('>')].split()[0]}>"
    return f'<filter xmlns="{BASE_NS}" type="subtree">{xml}</filter>'


@settings(max_examples=1500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), filter_xml=filters(), mode=st.sampled_from(MODES))
def test_path_filter_answers_as_the_general_filter(config: str, filter_xml: str,
                                                    mode: str) -> None:
    snapshot = (Snapshot.validated(SCHEMA, data_element(config.encode())) if config
                else Snapshot.empty(SCHEMA))
    filt = etree.fromstring(filter_xml.encode(), PARSER)
    path = path_filter(SCHEMA, filt)
    general = subtree_filter(data_element(snapshot.xml(mode)), filt, SCHEMA.list_keys)
    if path is not None:
        assert canon(snapshot.selected_xml(path, mode)) == canon(general)


def test_a_path_is_recognised_and_other_filters_are_not() -> None:
    def path(body: str) -> object:
        return path_filter(SCHEMA, etree.fromstring(
            f'<filter xmlns="{BASE_NS}" type="subtree">{body}</filter>'.encode(), PARSER))

    nve = f'<nve xmlns="{NVE_NS}">'
    assert path(f"{nve}<networks><network><vni>1</vni><remote-macs/></network></networks></nve>")
    assert path(f"{nve}<networks/></nve>")
    assert path(f"{nve}<networks><network><vni>1</vni></network></networks></nve>")
    assert path(f"{nve}<networks><network/></networks></nve>") is None          # every entry
    assert path(f"{nve}<networks><network><name>x</name></network></networks></nve>") is None
    assert path(f"{nve}<udp-port/></nve>") is None                              # a leaf
    assert path("<nve><networks/></nve>") is None                               # unqualified
    assert path(f"{nve}<networks/><attachments/></nve>") is None                # two branches
    assert path(f"{nve}</nve><nve xmlns='{NVE_NS}'/>") is None
    assert path_filter(SCHEMA, etree.fromstring(
        f'<filter xmlns="{BASE_NS}" type="xpath" select="/nve"/>'.encode())) is None
