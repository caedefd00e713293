#!/usr/bin/env bash
# A small internet in Linux network namespaces, to try direct messages across NATs (and what
# client/tests/nat.rs runs them in). Needs root, iproute2 and nftables
# (scripts/install-test-tools.sh installs them).
#
#   scripts/netns.sh up NAME [NAT-A] [NAT-B]    build it (NAT-A/NAT-B: eim (default) or random)
#   scripts/netns.sh down NAME                  remove it (and everything running in it)
#
# NAME (letters, digits, '-', at most 20 characters) prefixes every namespace, so several
# can exist at once. The namespaces:
#
#   NAME-pub    the "internet": a bridge joining the public segment 203.0.113.0/24
#   NAME-srv    the server's host, 203.0.113.1 on its interface "wan"
#   NAME-c      a client with a public address, 203.0.113.4
#   NAME-nata   home router A: 203.0.113.2 outside ("wan"), 10.0.1.1 inside ("lan")
#   NAME-lana   the switch of LAN A (a bridge)
#   NAME-a      a client behind A, 10.0.1.2      NAME-a2  another one behind A, 10.0.1.3
#   NAME-natb   home router B: 203.0.113.3 outside, 10.0.2.1 inside (switch NAME-lanb)
#   NAME-b      a client behind B, 10.0.2.2
#
# Each router masquerades its LAN (nftables) and, as home routers do, silently drops every
# packet from outside that does not belong to a connection from inside (no resets). "eim"
# is plain masquerade: Linux keeps the inside port when it can and uses one mapping per
# inside address and port whatever the destination (endpoint-independent), which TCP
# simultaneous open gets through. "random" is `masquerade random,fully-random`: a fresh
# random port for every connection, which defeats hole punching.
#
# Try it by hand (as root), e.g.:
#   scripts/netns.sh up demo
#   ip netns exec demo-srv target/debug/huddle-server --bind 203.0.113.1 --data-dir /tmp/d
#   ip netns exec demo-a target/debug/huddle 203.0.113.1 6697      (and demo-b, demo-c)
#   scripts/netns.sh down demo
set -euo pipefail

die() {
  echo "netns.sh: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,8p' "$0" >&2
  exit 2
}

(($# >= 2)) || usage
action=$1
name=$2
[[ $name =~ ^[A-Za-z0-9-]{1,20}$ ]] || die "bad NAME '$name'"
hosts=(pub srv c nata lana a a2 natb lanb b)

down() {
  local ns
  for ns in "${hosts[@]}"; do
    if [[ -e /run/netns/$name-$ns ]]; then
      # Whatever still runs in it goes first, or the namespace would outlive its name.
      local pids
      pids=$(ip netns pids "$name-$ns" 2>/dev/null || true)
      [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
      ip netns del "$name-$ns" 2>/dev/null || true
    fi
  done
}

in_ns() {
  local ns=$1
  shift
  ip netns exec "$name-$ns" "$@"
}

# A veth from namespace $1 (interface $2, address $3) to bridge $5 in namespace $4, where
# its end is called $6.
plug() {
  local ns=$1 ifname=$2 addr=$3 hub=$4 bridge=$5 port=$6
  ip link add "$ifname" netns "$name-$ns" type veth peer name "$port" netns "$name-$hub"
  ip -n "$name-$hub" link set "$port" master "$bridge" up
  ip -n "$name-$ns" addr add "$addr" dev "$ifname"
  ip -n "$name-$ns" link set "$ifname" up
}

# A bridge named $2 in namespace $1.
switch() {
  ip -n "$name-$1" link add "$2" type bridge
  ip -n "$name-$1" link set "$2" up
}

# Router $1 with LAN address $2 on switch $3, NAT mode $4. The LAN's switch is a namespace
# of its own, so traffic inside the LAN never meets the router's firewall.
router() {
  local ns=$1 lan_addr=$2 sw=$3 mode=$4 masq
  case $mode in
    eim) masq="masquerade" ;;
    random) masq="masquerade random,fully-random" ;;
    *) die "NAT mode '$mode': eim or random" ;;
  esac
  switch "$sw" lan
  plug "$ns" lan "$lan_addr" "$sw" lan "p-$ns"
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  in_ns "$ns" nft -f - <<EOF
table ip home {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masq
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
}
EOF
}

up() {
  local mode_a=${1:-eim} mode_b=${2:-eim} ns
  command -v nft >/dev/null || die "nft not found (scripts/install-test-tools.sh installs nftables)"
  [[ $(id -u) == 0 ]] || die "must run as root"
  trap 'down' ERR
  for ns in "${hosts[@]}"; do
    ip netns add "$name-$ns"
    ip -n "$name-$ns" link set lo up
  done
  switch pub pub
  plug srv wan 203.0.113.1/24 pub pub p-srv
  plug nata wan 203.0.113.2/24 pub pub p-nata
  plug natb wan 203.0.113.3/24 pub pub p-natb
  plug c wan 203.0.113.4/24 pub pub p-c
  router nata 10.0.1.1/24 lana "$mode_a"
  router natb 10.0.2.1/24 lanb "$mode_b"
  plug a eth0 10.0.1.2/24 lana lan h-a
  plug a2 eth0 10.0.1.3/24 lana lan h-a2
  plug b eth0 10.0.2.2/24 lanb lan h-b
  ip -n "$name-a" route add default via 10.0.1.1
  ip -n "$name-a2" route add default via 10.0.1.1
  ip -n "$name-b" route add default via 10.0.2.1
  trap - ERR
}

case $action in
  up)
    shift 2
    up "$@"
    ;;
  down) down ;;
  *) usage ;;
esac
