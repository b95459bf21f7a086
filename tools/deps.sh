# tools/deps.sh - sourced by tools/test and tools/quickstart: installs the
# Debian packages kvfs needs, and only those that are missing.
# shellcheck shell=bash

KVFS_PACKAGES=(
  build-essential meson ninja-build pkg-config
  libuv1-dev liblz4-dev libxxhash-dev libcmocka-dev libsodium-dev libssl-dev
  libfuse3-dev fuse3
  libleveldb-dev libsnappy-dev
  clang libclang-rt-14-dev
  nftables iproute2 procps psmisc
  rsync git python3
)

kvfs_install_deps() {
  local missing=() p
  for p in "${KVFS_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq || return 1
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || return 1
}
