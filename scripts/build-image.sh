#!/usr/bin/env bash
# Build the mixpeek-exporter container image with the OCI labels filled in.
#
#   scripts/build-image.sh [--tag NAME:TAG] [--base-image IMAGE] [--offline] [--network MODE]
#
#   --tag         image name (default mixpeek-exporter:<version from exporter/__init__.py>)
#   --base-image  BASE_IMAGE build arg (default: the Dockerfile's python:3.11-slim)
#   --offline     air-gapped build: `pip download` every wheel on this host (same Python minor
#                 and platform as the image), build in a temporary context with those wheels
#                 and PIP_NO_INDEX=1, and with --network none so nothing is fetched in the build.
#                 Needs a python3.11 on the host (the .venv one is used when present).
#   --network     docker build --network (default: none with --offline, else the daemon default)
#
# Uses the classic builder (DOCKER_BUILDKIT=0): it needs no buildx plugin, which Debian's
# docker.io does not ship. Honours DOCKER_HOST, so it works against a private dockerd.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' exporter/__init__.py)
tag="mixpeek-exporter:${version}"
base_image=""
offline=0
network=""
while (($#)); do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --base-image) base_image=$2; shift 2 ;;
    --offline) offline=1; shift ;;
    --network) network=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- exporter pyproject.toml Dockerfile 2>/dev/null)" ]; then
  revision="${revision}-dirty"
fi
source_url=$(git config --get remote.origin.url 2>/dev/null || true)
case "$source_url" in
  *@*|"") source_url="" ;;  # never bake credentials or an ssh user into a label
esac
build_args=(
  --build-arg "VERSION=${version}"
  --build-arg "REVISION=${revision}"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  --build-arg "SOURCE=${source_url}"
)
[ -n "$base_image" ] && build_args+=(--build-arg "BASE_IMAGE=${base_image}")

context=$root
if ((offline)); then
  py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  context=$(mktemp -d "${TMPDIR:-/tmp}/mixpeek-image-ctx.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  # Only what the Dockerfile copies (the same allow-list as .dockerignore).
  cp -r Dockerfile .dockerignore pyproject.toml README.md config.example.yaml exporter "$context"/
  find "$context/exporter" -name __pycache__ -prune -exec rm -rf {} +
  mkdir -p "$context/wheels"
  # Runtime dependencies (read from pyproject.toml) and the build backend, as binary wheels
  # for the image's interpreter. pip download resolves the full dependency tree.
  mapfile -t deps < <("$py" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    meta = tomllib.load(f)
print("\n".join(meta["project"]["dependencies"] + meta["build-system"]["requires"]))
PY
)
  "$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$context/wheels" "${deps[@]}"
  build_args+=(--build-arg "PIP_NO_INDEX=1")
  network=${network:-none}
fi
[ -n "$network" ] && build_args+=(--network "$network")

echo "build-image: building ${tag} (revision ${revision}${base_image:+, base ${base_image}}${network:+, network ${network}})"
DOCKER_BUILDKIT=0 docker build --pull=false --tag "$tag" "${build_args[@]}" "$context"
echo "build-image: built ${tag}"
