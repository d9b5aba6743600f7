"""Network-namespace labs: hosts on an underlay, VMs as namespaces, role daemons per host."""
