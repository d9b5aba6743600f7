"""Client tests (Ansible, netconf-console2): a package, so module names do not clash."""
