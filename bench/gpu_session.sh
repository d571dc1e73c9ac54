#!/usr/bin/env bash
# One short GPU trip (a lent H100/H200 through the device tool, ~10 minutes of device time):
#   1. the bundled dhs4 and epd_promoters DDSM models trained from scratch with the current default
#      process (posterior output, training times uniform in local information), side by side;
#   2. the bundled Sudoku denoiser deepened and trained further (bench/gpu_sudoku.sh), beside them.
# The snapshots come back for selection on the CPU (bench/select_bundled.py); nothing is shipped here.
#
#   OUT=/tmp/gpu MINUTES=7 bash bench/gpu_session.sh
#   DEVICE=cpu MINUTES=0.5 STEPS=12 COOL=4 EVERY=4 BATCH=8 SUDOKU=0 bash bench/gpu_session.sh   # CPU dry run
#
# Data: $DATA/<name>/{train,valid}.fasta (default .gpu_data, a copy of ../shared/data made for the trip,
# since the device machine sees only the repository). The device tool returns at most 8 files of 16 MiB,
# so each run comes back as two tarballs of at most two 5.4 MB weight files each.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/gpu_session}
MINUTES=${MINUTES:-7}
DATA=${DATA:-.gpu_data}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
STEPS=${STEPS:-9000}            # constant rate, then a linear cooldown over the last COOL steps
COOL=${COOL:-2000}
EVERY=${EVERY:-1000}            # snapshot every EVERY steps
SUDOKU=${SUDOKU:-1}
WORK=${WORK:-/tmp/gpu_work}
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"

for name in dhs4 epd_promoters; do
  python bench/train_bundled.py --name "$name" --device "$DEVICE" --minutes "$MINUTES" --steps "$STEPS" \
    --cooldown "$COOL" --batch-size "$BATCH" --lr 1e-3 --warmup 500 --checkpoint-every "$EVERY" \
    --snapshot-every "$EVERY" --eval-every "$EVERY" --data-dir "$DATA" --out "$WORK/$name" \
    > "$WORK/$name.log" 2>&1 &
done
if [ "$SUDOKU" = 1 ]; then
  OUT="$WORK/sudoku_trip" MINUTES=$(python -c "print(max(0.2, $MINUTES - 1))") DEVICE="$DEVICE" \
    bash bench/gpu_sudoku.sh > "$WORK/sudoku_trip.log" 2>&1 &
fi
wait
tail -n 3 "$WORK"/*.log | tee "$OUT/tails.txt"

# the last three snapshots and the final EMA weights of each run, two weight files per tarball
for name in dhs4 epd_promoters; do
  run="$WORK/$name"
  mapfile -t snaps < <(ls -d "$run"/snapshots/step_* 2>/dev/null | sort | tail -n 3)
  mkdir -p "$WORK/pack_${name}_a/$name/snapshots" "$WORK/pack_${name}_b/$name/snapshots"
  for s in "${snaps[@]:0:2}"; do cp -r "$s" "$WORK/pack_${name}_a/$name/snapshots/"; done
  for s in "${snaps[@]:2}"; do cp -r "$s" "$WORK/pack_${name}_b/$name/snapshots/"; done
  cp "$run"/model.safetensors "$run"/config.json "$run"/curve.json "$WORK/$name.log" \
    "$WORK/pack_${name}_b/$name/" 2>/dev/null
  tar -C "$WORK/pack_${name}_a" -cf "$OUT/${name}_a.tar" "$name"
  tar -C "$WORK/pack_${name}_b" -cf "$OUT/${name}_b.tar" "$name"
done
if [ "$SUDOKU" = 1 ]; then
  cp "$WORK/sudoku_trip/sudoku_model.tar" "$OUT/" 2>/dev/null
  tar -C "$WORK" -cf "$OUT/sudoku_logs.tar" sudoku_trip.log $(cd "$WORK" && ls sudoku_trip/*.log sudoku_trip/*.txt 2>/dev/null)
fi
ls -la "$OUT"
