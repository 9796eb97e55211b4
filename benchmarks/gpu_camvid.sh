#!/usr/bin/env bash
# The `camvid` preset on a GPU, trained on CamVid's train split without drive 0006R0 and scored on that drive
# (docs/camvid.md), for a remote GPU machine that takes at most 64 MiB of files with each command it runs, while
# CamVid's train split is 91 MB of PNGs. So the split goes in two halves, each an ignored folder of this
# repository, one with each of two commands sent one after the other (the machine keeps ignored folders between
# commands):
#
#     bash benchmarks/gpu_camvid.sh split ../shared/data/CamVid    # here: .camvid-a/, .camvid-b/ (45 and 49 MB)
#     first command, carrying .camvid-a:    bash benchmarks/gpu_camvid.sh check
#     second command, carrying .camvid-b:   OUT=/tmp/out bash benchmarks/gpu_camvid.sh train
#
# The first half can ride with another command (bash benchmarks/gpu_all.sh; bash benchmarks/gpu_camvid.sh check).
# Send the second command before the machine goes back when idle, or the first half goes with it.
#
# For a fresh run, remove runs/gpu-camvid/ and runs/gpu-camvid.log there first. `check` says which halves are there.
# `train` joins the halves into one CamVid root (links to their files) and runs `python -m minifcn.train --preset
# camvid` into runs/gpu-camvid/ (ignored, so kept between commands), with a timeout (TIMEOUT, 540 s); a run cut
# short there goes on from its last.npz at the next `train`. The log, the scores on the held-out drive
# (metrics.json) and the curves are copied to $OUT/camvid/. DEVICE (cuda) and ITERS (the preset's 4000) can be set,
# as for a short trial on a CPU: DEVICE=cpu ITERS=2 bash benchmarks/gpu_camvid.sh train.
set -uo pipefail
cd "$(dirname "$0")/.."
HALVES=(.camvid-a .camvid-b)

split() {  # split ROOT: the images of ROOT/train in two halves; labels and train.txt go with the second
    local root="$1"
    [ -f "$root/train.txt" ] || { echo "gpu_camvid.sh: error: $root has no train.txt (a CamVid root?)" >&2; exit 2; }
    rm -rf "${HALVES[@]}"
    mkdir -p .camvid-a/train .camvid-b/train .camvid-b/trainannot
    local images=("$root"/train/*.png) half
    half=$(((${#images[@]} + 1) / 2))
    cp "${images[@]:0:$half}" .camvid-a/train/
    cp "${images[@]:$half}" .camvid-b/train/
    cp "$root"/trainannot/*.png .camvid-b/trainannot/
    cp "$root/train.txt" .camvid-b/
    for h in "${HALVES[@]}"; do
        grep -qxF "/$h/" .git/info/exclude 2>/dev/null || echo "/$h/" >>.git/info/exclude
    done
    du -sh "${HALVES[@]}"
}

check() {  # the halves here, and their images
    local h
    for h in "${HALVES[@]}"; do
        if [ -d "$h/train" ]; then
            echo "$h: $(find "$h/train" -name '*.png' | wc -l) images"
        else
            echo "$h: missing"
        fi
    done
}

train() {
    check
    for h in "${HALVES[@]}"; do
        [ -d "$h/train" ] || { echo "gpu_camvid.sh: error: $h is missing; send it first" >&2; exit 2; }
    done
    local out="${OUT:-gpu-logs}/camvid" run=runs/gpu-camvid root resume=()
    root="$(mktemp -d)/CamVid"
    mkdir -p "$out" "$run" "$root/train" "$root/trainannot"
    ln -s "$PWD"/.camvid-a/train/*.png "$PWD"/.camvid-b/train/*.png "$root/train/"
    ln -s "$PWD"/.camvid-b/trainannot/*.png "$root/trainannot/"
    cp .camvid-b/train.txt "$root/"
    [ -f "$run/last.npz" ] && resume=(--resume "$run/last.npz") && echo "going on from $run/last.npz"
    local start=$SECONDS
    timeout --signal=INT --kill-after=10 "${TIMEOUT:-540}" "${PYTHON:-python3}" -m minifcn.train --preset camvid \
        --data-root "$root" --train-split train-without-0006R0 --val-split 0006R0 --device "${DEVICE:-cuda}" \
        ${ITERS:+--iters "$ITERS"} "${resume[@]}" --out "$run" >>"$run.log" 2>&1
    echo "camvid preset: exit $? in $((SECONDS - start)) s -> $out/camvid.log"
    cp "$run.log" "$out/camvid.log"
    cp "$run"/metrics.json "$run"/curves.png "$run"/log.csv "$out/" 2>/dev/null
    tail -n 20 "$out/camvid.log"
}

case "${1:-}" in
split) split "${2:?usage: gpu_camvid.sh split CAMVID_ROOT}" ;;
check) check ;;
train) train ;;
*)
    echo "usage: gpu_camvid.sh split CAMVID_ROOT | check | train" >&2
    exit 2
    ;;
esac
