#!/usr/bin/env bash
# Copies the pictures README.md shows from finished runs into docs/pictures/, and draws the NODE
# vs ANODE NFE plot. Run after the runs it names, each made by `zoo fit --config configs/<run>.yaml`
# (the series picture: by `python benchmarks/series_results.py --out runs/series-results`):
#   bash scripts/readme_pictures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/pictures
mkdir -p "$out"
newest() { ls -d "runs/$1"/version_* | sort -V | tail -1; }
for run in node-spheres1d anode-spheres1d; do
  cp "$(newest "$run")/pictures/flow.png" "$out/$run-flow.png"
done
for dynamics in standard antisymmetric hamiltonian; do
  cp "$(newest "$dynamics-swissroll")/pictures/decision_regions.png" "$out/$dynamics-swissroll-regions.png"
done
.venv/bin/zoo nfe-plot NODE="$(newest node-spheres2d)" ANODE="$(newest anode-spheres2d)" \
  --out "$out/nfe-spheres2d.png"
cp runs/series-results/fit/latent-ode-spirals-1.0/version_0/pictures/series.png "$out/latent-ode-spirals-series.png"
# The flows (by `python benchmarks/flow_results.py --out runs/flow-results`)
for run in cfm-ot-8gaussians cfm-ot-pinwheel cfm-ot-moons cfm-ot-rings; do
  cp "runs/flow-results/fit/$run/version_0/pictures/density.png" "$out/$run-density.png"
done
cp runs/flow-results/fit/cfm-ot-fmnist/version_0/pictures/samples.png "$out/cfm-ot-fmnist-samples.png"
