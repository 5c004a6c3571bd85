#!/usr/bin/env bash
# One short GPU check of fiber_mmdet (under 8 minutes on one H200):
#   1. reference parity of the shipped fixtures on CUDA (tools/analysis_tools/reference_parity.py);
#   2. FIBER-B eval and training-step timings, memory and FLOP rate at 512x512 and 800x1333, fp32 and bf16
#      (tools/analysis_tools/benchmark.py, random weights, roberta-base sizes, nothing downloaded);
#   3. the LVIS-style timing: 1203 class names in prompts of 40 = 31 prompts per image
#      (tools/analysis_tools/benchmark_prompts.py).
#
# Usage (from the repository root):
#   bash tools/analysis_tools/gpu_check.sh [FIXTURES_DIR] [--dry-run]
#   FIXTURES_DIR, or $FIBER_REFERENCE_FIXTURES, or ../shared/fixtures/reference: the directory holding
#   tiny_v2/ and tiny_v3/ (config.json, checkpoint.pth, inputs.pth, outputs.pth). Without it the parity step
#   is skipped, loudly, and the summary says so (the timings still run).
#   --dry-run: check the arguments, print the commands and write the summary header, run nothing.
#
# Environment: OUT (default work_dirs/gpu_check) receives every log and figure: summary.txt (all figures),
#   parity_*.log, bench_*.json/.log, prompts.log. DEVICE (default cuda; cpu runs the same steps on the CPU,
#   slowly: with CONFIG=configs/_base_/models/fiber_tiny.py SIZES="96x128" it is a smoke test). CONFIG (default
#   configs/_base_/models/fiber_b.py), SIZES (default "512x512 800x1333"), AMPS (default "none bf16"),
#   REPEAT (default 5), PYTHON (default python).
#
# What the machine must already have (nothing is installed here; the device machine is bare and offline):
#   * torch with CUDA, and this repository installed: pip install -e . (+ requirements.txt);
#   * mmcv 2.x built WITH its CUDA ops (the deformable convolutions; a CPU-only mmcv wheel fails the first
#     check below: building mmcv with CUDA takes tens of minutes, do it before starting the lease);
#   * no hub access needed: the tokenizer is trained here in seconds (fiber_mmdet.utils.train_roberta_tokenizer).
set -euo pipefail

PYTHON=${PYTHON:-python}
OUT=${OUT:-work_dirs/gpu_check}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-configs/_base_/models/fiber_b.py}
SIZES=${SIZES:-"512x512 800x1333"}
AMPS=${AMPS:-"none bf16"}
REPEAT=${REPEAT:-5}
DRY_RUN=0
FIXTURES=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) FIXTURES="$arg" ;;
    esac
