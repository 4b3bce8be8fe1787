#!/usr/bin/env bash
# Every figure the README's GPU claims need, in one run of under 8 minutes on one GPU:
#   1. VGG-16 and ResNet-20 epoch times: fp32, bf16 + channels_last, and torch.compile (benchmarks/gpu_epoch.py);
#   2. the harness ratio: training with ltspec's checkpoint policy against a bare loop (benchmarks/harness_overhead.py);
#   3. a real `ltspec run` of a small CIFAR-shaped synthetic spec on the device: masks hold, R_p on the device equals
#      R_p on the CPU, resume after SIGKILL (benchmarks/device_run.py run);
#   4. the local runner's packing: 8 ResNet-20 stages at 1, 2, 4 and 8 per GPU, stage-epochs per second, records
#      against one at a time (bit-identical with resources.deterministic), and with several GPUs the spread over
#      them (benchmarks/device_run.py local);
#   5. Ray packing: 4 ResNet-20 stages one at a time against four to a GPU (benchmarks/device_run.py pack).
#
#   bash benchmarks/device_check.sh                      # on the GPU
#   bash benchmarks/device_check.sh --device cpu --quick # the same steps, small, on a CPU: checks that it runs
#
# Run from the repository root with ltspec importable (its venv active). Exit status: the number of failed steps.
set -u
device=cuda
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "usage: $0 [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python}
failures=0
step() {  # step NAME COMMAND...: run it, timed, and count a failure
    local name="$1"; shift
    local start=$SECONDS
    echo "== $name"
    "$@" || { failures=$((failures + 1)); echo "!! $name failed"; }
    echo "   ($((SECONDS - start)) s)"
}

if [ "$quick" = 1 ]; then
    epoch_args=(--images 64 --epochs 1)
    compile_args=(--images 64 --epochs 1)
    harness_args=(--epochs 3 --repeats 1 --batches 2 --batch-size 8)
else
    epoch_args=(--images 50000 --epochs 2)
    compile_args=(--images 10000 --epochs 2)
    harness_args=(--epochs 6 --repeats 3 --batches 30 --batch-size 128 --threads 4)
fi
quick_flag=()
[ "$quick" = 1 ] && quick_flag=(--quick)

"$python" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
for arch in vgg16 resnet20; do
    step "$arch epoch, fp32 and bf16 + channels_last" "$python" benchmarks/gpu_epoch.py --device "$device" --arch "$arch" "${epoch_args[@]}"
done
step "resnet20 epoch, torch.compile" "$python" benchmarks/gpu_epoch.py --device "$device" --arch resnet20 --compile "${compile_args[@]}"
[ "$quick" = 1 ] || step "vgg16 epoch, torch.compile" "$python" benchmarks/gpu_epoch.py --device "$device" --arch vgg16 --compile "${compile_args[@]}"
step "harness against a bare loop (VGG-16 state, short epochs)" "$python" benchmarks/harness_overhead.py --device "$device" "${harness_args[@]}"
step "ltspec run on $device: masks, R_p, resume" "$python" benchmarks/device_run.py run --device "$device" "${quick_flag[@]}"
step "local runner packing, 1/2/4/8 ResNet-20 stages per GPU" "$python" benchmarks/device_run.py local --device "$device" "${quick_flag[@]}"
step "Ray packing, 1 vs 4 ResNet-20 stages" "$python" benchmarks/device_run.py pack --device "$device" "${quick_flag[@]}"
echo "device check: $failures step(s) failed"
exit "$failures"
