#!/usr/bin/env bash
# The test node's host side, run as root: `node.sh up DIR` prepares the network and cgroups before
# the node starts; `node.sh down DIR` takes every trace of it away again (idempotent: it runs after
# a clean stop, after a crash, and again for a stale node found at the next start). DIR/node.env
# says what to use. Only one node runs on a machine at a time: /run/leadership-e2e-node names it.
set -uo pipefail
action=${1:?usage: node.sh up|down DIR}
dir=${2:?usage: node.sh up|down DIR}
# shellcheck source=/dev/null
source "$dir/node.env"
marker=/run/leadership-e2e-node

say() { printf '[node] %s\n' "$*" >&2; }

# Every cgroup hierarchy this machine mounts (cgroup v1 controllers and the unified one).
hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts
}

# Pids of processes named $1 whose command line mentions $2.
named_with() {
  local pid
  for pid in $(pgrep -x "$1"); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" && echo "$pid"
  done
}

up() {
  if [ -e "$marker" ]; then
    local other
    other=$(cat "$marker")
    if [ "$other" != "$DIR" ] && [ -d "$other" ] && [ -n "$(named_with kubelet "$other")$(named_with containerd "$other")" ]; then
      say "another test node is running (its folder: $other); stop it first (e2e/cluster down)"
      exit 1
    fi
    if [ -f "$other/node.sh" ] && [ -f "$other/node.env" ]; then
      say "cleaning up a test node that was not stopped ($other)"
      bash "$other/node.sh" down "$other"
    else
      ip link del "$BRIDGE" 2>/dev/null
    fi
  fi
  echo "$DIR" >"$marker"
  # The settings that this node changes, to be put back by `down`.
  {
    echo "SAVED_IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)"
    modprobe br_netfilter 2>/dev/null
    echo "SAVED_BRIDGE_NF=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo -)"
  } >"$DIR/node.saved"
  set -e
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # ClusterIPs are translated by kube-proxy; anything left for the Service range stays here.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE"
  sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # A guard: nothing from the pods is forwarded anywhere but to the bridge.
  iptables -w -N LEADERSHIP-E2E-GUARD
  iptables -w -A LEADERSHIP-E2E-GUARD -s "$CLUSTER_CIDR" ! -o "$BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -j LEADERSHIP-E2E-GUARD
  local h
  for h in $(hierarchies); do mkdir -p "$h$CGROUP_ROOT"; done
  mkdir -p "$DIR/kubelet" "$DIR/cni/net.d" "$DIR/pod-logs"
  : >"$DIR/kubelet/resolv.conf"
}

# Kills every process in the node's cgroups until none is left.
kill_cgroup_tree() {
  local round h pids
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for h in $(hierarchies); do
      [ -d "$h$CGROUP_ROOT" ] || continue
      pids+=" $(find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null)"
    done
    pids=$(echo "$pids" | tr ' ' '\n' | grep -v '^$' | sort -u)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    sleep 0.2
  done
  say "processes still in $CGROUP_ROOT: $pids"
}

# Removes every KUBE-* chain, and the rules that jump to them, from the filter, nat and mangle
# tables of iptables and ip6tables.
remove_kube_chains() {
  local cmd table rule chain chains
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
      "$cmd" -w -t "$table" -S 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | grep -v '^-A KUBE-' |
        while read -r rule; do eval "$cmd -w -t $table ${rule/#-A/-D}" 2>/dev/null; done
      chains=$("$cmd" -w -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ { print $2 }')
      for chain in $chains; do "$cmd" -w -t "$table" -F "$chain" 2>/dev/null; done
      for chain in $chains; do "$cmd" -w -t "$table" -X "$chain" 2>/dev/null; done
    done
  done
}

down() {
  local pid name h
  # The kubelet first, so that it restarts nothing; then containerd, kube-proxy, the shims.
  for name in kubelet kube-proxy kube-scheduler containerd; do
    for pid in $(named_with "$name" "$DIR"); do kill -KILL "$pid" 2>/dev/null; done
  done
  kill_cgroup_tree
  for pid in $(named_with containerd-shim "$CONTAINERD_SOCKET"); do kill -KILL "$pid" 2>/dev/null; done
  # Every mount under the folder (pod volumes, container root file systems, network namespaces),
  # deepest first.
  awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  # kube-proxy's rules, then the kubelet's (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...), then ours.
  if [ -x "$NODE_BIN/kube-proxy" ]; then
    "$NODE_BIN/kube-proxy" --cleanup --proxy-mode=iptables >/dev/null 2>&1
  fi
  remove_kube_chains
  iptables -w -D FORWARD -j LEADERSHIP-E2E-GUARD 2>/dev/null
  iptables -w -F LEADERSHIP-E2E-GUARD 2>/dev/null
  iptables -w -X LEADERSHIP-E2E-GUARD 2>/dev/null
  ip link del "$BRIDGE" 2>/dev/null
  # The pods' cgroups, deepest first.
  for h in $(hierarchies); do
    [ -d "$h$CGROUP_ROOT" ] && find "$h$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  if [ -f "$DIR/node.saved" ]; then
    # shellcheck source=/dev/null
    source "$DIR/node.saved"
    sysctl -qw "net.ipv4.ip_forward=$SAVED_IP_FORWARD"
    [ "$SAVED_BRIDGE_NF" != - ] && sysctl -qw "net.bridge.bridge-nf-call-iptables=$SAVED_BRIDGE_NF"
    rm -f "$DIR/node.saved"
  fi
  [ "$(cat "$marker" 2>/dev/null)" = "$DIR" ] && rm -f "$marker"
  return 0
}

case "$action" in
  up) up ;;
  down) down ;;
  *) echo "usage: node.sh up|down DIR" >&2; exit 2 ;;
esac
