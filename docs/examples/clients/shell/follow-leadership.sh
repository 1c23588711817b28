#!/bin/sh
# follow-leadership.sh COMMAND [ARGS...]: runs COMMAND while this pod leads and stops it (SIGTERM)
# as soon as the leadership sidecar says this unit no longer leads; then waits to lead again. Needs
# only sh and curl. LEADERSHIP_SOCKET names the socket (the chart's webhook sets it).
# Prints "waiting", "leading" and "deposed" as it goes.
socket=${LEADERSHIP_SOCKET:-/run/leadership/leadership.sock}
worker=
# Stopping the pod stops the command too. Each curl runs in the background with `wait`, so that
# the trap runs at once.
trap '[ -n "$worker" ] && kill "$worker" 2>/dev/null; exit 0' TERM INT
while true; do
  echo waiting
  # Succeeds once this unit leads. A failure (408 after 30 s, 503 while the sidecar does not know
  # the lease state, no answer while it restarts) is never taken for leadership: ask again.
  curl -sf -o /dev/null --unix-socket "$socket" \
    "http://localhost/v1/wait/leader?timeoutMs=30000" & wait $!
  if [ $? -ne 0 ]; then
    sleep 0.2 & wait $!
    continue
  fi
  echo leading
  "$@" & worker=$!
  # Returns once this unit is no longer guaranteed leader, or as soon as the sidecar goes away.
  curl -s -o /dev/null --unix-socket "$socket" http://localhost/v1/wait/minion & wait $!
  kill "$worker" 2>/dev/null
  wait "$worker"
  worker=
  echo deposed
done
