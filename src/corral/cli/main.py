"""The `corral` command: server, shell, data tools and bench."""

from __future__ import annotations

import argparse
import logging
import sys

from corral.server.config import DEFAULT_DATA_DIR, ConfigError, load_config


def _add_server_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "server",
        help="run a standalone server in the foreground (like zkServer.sh start-foreground)",
        description="Run a corral server in the foreground until SIGTERM or SIGINT.",
    )
    parser.add_argument("config", nargs="?", help="path to a zoo.cfg (same keys as ZooKeeper)")
    parser.add_argument("--address", help="clientPortAddress (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="clientPort (default 2181)")
    parser.add_argument("--data-dir", help=f"dataDir (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--tick-time-ms", type=int, help="tickTime in ms (default 2000)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any zoo.cfg key, e.g. --set 4lw.commands.whitelist=* (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.set_defaults(func=_run_server)


def _run_server(args: argparse.Namespace) -> int:
    from corral.server.server import run

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"corral server: --set expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[key.strip()] = value.strip()
    if args.address is not None:
        overrides["clientPortAddress"] = args.address
    if args.port is not None:
        overrides["clientPort"] = str(args.port)
    if args.data_dir is not None:
        overrides["dataDir"] = args.data_dir
    if args.tick_time_ms is not None:
        overrides["tickTime"] = str(args.tick_time_ms)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"corral server: {e}", file=sys.stderr)
        return 2
    return run(config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Imported here rather than at the top: `import corral.cli.main` stays cheap.
    from corral.cli.bench import add_bench_parser
    from corral.cli.data import add_data_parser
    from corral.cli.ensemble import add_ensemble_parser
    from corral.cli.shell import add_shell_parser

    _add_server_parser(subparsers)
    add_shell_parser(subparsers)
    add_data_parser(subparsers)
    add_bench_parser(subparsers)
    add_ensemble_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
