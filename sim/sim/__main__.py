"""Command line: python -m sim {build,up,down,status,profiles,node,restart,controller}."""

import argparse
import sys
from pathlib import Path

from .errors import SimError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sim", description="Simulated GPU Kubernetes cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    build_p = sub.add_parser("build", help="build the pinned programs from Go modules into the cache")
    build_p.add_argument("--only", nargs="*", help="program names (etcd, kwok, kubernetes, ollama)")
    up_p = sub.add_parser("up", help="start the cluster (idempotent)")
    up_p.add_argument("--profile", default="k3s")
    sub.add_parser("down", help="stop every process and remove the state")
    sub.add_parser("status", help="nodes with GPU allocatable, zones and taints")
    sub.add_parser("profiles", help="list profiles")
    node_p = sub.add_parser("node", help="take a node down (no heartbeats, its pods' processes stopped) or bring it back")
    node_p.add_argument("name")
    node_p.add_argument("--state", required=True, help="down or up")
    node_p.add_argument("--no-wait", action="store_true", help="return at once instead of waiting for the node controller")
    restart_p = sub.add_parser("restart", help="restart one control-plane process in place")
    restart_p.add_argument("component")
    ctl = sub.add_parser("controller", help=argparse.SUPPRESS)
    ctl.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            from .build import build_all
            for name, path in build_all(only=args.only).items():
                print(f"{name}: {path}")
        elif args.command == "up":
            from .cluster import Cluster, status
            Cluster().up(args.profile)
            print(status())
        elif args.command == "down":
            from .cluster import Cluster
            Cluster().down()
        elif args.command == "status":
            from .cluster import status
            print(status())
        elif args.command == "profiles":
            from . import profiles
            for name in profiles.names():
                print(f"{name:<18} {profiles.load(name).get('description', '')}")
        elif args.command == "node":
            from .faults import set_node
            set_node(args.name, args.state, wait=not args.no_wait)
        elif args.command == "restart":
            from .faults import restart
            restart(args.component)
        elif args.command == "controller":
            from .controller import run
            run(Path(args.state))
    except SimError as exc:
        print(f"sim: {exc.cause}\n  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
