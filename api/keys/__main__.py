"""`python -m api.keys create|list|revoke`: manage API keys in the configured Redis."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api.keys.store import KeyLimits, KeyRefused, KeyStore
from common.redis_conn import connect_redis
from config import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; prints it once, on the last line")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="sees and controls every job")
    create.add_argument("--rate-per-min", type=int, help="requests per minute (0: unlimited)")
    create.add_argument("--max-active", type=int, help="jobs queued or running at once")
    create.add_argument("--audio-hours-per-day", type=float, help="audio accepted per UTC day")
    commands.add_parser("list", help="names, limits, created, last used; never the keys")
    revoke = commands.add_parser("revoke", help="remove a key; its next request is a 401")
    revoke.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None, store: KeyStore | None = None) -> int:
    """Run one command; 0 on success, 1 when it was refused (nothing changed)."""
    arguments = _parser().parse_args(argv)
    if store is None:
        settings = get_settings()
        store = KeyStore(connect_redis(settings), settings.queue_name)
    try:
        if arguments.command == "create":
            limits = KeyLimits(
                rate_per_min=arguments.rate_per_min,
                max_active=arguments.max_active,
                audio_hours_per_day=arguments.audio_hours_per_day,
            )
            secret = store.create(arguments.name, admin=arguments.admin, limits=limits)
            sys.stdout.write(f"created key {arguments.name!r}; it is shown only now:\n{secret}\n")
        elif arguments.command == "revoke":
            store.revoke(arguments.name)
            sys.stdout.write(f"revoked key {arguments.name!r}\n")
        else:
            for key, last_used in store.list():
                own = key.limits.model_dump_json(exclude_none=True)
                sys.stdout.write(
                    f"{key.name}\tadmin={key.admin}\tlimits={own}\t"
                    f"created={key.created_at.isoformat()}\tlast_used={last_used or 'never'}\n"
                )
    except KeyRefused as refused:
        sys.stderr.write(f"error: {refused}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
