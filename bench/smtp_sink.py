"""An SMTP server on loopback (aiosmtpd) in a process of its own, so it never competes with
the sender for the GIL. Counts accepted messages in Redis (INCR `--key`).

`python -m bench.smtp_sink --port P --redis URL --key K`; prints "ready" when listening.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

import redis
from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self, client, key):
        self.client, self.key = client, key

    async def handle_DATA(self, server, session, envelope):
        self.client.incr(self.key)
        return "250 OK"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    controller = Controller(CountingHandler(redis.Redis.from_url(args.redis), args.key),
                            hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
