"""The topology as an SVG picture, drawn on the server (pure; no asset from anywhere).

Data centers side by side; in each, its hosts (NVE with its VTEP, vServer); in each host its
VMs, coloured by VNI; the underlay joins the VTEPs; a legend names the VNIs. Every VM is a
link to its page and carries ``id="vm-TENANT-NAME"`` and ``data-vni``.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from nvo3.dashboard.model import Topology, VmBox

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")
HOST_W, HOST_GAP, VM_H, VM_GAP, HEAD_H, DC_PAD = 196, 16, 26, 6, 58, 14


def colour(vni: int | None, vnis: list[int]) -> str:
    if vni is None or vni not in vnis:
        return "#999999"
    return PALETTE[vnis.index(vni) % len(PALETTE)]


def _vm(vm: VmBox, x: int, y: int, vnis: list[int]) -> str:
    href = quoteattr(f"/vm/{vm.tenant}/{vm.name}")
    ident = quoteattr(f"vm-{vm.tenant}-{vm.name}")
    fill = colour(vm.vni, vnis)
    dash = "" if vm.state == "powered-on" else ' stroke-dasharray="4 2"'
    return (f'<a href={href}><g class="vm" id={ident} data-vni="{vm.vni or ""}" '
            f'data-state={quoteattr(vm.state)}>'
            f'<rect x="{x}" y="{y}" width="{HOST_W - 20}" height="{VM_H}" rx="5" '
            f'fill="{fill}" fill-opacity="0.18" stroke="{fill}"{dash}/>'
            f'<text x="{x + 8}" y="{y + 17}" class="vm-label">{escape(vm.tenant)}/'
            f'{escape(vm.name)} · {vm.vni or "-"}</text></g></a>')


def render(topo: Topology) -> str:
    """The whole picture as one <svg> element."""
    parts: list[str] = []
    x = 10
    tallest = max((len(h.vms) for dc in topo.data_centers for h in dc.hosts), default=0)
    host_h = HEAD_H + max(tallest, 1) * (VM_H + VM_GAP) + 10
    dc_h = host_h + 2 * DC_PAD + 24
    vtep_points: list[int] = []
    for dc in topo.data_centers:
        width = len(dc.hosts) * (HOST_W + HOST_GAP) - HOST_GAP + 2 * DC_PAD
        parts.append(f'<g class="dc" id={quoteattr("dc-" + dc.name)}>'
                     f'<rect x="{x}" y="10" width="{width}" height="{dc_h}" rx="10" '
                     f'class="dc-box"/><text x="{x + DC_PAD}" y="30" class="dc-label">'
                     f'data center {escape(dc.name)}</text>')
        hx = x + DC_PAD
        for h in dc.hosts:
            hy = 10 + 24 + DC_PAD
            parts.append(f'<g class="host" id={quoteattr("host-" + h.name)}>'
                         f'<rect x="{hx}" y="{hy}" width="{HOST_W}" height="{host_h}" rx="6" '
                         f'class="host-box"/>'
                         f'<text x="{hx + 8}" y="{hy + 18}" class="host-label">'
                         f'{escape(h.name)}</text>'
                         f'<text x="{hx + 8}" y="{hy + 34}" class="host-detail">NVE '
                         f'{escape(h.nve)} · VTEP {escape(h.vtep or "-")}</text>'
                         f'<text x="{hx + 8}" y="{hy + 49}" class="host-detail">vServer '
                         f'{escape(h.vserver)}</text>')
            for i, vm in enumerate(sorted(h.vms, key=lambda v: (v.tenant, v.name))):
                parts.append(_vm(vm, hx + 10, hy + HEAD_H + i * (VM_H + VM_GAP), topo.vnis))
            parts.append("</g>")
            vtep_points.append(hx + HOST_W // 2)
            hx += HOST_W + HOST_GAP
        parts.append("</g>")
        x += width + 20
    underlay_y = dc_h + 30
    total_w = max(x, 400)
    if vtep_points:
        parts.append(f'<line x1="{vtep_points[0]}" y1="{underlay_y}" x2="{vtep_points[-1]}" '
                     f'y2="{underlay_y}" class="underlay"/>')
        for px in vtep_points:
            parts.append(f'<line x1="{px}" y1="{10 + 24 + DC_PAD + host_h}" x2="{px}" '
                         f'y2="{underlay_y}" class="underlay"/>')
        parts.append(f'<text x="{vtep_points[0]}" y="{underlay_y + 16}" class="host-detail">'
                     'underlay (VXLAN tunnels between VTEPs)</text>')
    ly = underlay_y + 40
    lx = 10
    for vni in topo.vnis:
        parts.append(f'<rect x="{lx}" y="{ly - 11}" width="14" height="14" '
                     f'fill="{colour(vni, topo.vnis)}"/><text x="{lx + 20}" y="{ly}" '
                     f'class="legend">VNI {vni}</text>')
        lx += 110
    if topo.unplaced:
        names = ", ".join(f"{v.tenant}/{v.name} ({v.state})" for v in topo.unplaced)
        parts.append(f'<text x="{lx + 10}" y="{ly}" class="legend">not running: '
                     f'{escape(names[:300])}</text>')
    height = ly + 20
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{total_w}" '
            f'height="{height}" viewBox="0 0 {total_w} {height}" role="img" '
            f'aria-label="topology">{"".join(parts)}</svg>')
