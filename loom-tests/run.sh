#!/usr/bin/env bash
# Model-check shmqueue with loom, then show that each deliberate mutation is
# rejected. Usage: loom-tests/run.sh [--deep]
#   default (CI):  SPSC at LOOM_MAX_PREEMPTIONS=4 (~35 s), MPMC, bytes, broadcast
#                  and async at 3 (the async file alone: 3.5 min on a loaded
#                  2-core machine, since the broadcast and byte-ring models)
#   --deep:        SPSC at 5 (~5 min), MPMC at 4 (~5 min), for release checks
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg shmqueue_loom"
export CARGO_TARGET_DIR=target/loom
spsc_bound=4
mpmc_bound=3
if [ "${1:-}" = "--deep" ]; then
    spsc_bound=5
    mpmc_bound=4
fi

run() { # bound test-file [cargo args...]
    local bound=$1 file=$2
    shift 2
    LOOM_MAX_PREEMPTIONS=$bound cargo test --release -p loom-tests --test "$file" "$@"
}

echo "== loom: SPSC and waiting protocol (LOOM_MAX_PREEMPTIONS=$spsc_bound)"
SHMQ_MUTATION= run "$spsc_bound" spsc
echo "== loom: MPMC (LOOM_MAX_PREEMPTIONS=$mpmc_bound)"
SHMQ_MUTATION= run "$mpmc_bound" mpmc
echo "== loom: byte ring (LOOM_MAX_PREEMPTIONS=$mpmc_bound)"
SHMQ_MUTATION= run "$mpmc_bound" bytes
echo "== loom: broadcast (LOOM_MAX_PREEMPTIONS=$mpmc_bound)"
SHMQ_MUTATION= run "$mpmc_bound" broadcast
echo "== loom: async waits through the waiter thread (LOOM_MAX_PREEMPTIONS=$mpmc_bound)"
SHMQ_MUTATION= run "$mpmc_bound" aio

# Each mutation is a known bug compiled in through build.rs; loom must fail.
# file:mutation[:test] - the optional test name limits the run to the model
# that targets the mutation, where the file's others would only add time.
failed=0
for m in spsc:relaxed_publish spsc:no_waiter_fence spsc:wake_before_publish mpmc:skip_live_claimant mpmc:vyukov_seq bytes:bytes_relaxed_publish \
    broadcast:bcast_no_gate broadcast:bcast_no_recheck broadcast:bcast_evict_live \
    broadcast:bcast_no_join_check aio:async_no_recheck:pop_async_against_push \
    aio:async_no_recheck:broadcast_recv_async_against_publish; do
    file=${m%%:*}
    rest=${m#*:}
    name=${rest%%:*}
    filter=()
    if [ "$rest" != "$name" ]; then
        filter=("${rest#*:}")
    fi
    echo "== loom must reject mutation: $name (tests/$file.rs${filter:+ ${filter[0]}})"
    if SHMQ_MUTATION=$name run 3 "$file" "${filter[@]}" >"target/loom-$name.log" 2>&1; then
        echo "MUTATION SURVIVED: $name (loom found nothing; see target/loom-$name.log)" >&2
        failed=1
    else
        grep -m1 -oE "Causality violation[^.]*|deadlock|assertion[^:]*" "target/loom-$name.log" || true
        echo "rejected: $name"
    fi
done
# Rebuild the unmutated library so later builds do not reuse a mutant.
SHMQ_MUTATION= cargo build --release -p loom-tests >/dev/null 2>&1 || true
exit $failed
