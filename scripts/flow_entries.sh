#!/usr/bin/env bash
# Exports FFJORD-family zoo entries from the runs of benchmarks/flow_results.py: each named run
# (its label is its recipe's name), from its best checkpoint by validation NLL (bits/dim for
# images). Keeps the run (best checkpoint, configs, metrics) under checkpoints/training/<name>/.
#   python benchmarks/flow_results.py --out runs/flow-results --group 8gaussians
#   bash scripts/flow_entries.sh ffjord-8gaussians rnode-8gaussians cfm-8gaussians cfm-ot-8gaussians
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/export_run.sh
compare="compare the other trainers' entries of the same set (ffjord-, rnode-, cfm-, cfm-ot-) in README.md."
for name in "$@"; do
  case $name in
    *-digits) metric="test_bpd: bits per dimension of the 360 held-out 8x8 digits (17 levels, one seeded dequantization), exact divergence, dopri5 at 1e-5; test_nll: the same in nats per image" ;;
    *) metric="test_nll: nats per point on the fixed 100,000-point test set, exact divergence, dopri5 at 1e-5" ;;
  esac
  export_run runs/flow-results "$name" "$name" "Trained and tested by benchmarks/flow_results.py (run $name). $metric; $compare"
done