done
FIXTURES=${FIXTURES:-${FIBER_REFERENCE_FIXTURES:-}}
case "$FIXTURES" in
    "") ;;
    /*) ;;
    *) FIXTURES="$PWD/$FIXTURES" ;;  # relative to where the script was started
esac
cd "$(dirname "$0")/../.."
FIXTURES=${FIXTURES:-../shared/fixtures/reference}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
START=$(date +%s)
log() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$SUMMARY"; }
run() {  # run CMD..., its output to the log file named first; the dry run only prints the command
    local logfile="$1"; shift
    if [ "$DRY_RUN" = 1 ]; then
        echo "DRY-RUN: $* > $logfile" | tee -a "$SUMMARY"
        return 0
    fi
    "$@" > "$logfile" 2>&1
}

: > "$SUMMARY"
log "fiber_mmdet GPU check: device=$DEVICE config=$CONFIG sizes=[$SIZES] amps=[$AMPS] repeat=$REPEAT out=$OUT"
log "git: $(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"

# ---------------------------------------------------------------------------------------------- 0. environment
if [ "$DRY_RUN" = 0 ]; then
    if ! "$PYTHON" - "$DEVICE" >> "$SUMMARY" 2>&1 <<'EOF'
import sys
device = sys.argv[1]
import torch
print(f'torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}')
if device == 'cuda':
    if not torch.cuda.is_available():
        sys.exit('ERROR: torch sees no CUDA device (a CPU-only torch, or no GPU): install torch with CUDA')
    print('GPU:', torch.cuda.get_device_name(0))
try:
    import mmcv
    from mmcv.ops import ModulatedDeformConv2d, get_compiling_cuda_version
except ImportError as e:
    sys.exit(f'ERROR: mmcv with its compiled ops (mmcv, not mmcv-lite) is needed: {e}')
print(f'mmcv {mmcv.__version__}, ops compiled with CUDA {get_compiling_cuda_version()}')
if device == 'cuda':
    if get_compiling_cuda_version() in ('not available', ''):
        sys.exit('ERROR: mmcv was built without CUDA ops; rebuild it with CUDA (MMCV_WITH_OPS=1 FORCE_CUDA=1 '
                 'pip install mmcv==2.1.0 --no-binary mmcv) or install a wheel built for this torch/CUDA')
    dcn = ModulatedDeformConv2d(8, 8, 3, padding=1).cuda()
    x = torch.randn(1, 8, 16, 16, device='cuda')
    try:
        y = dcn(x, torch.zeros(1, 18, 16, 16, device='cuda'), torch.ones(1, 9, 16, 16, device='cuda'))
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - any failure here means the CUDA ops cannot run
        sys.exit(f'ERROR: mmcv deformable convolution does not run on CUDA: {e}')
    print('mmcv CUDA deformable convolution: ok', tuple(y.shape))
import fiber_mmdet  # noqa: F401
print('fiber_mmdet:', fiber_mmdet.__file__)
EOF
    then
        tail -3 "$SUMMARY"
        echo "gpu_check: the environment check failed (see above and $SUMMARY); nothing else was run" >&2
        exit 2
    fi
    tail -4 "$SUMMARY"
fi

# ---------------------------------------------------------------------------------------------- tokenizer
TOKENIZER="$OUT/tokenizer"
if [ "$DRY_RUN" = 0 ] && [ ! -f "$TOKENIZER/vocab.json" ]; then
    log "training an offline RoBERTa-style tokenizer into $TOKENIZER"
    "$PYTHON" -c "
import sys
from fiber_mmdet.utils import train_roberta_tokenizer
names = ' . '.join(f'category {i}' for i in range(1300))
text = ['person. bicycle. car. motorcycle. airplane. bus. train. truck. boat', names]
train_roberta_tokenizer(text * 20, sys.argv[1], vocab_size=1000)
" "$TOKENIZER"
fi

# ---------------------------------------------------------------------------------------------- 1. parity
PARITY_STATUS="skipped"
if [ -d "$FIXTURES" ] && ls "$FIXTURES"/*/outputs.pth > /dev/null 2>&1; then
    PARITY_STATUS=$([ "$DRY_RUN" = 1 ] && echo "not run (dry run)" || echo "passed")
    for fixture in "$FIXTURES"/*/; do
        name=$(basename "$fixture")
        log "parity: $name on $DEVICE"
        if run "$OUT/parity_$name.log" "$PYTHON" tools/analysis_tools/reference_parity.py "$fixture" --device "$DEVICE"; then
            [ "$DRY_RUN" = 1 ] || log "parity $name: $(grep 'checks passed' "$OUT/parity_$name.log" | tail -1)"
        else
            PARITY_STATUS="FAILED"
            log "parity $name: FAILED; worst rows:"
            grep -E 'FAIL|checks passed' "$OUT/parity_$name.log" | head -20 | tee -a "$SUMMARY" || true
        fi
    done
else
    log "WARNING: reference fixtures not found at '$FIXTURES' (give the directory holding tiny_v2/ and"
    log "WARNING: tiny_v3/ as the first argument or in FIBER_REFERENCE_FIXTURES): parity SKIPPED"
fi

# ---------------------------------------------------------------------------------------------- 2. timings
for size in $SIZES; do
    H=${size%x*}; W=${size#*x}
    for amp in $AMPS; do
        tag="${H}x${W}_${amp}"
        log "benchmark: $CONFIG ${H}x${W} amp=$amp"
        if run "$OUT/bench_$tag.log" "$PYTHON" tools/analysis_tools/benchmark.py "$CONFIG" --device "$DEVICE" \
            --size "$H" "$W" --amp "$amp" --repeat "$REPEAT" --boxes 5 --tokenizer "$TOKENIZER" \
            --json "$OUT/bench_$tag.json"; then
            [ "$DRY_RUN" = 1 ] || grep -E '^(phase|eval|train) ' "$OUT/bench_$tag.log" | tee -a "$SUMMARY"
        else
            log "benchmark $tag FAILED:"; tail -15 "$OUT/bench_$tag.log" | tee -a "$SUMMARY"
        fi
    done
done

# ---------------------------------------------------------------------------------------------- 3. prompts
log "LVIS-style prompts: 1203 names, 40 per prompt, 800x1333"
if run "$OUT/prompts.log" "$PYTHON" tools/analysis_tools/benchmark_prompts.py "$CONFIG" --device "$DEVICE" \
    --classes 1203 --chunk 40 --size 800 1333 --images 2 --plain-images 1; then
    [ "$DRY_RUN" = 1 ] || grep -E '^(config|\[)' "$OUT/prompts.log" | tee -a "$SUMMARY"
else
    log "benchmark_prompts FAILED:"; tail -15 "$OUT/prompts.log" | tee -a "$SUMMARY"
fi

log "parity: $PARITY_STATUS; all figures in $SUMMARY (JSON: $OUT/bench_*.json)"
[ "$PARITY_STATUS" != "FAILED" ]
