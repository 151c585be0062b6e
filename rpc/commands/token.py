"""``token``: print a session token for an API user."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rpc.config import Settings


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from rpc.auth.tokens import mint_token, open_id_problem, secret_warning, storable

    if not settings.jwt_secret:
        print("JWT_SECRET is not set: tokens are only needed when it is.", file=sys.stderr)
        return 2
    problem = open_id_problem(args.open_id)
    if problem is None and args.name is not None and not storable(args.name):
        problem = "its --name holds a NUL character or a lone surrogate"
    if problem is not None:
        print(f"the server would refuse a token for this --open-id: {problem}", file=sys.stderr)
        return 2
    if weak := secret_warning(settings.jwt_secret):
        logging.getLogger("rpc.cli").warning(weak)
    print(mint_token(settings.jwt_secret, args.open_id, name=args.name, app_id=settings.app_id,
                     expires_in=args.days * 86400))  # fmt: skip
    return 0


def register(sub: Any) -> None:
    token = sub.add_parser("token", help="print a session token for an API user")
    token.add_argument("--open-id", required=True, help="the user's openId")
    token.add_argument("--name", help="the user's display name")
    token.add_argument("--days", type=int, default=365, help="days until it expires")
    token.set_defaults(run=cmd_token)
