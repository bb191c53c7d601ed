# neural-ode-zoo with CUDA: the `zoo` command, the bundled weights and the recipes, as a non-root user.
#
#   docker build -t neural-ode-zoo .
#   docker run --gpus all --ipc=host -v "$PWD/data:/data" -v "$PWD/checkpoints-out:/checkpoints" \
#       neural-ode-zoo fit --config configs/anode-fmnist.yaml --trainer.logger.init_args.save_dir /checkpoints/runs
#
# Base: the official PyTorch runtime image, pinned by tag. Its torch 2.8.0 lies in pyproject's range
# (torch>=2.4,<=2.14.1) and is built against CUDA 12.8 and cuDNN 9, which it carries itself: the
# host needs only an NVIDIA driver for CUDA 12.8 (R570 or later) and the NVIDIA Container Toolkit.
# CUDA 12.8 builds run on Hopper (H100, H200) and Blackwell as well as older GPUs. This image,
# rather than nvidia/cuda plus a pip install of torch, keeps torch, CUDA, cuDNN and NCCL one tested
# combination, and its -runtime flavour leaves out the compilers the zoo does not need.
# BASE_IMAGE: another image with Python 3.10+, pip and bash may stand in, for example a local
# Debian base where no registry can be reached (tests/test_docker.py builds on one with podman);
# torch then comes from PyPI, in pyproject's range.
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# jemalloc: `zoo` starts itself under it when it is installed (zoo/launch.py), which made an ANODE
# training step 1.7x faster on CPU; on a GPU it only speeds the host side. Debian's and Ubuntu's
# package, whatever version the base's release has.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*

# The dependencies first, in a layer of their own that only a change to pyproject.toml rebuilds.
# The constraints keep the base's own CUDA build of torch, and of torchvision where the base has
# it: without them pip could swap in another build from PyPI.
WORKDIR /opt/neural-ode-zoo
COPY pyproject.toml ./
RUN pip list --format=freeze | grep -iE '^(torch|torchvision)==' > /tmp/constraints.txt || true; \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# Then the package, non-editable and without touching the dependencies: into site-packages, and
# the bundled cards, weights and recipes (pyproject's data-files) into
# <prefix>/share/neural-ode-zoo, where zoo.load finds them offline. The sources are removed.
COPY README.md ./
COPY zoo/ zoo/
COPY configs/ configs/
COPY checkpoints/ checkpoints/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /opt/neural-ode-zoo

# A numeric non-root user (Kubernetes' runAsNonRoot can only verify a number). Group 0 owns its
# folders too, so that a container started with another uid in group 0 (as OpenShift does) can
# write them. /workspace is the working folder: configs/ there makes `--config configs/<name>.yaml`
# work, and the recipes' loggers write to runs/ there. /data holds the data sets ($ZOO_DATA) and
# /checkpoints is $ZOO_HOME: user-exported weights (`zoo export`) and the download cache.
RUN useradd --uid 10001 --gid 0 --create-home --home-dir /home/zoo --shell /usr/sbin/nologin zoo \
    && mkdir -p /workspace/runs /data /checkpoints \
    && chown -R 10001:0 /workspace /data /checkpoints /home/zoo \
    && chmod -R g=u /workspace /data /checkpoints /home/zoo
WORKDIR /workspace
COPY --chown=10001:0 configs/ configs/
ENV HOME=/home/zoo \
    ZOO_HOME=/checkpoints \
    ZOO_DATA=/data \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/data", "/checkpoints"]
USER 10001

# Fails the build unless the installed package loads its bundled weights, offline and as this user.
RUN python -c "import zoo; zoo.load('odenet-fmnist')"

# No HEALTHCHECK: a container runs one job (fit, test, export) and exits; there is no service whose
# health could be polled, and importing torch every few seconds would take CPU from training.
ENTRYPOINT ["zoo"]
CMD ["list"]
