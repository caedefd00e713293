#!/usr/bin/env bash
# Install the programs the end-to-end tests drive, if they are missing: the IRC clients of
# server/tests/interop.rs (WeeChat headless: Debian `weechat-headless`, plus `weechat-plugins`
# for its fifo plugin; irssi; `script` from util-linux, which runs irssi on a pseudo-terminal)
# and tmux, the terminal the client's display tests run it in; for the NAT tests in network
# namespaces (client/tests/nat.rs, scripts/netns.sh): iproute2 (`ip`), nftables (`nft`) and
# tcpdump.
#
# Quiet and quick when everything is there. Otherwise it runs `apt-get update` once and
# `apt-get install --no-install-recommends` (as root, or through sudo when that is available).
set -euo pipefail

missing=()
command -v weechat-headless >/dev/null || missing+=(weechat-headless)
# The fifo plugin is how the test sends commands to a running WeeChat.
compgen -G "/usr/lib/*/weechat/plugins/fifo.so" >/dev/null ||
  compgen -G "/usr/lib/weechat/plugins/fifo.so" >/dev/null || missing+=(weechat-plugins)
command -v irssi >/dev/null || missing+=(irssi)
command -v script >/dev/null || missing+=(bsdutils)
command -v tmux >/dev/null || missing+=(tmux)
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v tcpdump >/dev/null || missing+=(tcpdump)
((${#missing[@]} == 0)) && exit 0

die() {
  echo "install-test-tools: error: $*" >&2
  exit 1
}

command -v apt-get >/dev/null || die "missing ${missing[*]} and there is no apt-get to install them"
sudo=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || die "missing ${missing[*]}: run as root (or install them by hand)"
  sudo=(sudo -n)
fi

echo "install-test-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt=("${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=120)
if ! "${apt[@]}" update >"$log" 2>&1; then
  cat "$log" >&2
  die "apt-get update failed"
fi
if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  die "apt-get install ${missing[*]} failed"
fi
command -v weechat-headless >/dev/null && command -v irssi >/dev/null &&
  command -v script >/dev/null || die "installed ${missing[*]}, but a client is still missing"
