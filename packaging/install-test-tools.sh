#!/usr/bin/env bash
# Install the tools the packaging tests use (systemd-analyze, rpmbuild, promtool) when
# they are missing and this user may install Debian packages. Never fails: a tool that
# stays missing makes its tests skip, each with the reason and the package to install.
set -u
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v rpmbuild >/dev/null || need+=(rpm)
command -v promtool >/dev/null || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "packaging tests will skip what needs: ${need[*]} (install those packages to run them)"
    exit 0
fi
echo "installing packaging test tools: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { timeout 600 apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; }
install || { timeout 300 apt-get update -q >/dev/null 2>&1 && install; } ||
    echo "could not install ${need[*]}; the packaging tests that need them will skip"
exit 0
