#!/usr/bin/env bash
# One short GPU session (an H100 lent through the device tool) doing three things:
#   1. the CUDA rows of the training-throughput bench (fp32 and bf16 autocast), measured alone;
#   2. the bundled dhs4 / epd_promoters DDSM models, warm-started from the shipped ones;
#   3. the bundled Sudoku denoiser, warm-started from the shipped one,
# with 2 and 3 sharing the GPU. Outputs (logs and two tarballs) go to $OUT.
#
#   OUT=/tmp/gpu MINUTES=6 bash bench/gpu_session.sh
#
# Data: the dhs4 / epd_promoters train and valid FASTA files under $DATA (default .gpu_data, a copy of
# ../shared/data made for the trip, since the device machine sees only the repository).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/gpu_session}
MINUTES=${MINUTES:-6}
DATA=${DATA:-.gpu_data}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu MAX_STEPS=3 EVAL=8: a dry run of the script on a CPU
MAX_STEPS=${MAX_STEPS:-0}
EVAL=${EVAL:-1000}
mkdir -p "$OUT/dhs4" "$OUT/epd_promoters" "$OUT/sudoku"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# 1. throughput, nothing else on the GPU
for proc in jacobi masked; do
  timeout 150 python bench/throughput.py --cuda-only --process "$proc" --batch-size 128 --steps 30 \
    2>&1 | grep -v Warning | tee -a "$OUT/throughput.log"
done

# 2 + 3. trainings side by side
for name in dhs4 epd_promoters; do
  python bench/train_bundled.py --name "$name" --device "$DEVICE" --minutes "$MINUTES" --init "$name" --max-steps "$MAX_STEPS" \
    --batch-size 256 --lr 7e-4 --data-dir "$DATA" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 &
done
python bench/train_sudoku.py --device "$DEVICE" --minutes "$MINUTES" --steps "${MAX_STEPS/#0/100000}" --batch-size 256 \
  --d-model 96 --layers 8 --hidden 192 --lr 5e-4 --warmup 50 --pool 20000 --init src/ddsm/resources/sudoku \
  --eval "$EVAL" --eval-steps 100 --out "$OUT/sudoku" > "$OUT/sudoku.log" 2>&1 &
wait
tail -n 3 "$OUT/dhs4.log" "$OUT/epd_promoters.log" "$OUT/sudoku.log"
tar -C "$OUT" -cf "$OUT/dna_models.tar" dhs4 epd_promoters && rm -rf "$OUT/dhs4" "$OUT/epd_promoters"
(cd "$OUT/sudoku" && rm -f model_raw.safetensors optimizer.safetensors train_state.json)
tar -C "$OUT" -cf "$OUT/sudoku_model.tar" sudoku && rm -rf "$OUT/sudoku"
ls -la "$OUT"
