#!/usr/bin/env bash
# Sets up a clean clone: the Debian packages dataset-fashion-mnist and libjemalloc2 where apt is
# usable, a virtual environment in .venv, torch/torchvision, and this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the real Fashion-MNIST, and jemalloc, which `zoo` starts itself under
# (zoo/launch.py: an ANODE training step 1.7x faster than under glibc's malloc here).
missing=()
for package in dataset-fashion-mnist libjemalloc2; do
  if command -v dpkg >/dev/null 2>&1 && ! dpkg -s "$package" >/dev/null 2>&1; then missing+=("$package"); fi
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: not root, so ${missing[*]} not installed. Without dataset-fashion-mnist," \
         "Fashion-MNIST is downloaded by torchvision (or put its files under \$ZOO_DATA/FashionMNIST/raw/);" \
         "without libjemalloc2, zoo runs on the system's malloc" >&2
  fi
fi

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[test]"
