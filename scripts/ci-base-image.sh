#!/usr/bin/env bash
# Make a Debian bookworm base image with python3 and its venv module, without any container
# registry: debootstrap a minbase root filesystem from this machine's own Debian mirror and
# `docker import` it. CI uses it as the Dockerfile's BASE_IMAGE, because python:3.11-slim cannot
# be pulled there.
#
#   scripts/ci-base-image.sh [TAG]        (default TAG: local/python3:bookworm)
#
# Needs root, debootstrap and a docker daemon (DOCKER_HOST is honoured).
# Mirror: $DEBIAN_MIRROR, else the first Debian archive URI of a bookworm entry in this machine's
# apt sources (/etc/apt/sources.list and /etc/apt/sources.list.d/*). Nothing is hard-coded.
# Cache: the root filesystem tarball is kept in $MIXPEEK_CI_CACHE (default
# /var/tmp/mixpeek-exporter-ci), keyed by mirror, suite and package list, so a second run skips
# debootstrap (~30 s). A fresh CI machine always pays it once.
set -euo pipefail

tag=${1:-local/python3:bookworm}
suite=bookworm
packages=python3,python3-venv,ca-certificates
cache_dir=${MIXPEEK_CI_CACHE:-/var/tmp/mixpeek-exporter-ci}

find_mirror() {
  local f
  # One-line format: "deb [options] URI SUITE COMPONENTS..."
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite && $i ~ /\/debian\/?$/) { print $i; exit }
      }' "$f"
  done
  # deb822 format: stanzas of "Key: value" lines separated by blank lines.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ")) {
          n = split(uris, u, " ")
          for (k = 1; k <= n; k++) if (u[k] ~ /\/debian\/?$/) { print u[k]; exit }
        }
        types = ""; uris = ""; suites = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      tolower($1) == "types:"  { $1 = ""; types = $0 }
      tolower($1) == "uris:"   { $1 = ""; uris = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      END { flush() }' "$f"
  done
}

mirror=${DEBIAN_MIRROR:-$(find_mirror | head -n1)}
if [ -z "$mirror" ]; then
  echo "ci-base-image: no Debian $suite mirror in the apt sources; set DEBIAN_MIRROR" >&2
  exit 1
fi

mkdir -p "$cache_dir"
key=$(printf '%s %s %s' "$mirror" "$suite" "$packages" | sha256sum | cut -c1-16)
tarball="$cache_dir/rootfs-$suite-$key.tar"

# One builder at a time per cache directory.
exec 9>"$cache_dir/.lock"
flock 9

if [ ! -s "$tarball" ]; then
  work=$(mktemp -d "$cache_dir/work.XXXXXX")
  cleanup() {
    # debootstrap mounts proc and sys inside the target; never leave them behind.
    local m
    for m in $(awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work"
  }
  trap cleanup EXIT
  echo "ci-base-image: debootstrap --variant=minbase $suite from $mirror (+$packages)"
  start=$(date +%s)
  debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # Package caches and lists are dead weight in an image.
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  echo "ci-base-image: root filesystem ready in $(( $(date +%s) - start )) s"
else
  echo "ci-base-image: using cached $tarball"
fi

docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$tag" < "$tarball" > /dev/null
echo "ci-base-image: imported $tag"
