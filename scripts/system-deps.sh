#!/usr/bin/env bash
# Install the system programs the tests use (Debian packages) when missing:
#   zstd         - the reference command-line tool, for the interop tests
#   redis-server - the real Redis the cache tests run against (127.0.0.1, free port)
#   redis-cli    - joins the 3-node Redis Cluster the cluster tests start (redis-tools)
#   promtool     - Prometheus' rule checker, for the exported alerting rules (package prometheus)
#   chromium     - headless browser that renders the HTML bench report in its test
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
declare -A pkg_for=([zstd]=zstd [redis-server]=redis-server [redis-cli]=redis-tools [promtool]=prometheus [chromium]=chromium)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
