"""The options of `nvo3 serve ndirector` that choose the etcd mode (the shared mapping table).

Without ``--etcd`` the nDirector keeps its table in its own memory (the embedded mode).
"""

from __future__ import annotations

import argparse


def add_arguments(serve: argparse.ArgumentParser) -> None:
    g = serve.add_argument_group("ndirector: the shared mapping table in etcd")
    g.add_argument("--etcd", metavar="URL,...",
                   help="etcd client URLs (http(s)://HOST:PORT, comma separated): keep the "
                        "mapping table in etcd, shared with the other data centers' nDirectors")
    g.add_argument("--data-center", metavar="NAME", help="the data center this nDirector serves")
    g.add_argument("--director-name", metavar="NAME",
                   help="this replica's name in the leader election (default: the state "
                        "directory's name)")
    g.add_argument("--etcd-ca", metavar="FILE", help="CA bundle that signs etcd's certificate")
    g.add_argument("--etcd-cert", metavar="FILE", help="client certificate for etcd")
    g.add_argument("--etcd-key", metavar="FILE", help="the client certificate's key")


def role_options(args: argparse.Namespace) -> dict[str, object]:
    """The role options for `make_role`; ValueError names a bad or missing option."""
    if not args.etcd:
        if args.data_center or args.etcd_ca or args.etcd_cert or args.etcd_key:
            raise ValueError("--data-center and --etcd-* need --etcd")
        return {}
    if args.role != "ndirector":
        raise ValueError("--etcd applies to the ndirector role only")
    if not args.data_center:
        raise ValueError("--etcd needs --data-center (the data center this nDirector serves)")
    from nvo3.roles.ndirector.etcd_client import EtcdSettings
    settings = EtcdSettings.parse(args.etcd, args.etcd_ca, args.etcd_cert, args.etcd_key)
    name = args.director_name or (args.state_dir.name if args.state_dir else "ndirector")
    return {"etcd": settings, "data_center": args.data_center, "director_name": name}
