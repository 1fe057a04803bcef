#!/bin/sh
# Runs inside the engine image's root filesystem once its Debian packages (packages.txt) are in,
# in both image routes: `RUN` in native/engine/Dockerfile and a chroot hook of
# scripts/setup/images.sh. $1 is the folder holding requirements.txt. The entrypoints come after,
# as their own layer (they change more often than the packages).
set -eu
src="${1:?usage: image-setup.sh <folder with requirements.txt>}"

# ipyparallel from PyPI into /usr/local, which is on the default PATH of ssh sessions too (orted
# and ipengine run there on the workers).
pip3 install --no-cache-dir --break-system-packages -r "$src/requirements.txt"

# A non-root user (uid 1000) so worker and launcher pods satisfy the restricted Pod Security Standard.
groupadd --gid 1000 ipp
useradd --uid 1000 --gid 1000 --create-home --home-dir /home/ipp --shell /bin/bash ipp

# sshd runs as that user with its own config (entrypoint-worker.sh); the cluster's key is the host
# key, so the image carries none.
mkdir -p /run/sshd && chmod 0755 /run/sshd
rm -f /etc/ssh/ssh_host_*
rm -rf /var/lib/apt/lists/* /root/.cache /var/cache/apt/archives/*.deb
