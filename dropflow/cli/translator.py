"""``dropflow translator``: DALiuGE's translator REST API (EAGLE's Translator URL) as a daemon.

It binds like the managers: loopback unless told otherwise, always with the managers' token (``--token-file``,
``$DROPFLOW_TOKEN`` or the default file; ``--insecure-no-token`` on loopback only), under gunicorn. The
service itself is :mod:`dropflow.managers.translator_service`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .common import command
from .daemons import _allocator, _common, _name, _token

__all__ = ["cmd_translator"]


def _args(p: argparse.ArgumentParser) -> None:
    _common(p, 8084)
    p.add_argument(
        "--keep", type=int, default=32, metavar="N", help="translated graphs kept for the page (default 32)"
    )


@command("translator", _args)
def cmd_translator(args: argparse.Namespace) -> int:
    from ..managers.serve import ManagerApplication, Started
    from ..managers.translator_service import TranslatorService, make_translator_app

    _allocator(args)
    token = _token(args)
    service = TranslatorService(token, keep=max(1, args.keep), name=_name(args))

    class _Translator(ManagerApplication):
        """The managers' gunicorn setup (one worker, loopback), serving the translator's app."""

        def load_config(self) -> None:
            super().load_config()
            # The translator's app is a WSGI one: a thread worker serves it (the managers' is an ASGI worker).
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", self.threads)

        def load(self) -> Any:
            logging.basicConfig(
                level=self.cfg.loglevel.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
            )
            return make_translator_app(service)

    _Translator(lambda: Started(service, []), args.host, args.port, token, args.log_level, args.threads).run()
    return 0
