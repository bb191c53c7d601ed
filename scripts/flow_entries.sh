#!/usr/bin/env bash
# Exports FFJORD-family zoo entries from the runs of benchmarks/flow_results.py: each named run
# (its label is its recipe's name), from its best checkpoint by validation NLL. Keeps the run
# (best checkpoint, configs, metrics) under checkpoints/training/<name>/.
#   python benchmarks/flow_results.py --out runs/flow-results --group 8gaussians
#   bash scripts/flow_entries.sh ffjord-8gaussians rnode-8gaussians cfm-8gaussians cfm-ot-8gaussians
set -euo pipefail
cd "$(dirname "$0")/.."
results=runs/flow-results
for name in "$@"; do
  best=$(.venv/bin/python benchmarks/recipe_runs.py best "$results" "$name")
  keep=checkpoints/training/$name
  rm -rf "$keep" && mkdir -p "$keep"
  cp "$best" "$keep/"
  for version in "$results/fit/$name"/version_*; do
    cp "$version/metrics.csv" "$keep/metrics-$(basename "$version").csv"
    cp "$version/config.yaml" "$keep/config-$(basename "$version").yaml"
  done
  .venv/bin/zoo export "$keep/$(basename "$best")" --name "$name" --out checkpoints \
    --recipe-command "zoo fit --config configs/$name.yaml --trainer.enable_progress_bar false" \
    --notes "Trained and tested by benchmarks/flow_results.py (run $name). test_nll: nats per point on the fixed 100,000-point test set, exact divergence, dopri5 at 1e-5; compare the other trainers' entries of the same set (ffjord-, rnode-, cfm-, cfm-ot-) in README.md."
done
