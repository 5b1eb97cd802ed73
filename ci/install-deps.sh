#!/usr/bin/env bash
# Installs what building and testing Manada needs on a Debian/Ubuntu machine:
# QEMU, the FAT tools and curl used as test oracles, and the kernel's Rust target.
# Safe to run again: it only installs what is missing.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.fat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v curl >/dev/null || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ci: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "ci: missing ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi

# rustup does not install rust-toolchain.toml's targets for a toolchain it already has.
if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
    echo "ci: adding the x86_64-unknown-none Rust target"
    rustup target add x86_64-unknown-none
fi
