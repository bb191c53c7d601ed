#!/usr/bin/env bash
# Builds the repository's Dockerfile with podman where no registry can be reached: on a local
# Debian base made by debootstrap from Debian's packages (Python 3.11 with a venv on PATH), with
# this machine's pip configuration and package folders mounted into the build's RUN steps.
#
#   bash scripts/build-image.sh [TAG]        # default localhost/neural-ode-zoo:dev
#
# Needs root, podman and debootstrap (apt-get install podman debootstrap). The base is made once
# and kept as localhost/zoo-debian-base:bookworm (and its file system under $ZOO_IMAGE_DIR,
# default /var/tmp/zoo-image); later builds reuse it and podman's layer cache.
# Where the registry is reachable, `docker build .` (or podman) builds on the CUDA PyTorch base.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/neural-ode-zoo:dev}
BASE=localhost/zoo-debian-base:bookworm
WORK=${ZOO_IMAGE_DIR:-/var/tmp/zoo-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! podman image exists "$BASE"; then
  mkdir -p "$WORK"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR"
  chroot "$WORK/rootfs" python3 -m venv /opt/venv
  tar -C "$WORK/rootfs" -cf "$WORK/base.tar" .
  podman import --change "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'CMD ["/bin/bash"]' "$WORK/base.tar" "$BASE"
  rm -f "$WORK/base.tar"
fi

# pip inside the build sees what pip sees here: its configuration, the local wheel folders it
# names, and the certificate bundle of this network's proxy.
mounts=()
for path in /etc/pip.conf /etc/xdg/pip /root/.config/pip /opt/pypi /opt/pypi-more /opt/wheels \
            /etc/ssl/certs/ca-certificates.crt; do
  if [ -e "$path" ]; then mounts+=(-v "$path:$path:ro"); fi
done

podman build --format docker --isolation chroot --pull=never --build-arg "BASE_IMAGE=$BASE" \
  "${mounts[@]}" -t "$TAG" .
