#!/usr/bin/env bash
# Exports FFJORD-family zoo entries from the runs of benchmarks/flow_results.py: each named run
# (its label is its recipe's name), from its best checkpoint by validation NLL. Keeps the run
# (best checkpoint, configs, metrics) under checkpoints/training/<name>/.
#   python benchmarks/flow_results.py --out runs/flow-results --group 8gaussians
#   bash scripts/flow_entries.sh ffjord-8gaussians rnode-8gaussians cfm-8gaussians cfm-ot-8gaussians
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/export_run.sh
for name in "$@"; do
  export_run runs/flow-results "$name" "$name" "Trained and tested by benchmarks/flow_results.py (run $name). test_nll: nats per point on the fixed 100,000-point test set, exact divergence, dopri5 at 1e-5; compare the other trainers' entries of the same set (ffjord-, rnode-, cfm-, cfm-ot-) in README.md."
done
