#!/usr/bin/env bash
# Exports the Latent ODE zoo entries from the runs of benchmarks/series_results.py: the run whose
# data settings are its recipe's (spirals with every point observed, periodic interpolation at
# 50%, JapaneseVowels interpolation at 50% dropped), its best checkpoint by the recipe's monitor.
# Keeps each run (best checkpoint, configs, metrics) under checkpoints/training/<name>/.
#   python benchmarks/series_results.py --out runs/series-results   # trains and tests every run
#   bash scripts/series_entries.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/export_run.sh
export_entry() { export_run runs/series-results "$@"; }  # name, run label, notes
export_entry latent-ode-spirals latent-ode-spirals-1.0 \
  "Chen et al. 2018, Section 5.1: extrapolation of the 100 points after a window of 100 noisy spiral points, all observed. Test RMSE = sqrt(test_mse); Chen et al. report 0.1346 for the Latent ODE and 0.1813 for an RNN at 100 observed points. Trained by benchmarks/series_results.py (run latent-ode-spirals-1.0), which also trains the GRU-dt baseline on the same data."
export_entry latent-ode-periodic latent-ode-periodic-interpolation \
  "Rubanova et al. 2019's periodic toy, 50% of points observed, interpolation; they report an MSE of about 0.017 after 500 epochs. The observation noise is fixed at the authors' 0.01, so the 90% predictive interval is far too narrow (test_coverage90); trained by benchmarks/series_results.py (run latent-ode-periodic-interpolation) beside ODE-RNN and RNN-VAE, in two parts: 100 epochs, then resumed from that run's last.ckpt to the recipe's 200 (zoo.resume restores the optimizer, the schedule, the data order and the random streams)."
export_entry latent-ode-japanesevowels latent-ode-japanesevowels-interpolation \
  "JapaneseVowels (UEA, bundled by sktime), 50% of values dropped per channel: interpolation of every known value and the speaker classified from the posterior mean of z0 (test_acc). Trained by benchmarks/series_results.py (run latent-ode-japanesevowels-interpolation) beside RNN-VAE, ODE-RNN and GRU-dt."
