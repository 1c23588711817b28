#!/usr/bin/env python3
"""Leads while this pod leads, through the leadership sidecar's socket (standard library only).

Waits until this unit leads, then works while it leads, passing the term to every piece of work
(a store that remembers the highest term it has seen refuses a write with a lower one: fencing),
and stops as soon as the sidecar's watch stream says this unit no longer leads, or the stream
ends; then waits again. LEADERSHIP_SOCKET names the socket (the chart's webhook sets it).

Prints one line per step: "waiting", "leading term=N", "working term=N", "deposed term=N".
"""

import http.client
import json
import os
import socket
import sys
import threading
import time

SOCKET = os.environ.get("LEADERSHIP_SOCKET", "/run/leadership/leadership.sock")
# How long one wait for leadership lasts before it is asked again (the sidecar's 408).
WAIT_MS = 30_000


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the sidecar's Unix socket."""

    def __init__(self, timeout=None):
        super().__init__("localhost", timeout=timeout)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            self.sock.settimeout(self.timeout)
        self.sock.connect(SOCKET)


def say(line):
    print(line, flush=True)


def wait_until_leader():
    """The term, once this unit leads."""
    while True:
        connection = UnixConnection(timeout=WAIT_MS / 1000 + 10)
        try:
            connection.request("GET", f"/v1/wait/leader?timeoutMs={WAIT_MS}")
            reply = connection.getresponse()
            body = json.loads(reply.read() or b"null")
        except (OSError, ValueError) as err:
            # The sidecar is not up yet, or restarting: ask again soon.
            print(f"the sidecar did not answer: {err}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        finally:
            connection.close()
        if reply.status == 200:
            return body["term"]
        if reply.status != 408:
            # 503: the sidecar does not know the lease state yet. Never an answer to act on.
            print(f"waiting: {reply.status} {body}", file=sys.stderr, flush=True)
            time.sleep(1)


def watch_until_deposed(term, deposed):
    """Sets `deposed` at the first status that is not this unit leading in `term`, or when the
    stream ends (a stream that ended says nothing more: stop, to be safe)."""
    connection = UnixConnection()
    try:
        connection.request("GET", "/v1/watch")
        reply = connection.getresponse()
        if reply.status == 200:
            for line in reply:
                status = json.loads(line)
                if not status["leader"] or status["term"] != term:
                    break
    except (OSError, ValueError):
        pass
    finally:
        deposed.set()
        connection.close()


def work(term):
    """One piece of the leader's work, fenced with `term`."""
    say(f"working term={term}")


def main():
    while True:
        say("waiting")
        term = wait_until_leader()
        say(f"leading term={term}")
        deposed = threading.Event()
        threading.Thread(target=watch_until_deposed, args=(term, deposed), daemon=True).start()
        while not deposed.wait(timeout=1.0):
            work(term)
        say(f"deposed term={term}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
