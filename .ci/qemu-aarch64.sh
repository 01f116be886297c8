#!/usr/bin/env bash
# .ci/qemu-aarch64.sh: the aarch64 kernel matrix under qemu-user, beyond `make test` of .ci/run:
# test_kernels on a CPU with every feature (max: neon + dot), a dotprod CPU without i8mm
# (Cortex-A76, as a Pi 5) and an Armv8.0 CPU (Cortex-A53: dot must be detected absent), each
# with a few seeds; then the end-to-end goldens with each level forced (VLM_ISA) on max.
# Expects the cross build done (make CROSS=aarch64-linux-gnu-). Never a timing: qemu is not one.
set -euo pipefail
cd "$(dirname "$0")/.."

B=${B:-build-aarch64}
QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS"; }

for cpu in max cortex-a76 cortex-a53; do
    for seed in 20240611 1 2; do
        step "test_kernels -cpu $cpu seed $seed"
        "${QEMU[@]}" -cpu "$cpu" "$B/tests/test_kernels" "$seed" 2>&1 | tail -n 4
    done
done

step "levels detected per CPU"
for cpu in max cortex-a76 cortex-a72 cortex-a53; do
    printf '%-11s ' "$cpu"
    "${QEMU[@]}" -cpu "$cpu" "$B/tests/test_kernels" | grep '^levels available'
done
# The Armv8.0 CPUs must not report dot, the dotprod ones must.
"${QEMU[@]}" -cpu cortex-a53 "$B/tests/test_kernels" | grep -q '^levels available: ref neon$'
"${QEMU[@]}" -cpu cortex-a76 "$B/tests/test_kernels" | grep -q '^levels available: ref neon dot$'

for isa in neon ref; do
    step "test_e2e -cpu max VLM_ISA=$isa"
    VLM_ISA=$isa "${QEMU[@]}" -cpu max "$B/tests/test_e2e" 2>&1 | tail -n 5
done

step "done"
