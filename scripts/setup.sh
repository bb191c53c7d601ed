#!/usr/bin/env bash
# Sets up a clean clone: the Fashion-MNIST Debian package where apt is usable, a virtual
# environment in .venv, torch/torchvision, and this package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: not root, so dataset-fashion-mnist is not installed; Fashion-MNIST will be" \
         "downloaded by torchvision, or put its files under \$ZOO_DATA/FashionMNIST/raw/" >&2
  fi
fi

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[test]"
