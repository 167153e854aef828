#!/usr/bin/env bash
# Builds a local Debian bookworm base image from Debian's own packages, for machines that cannot pull from an
# image registry: debootstrap (minbase + python3, python3-venv, python3-pip) into a temporary root filesystem,
# imported as the image NAME (default vae-base:bookworm). Skipped when NAME already exists.
#
#   bash scripts/base-image.sh [NAME]
#   docker build --build-arg BASE_IMAGE=vae-base:bookworm -t vae-service .
#
# Needs root and a Docker engine. Installs the Debian package `debootstrap` (apt-get) if it is missing. The
# packages come from the Debian mirror that this machine's apt uses for bookworm (DEBIAN_MIRROR overrides it),
# checked against the keys in /usr/share/keyrings/debian-archive-keyring.gpg. bookworm's python3 is 3.11, as in
# python:3.11-slim; it has no `python` command and refuses system-wide pip installs (PEP 668), so the
# Dockerfiles install into a virtual environment.
set -euo pipefail
name=${1:-vae-base:bookworm}
suite=bookworm

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name exists: skipped"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "scripts/base-image.sh: debootstrap needs root" >&2; exit 1; }

if ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
fi

# The mirror apt already uses for this suite (deb822 .sources or one-line sources.list alike).
mirror=${DEBIAN_MIRROR:-$(apt-get indextargets --no-release-info --format '$(SITE) $(RELEASE)' 2>/dev/null \
  | awk -v suite="$suite" '$2 == suite { print $1; exit }')}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/vae-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite from $mirror into $rootfs"
start=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip "$suite" "$rootfs" "$mirror" \
  > "$rootfs.log" 2>&1 || { tail -40 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Neither the downloaded .debs nor apt's lists belong in an image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -c . \
  | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "base image $name: $(docker image inspect --format '{{.Size}}' "$name") bytes, built in $((SECONDS - start)) s"
