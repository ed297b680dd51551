#!/bin/bash
# the stop-37 experiment's evals: the subset rows under the subset policy and under S1-S14, then held-out and positions
set -e
cd /work/main
M=runs/polish2/out/model
E=runs/polish2/eval
.venv/bin/pocketguard eval --data /tmp/rename/subset-data.jsonl --policy /tmp/rename/subset.toml --model $M --out $E/sub-subset > $E-sub-subset.log 2>&1; echo "sub-subset $(date +%T)"
.venv/bin/pocketguard eval --data /tmp/rename/subset-data.jsonl --model $M --out $E/sub-full > $E-sub-full.log 2>&1; echo "sub-full $(date +%T)"
for s in dev_heldout positions; do
  .venv/bin/pocketguard eval --data runs/data/$s.jsonl --model $M --batch-size 32 --out $E/$s > $E-$s.log 2>&1
  echo "$s $(date +%T)"
done
