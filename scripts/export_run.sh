# Sourced by scripts/series_entries.sh and scripts/flow_entries.sh: export_run RESULTS NAME LABEL NOTES
# exports the best checkpoint of run LABEL in RESULTS (benchmarks/recipe_runs.py's layout) as the
# bundled entry NAME, and keeps the run (best checkpoint, configs, metrics) in checkpoints/training/NAME/.
export_run() {
  local results=$1 name=$2 label=$3 notes=$4
  local best keep=checkpoints/training/$2
  best=$(.venv/bin/python benchmarks/recipe_runs.py best "$results" "$label")
  rm -rf "$keep" && mkdir -p "$keep"
  cp "$best" "$keep/"
  for version in "$results/fit/$label"/version_*; do
    cp "$version/metrics.csv" "$keep/metrics-$(basename "$version").csv"
    cp "$version/config.yaml" "$keep/config-$(basename "$version").yaml"
  done
  .venv/bin/zoo export "$keep/$(basename "$best")" --name "$name" --out checkpoints \
    --recipe-command "zoo fit --config configs/$name.yaml --trainer.enable_progress_bar false" \
    --notes "$notes"
}
