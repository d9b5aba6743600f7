#!/usr/bin/env bash
# netconf-console2 recipes for nvo3 servers, one per function; each is run by
# tests/clients/test_netconf_console.py. Usage:
#   NC_HOST=127.0.0.1 NC_PORT=8300 NC_USER=admin NC_PASSWORD=... \
#   NC_SSH_CONFIG=./ssh_config bash clients/netconf-console/recipes.sh RECIPE
# or, against a daemon of the running lab (`nvo3 lab up`; lab-env.py fills the NC_* variables
# from the lab state, $NVO3_LAB_STATE or /run/nvo3/lab.json):
#   NC_LAB=ndirector bash clients/netconf-console/recipes.sh edit_config clients/netconf-console/lab/network.xml
#   NC_LAB=vcenter-root bash clients/netconf-console/recipes.sh lookup_vm clients/netconf-console/lab/lookup-vm.xml
# Host keys are verified (--hostkey-verify): netconf-console2 reads the known_hosts file named
# by UserKnownHostsFile in NC_SSH_CONFIG (without it, ~/.ssh/known_hosts). Entries for a port
# other than 22 are written "[HOST]:PORT KEYTYPE BASE64" (the key is on the daemon's ready line).
# netconf-console2 prints one XML document per operation; a failed operation prints its
# <rpc-error> and exits 255.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
examples="$here/../../yang/examples/rpc"
NCC=${NCC:-netconf-console2}

if [ -n "${NC_LAB:-}" ]; then
    lab_env=$("${PYTHON:-python3}" "$here/lab-env.py" "$NC_LAB")
    eval "$lab_env"
fi

nc() {
    local ssh=()
    [ -n "${NC_SSH_CONFIG:-}" ] && ssh=(--ssh-config "$NC_SSH_CONFIG")
    "$NCC" --host "${NC_HOST:-127.0.0.1}" --port "${NC_PORT:-830}" -u "${NC_USER:-admin}" \
        "-p${NC_PASSWORD:?set NC_PASSWORD}" --hostkey-verify "${ssh[@]}" "$@"
}

# The server's capabilities (base:1.1, :candidate, :confirmed-commit, the nvo3 modules, ...)
hello() { nc --hello; }

# State and configuration selected by XPath: who is connected to this server
get_sessions() { nc --get -x /netconf-state/sessions; }

# nDirector: each NVE with its session state (configuration and state, by XPath)
get_nves() { nc --get -x /ndirector/nves/nve; }

# The running configuration, then candidate with defaults filled in
get_config() { nc --get-config; }
get_config_candidate_defaults() { nc --get-config --db candidate --with-defaults report-all; }

# Merge a file into running (the server also commits it to candidate)
edit_config() { nc --edit-config "${1:-$here/tenant-network.xml}"; }

# The careful way: lock candidate, edit, commit, unlock, in one session. (netconf-console2's
# --validate without a file reads a config to validate from stdin: it is not "validate
# candidate", so it is left out here.)
locked_edit() {
    nc --db candidate --lock --edit-config "${1:-$here/tenant-network.xml}" --commit --unlock
}

# Confirmed commit, checked and confirmed in the same session: edit candidate, commit with
# a 60 s rollback timer, read the result back, confirm with a plain commit. (Ending the
# session before the confirming commit rolls the change back.)
commit_confirmed() {
    nc --db candidate --edit-config "${1:-$here/tenant-network.xml}" \
       --commit confirmed --timeout "${NC_CONFIRM_TIMEOUT:-60}" \
       --get-config -x /ndirector/networks --commit
}

# nDirector lookup (draft operation): where does MAC 02:00:00:00:01:02 of VNI 10010 live?
lookup() { nc --rpc "${1:-$examples/nvo3-ndirector/lookup.xml}"; }

# vCenter lookup-vm (draft operation): which VM has this MAC in this VNI, and where is it?
lookup_vm() { nc --rpc "${1:-$examples/nvo3-vcenter/lookup-vm.xml}"; }

recipe=${1:?usage: recipes.sh RECIPE [FILE] (hello get_sessions get_nves get_config get_config_candidate_defaults edit_config locked_edit commit_confirmed lookup lookup_vm)}
shift
case "$recipe" in
    hello|get_sessions|get_nves|get_config|get_config_candidate_defaults|edit_config|\
    locked_edit|commit_confirmed|lookup|lookup_vm) "$recipe" "$@" ;;
    *) echo "unknown recipe: $recipe" >&2; exit 2 ;;
esac
