#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives for real: promtool and a Prometheus
# server, Alertmanager and amtool, headless Chromium (the status page's browser test), the
# Docker engine and debootstrap (image build), and the npm packages that type-check the Grafana
# dashboard. Idempotent: it installs only what is missing, so a second run costs nothing.
# Needs root for apt; without root it says what is missing and the tests that need it will
# fail under CI=true (and skip elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v promtool >/dev/null 2>&1 || apt_pkgs+=(prometheus)
# Debian names the server prometheus-alertmanager (not alertmanager); amtool comes with it.
command -v prometheus-alertmanager >/dev/null 2>&1 || apt_pkgs+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
command -v dockerd >/dev/null 2>&1 || apt_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || apt_pkgs+=(debootstrap)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(nodejs npm)

if ((${#apt_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "install-test-tools: apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages must not start services: a packaged dockerd with default flags would rewrite
    # the host's network (bridge, iptables, ip_forward). Tests start their own, safely.
    rcd=/usr/sbin/policy-rc.d
    had_rcd=0
    [ -e "$rcd" ] && had_rcd=1 && cp -p "$rcd" "$rcd.mixpeek-bak"
    printf '#!/bin/sh\nexit 101\n' > "$rcd" && chmod +x "$rcd"
    restore_rcd() {
      if [ "$had_rcd" = 1 ]; then mv -f "$rcd.mixpeek-bak" "$rcd"; else rm -f "$rcd"; fi
    }
    trap restore_rcd EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    restore_rcd
    trap - EXIT
  else
    echo "install-test-tools: not root, cannot install ${apt_pkgs[*]}" >&2
  fi
fi

# Grafana dashboard type-check (tools/dashcheck/package.json pins the versions).
if [ -f tools/dashcheck/package.json ] && [ ! -x tools/dashcheck/node_modules/.bin/tsc ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd tools/dashcheck && npm ci --no-audit --no-fund --silent)
  else
    echo "install-test-tools: npm missing; dashboard type-check cannot run" >&2
  fi
fi
