#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The test runner behind `make test`: unit binaries, fuzz smoke runs,
# integration tests, then the data-path integration tests once more against
# weftd, weft-agent and weft-cni built with ASan+UBSan (WEFT_SAN_BUILD, default
# build-asan: `make B=build-asan CC=clang SANITIZE=address,undefined bins`). Each test
# exits 0 (pass), 77 (skip) or anything else (fail); under CI=true a skip is a
# failure, since CI has every dependency and a skip there is a test that
# silently stopped running. Ends with one "N passed, N failed[, N skipped]"
# line; exits 1 on any failure.
#
#   tests/run.sh [filter]     run only tests whose name contains filter
set -u
cd "$(dirname "$0")/.."
B=build
FILTER=${1:-}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-5}
LOGDIR=$B/test-logs
mkdir -p "$LOGDIR"
SAN_B=${WEFT_SAN_BUILD:-build-asan}
[[ $SAN_B == /* ]] || SAN_B=$PWD/$SAN_B
pass=0 fail=0 skip=0 failed=()

run() {	# name, command...
	local name=$1; shift
	[[ -n $FILTER && $name != *"$FILTER"* ]] && return
	local log=$LOGDIR/${name//\//_}.log t0=$SECONDS rc
	"$@" >"$log" 2>&1 </dev/null
	rc=$?
	local dt=$((SECONDS - t0))
	case $rc in
	0)  pass=$((pass + 1)); printf '  PASS  %-48s %3ds\n' "$name" "$dt" ;;
	77) if [[ ${CI:-} == true ]]; then
		fail=$((fail + 1)); failed+=("$name")
		printf '  FAIL  %-48s skipped, a failure under CI=true: %s\n' "$name" "$(tail -n1 "$log")"
	    else
		skip=$((skip + 1)); printf '  SKIP  %-48s %s\n' "$name" "$(tail -n1 "$log")"
	    fi ;;
	*)  fail=$((fail + 1)); failed+=("$name")
	    printf '  FAIL  %-48s %3ds (exit %d, log %s)\n' "$name" "$dt" "$rc" "$log"
	    tail -n 20 "$log" | sed 's/^/        | /' ;;
	esac
}

echo "unit tests"
for t in $(find $B/tests/unit -type f -executable -name 'test_*' | sort); do
	run "unit/${t#$B/tests/unit/}" "$t"
done

echo "fuzz smoke (${FUZZ_SMOKE_SECONDS}s each)"
for f in $(find $B/fuzz -maxdepth 1 -type f -executable -name 'fuzz_*' | sort); do
	n=$(basename "$f")
	work=$B/fuzz/smoke/$n
	rm -rf "$work" && mkdir -p "$work"
	# -error_exitcode=1: libFuzzer's default (77) would read as a skip.
	run "fuzz/$n" "$f" -max_total_time="$FUZZ_SMOKE_SECONDS" -timeout=10 -error_exitcode=1 \
		-rss_limit_mb=2048 "$work" "tests/fuzz/corpus/$n"
done

echo "integration tests"
for t in $(find tests/integration -maxdepth 1 -name 'test_*' | sort); do
	case $t in
	*.py) run "integration/$(basename "$t")" /usr/bin/python3 "$t" ;;
	*.sh) run "integration/$(basename "$t")" bash "$t" ;;
	esac
done

# san_test DIR command...: run a test of the sanitizer pass. Every sanitized
# process it starts (through cluster.sh, `ip netns exec` and cni_exec.py, which
# all pass the environment on) writes any report to DIR/report.<pid>, outside
# the cluster's state dir that `down` deletes. A report fails the test, and is
# printed last so that the failure summary shows its head.
# Leak checking is off: weftd and weft-agent exit on SIGTERM without tearing
# down their live pods, connections and registry watch (LeakSanitizer lists
# ~135 KB in ~100 allocations per weftd), which says nothing about leaks while
# running; those show as growth and have their own tests. ASAN_OPTIONS from
# the caller come last and win: ASAN_OPTIONS=detect_leaks=1 turns it on.
san_test() {
	local dir=$1 rc f reports
	shift
	rm -rf "$dir" && mkdir -p "$dir"
	ASAN_OPTIONS="log_path=$dir/report:detect_leaks=0:halt_on_error=1:abort_on_error=0:disable_coredump=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
	UBSAN_OPTIONS="log_path=$dir/report:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
	WEFT_BUILD=$SAN_B WEFT_SANITIZER=address,undefined "$@"
	rc=$?
	reports=$(find "$dir" -type f -size +0 | sort)
	[[ -z $reports ]] && return "$rc"
	for f in $reports; do
		echo "==== sanitizer report $f"
		cat "$f"
	done
	echo "==== $(wc -w <<<"$reports") sanitizer report(s) in $dir; the first:"
	cat $reports | grep -m1 -E 'ERROR: |runtime error: '
	head -n 12 "$(head -n1 <<<"$reports")" | grep -E '^ *#' | head -n 8
	return 1
}

if [[ -n ${WEFT_SAN_UNIT:-} ]]; then
	echo "unit tests (ASan+UBSan: $SAN_B)"
	for t in $WEFT_SAN_UNIT; do
		run "unit-asan/${t#tests/unit/}" san_test "$PWD/$LOGDIR/san/unit-$(basename "$t")" \
			"$SAN_B/$t"
	done
fi

echo "integration tests (ASan+UBSan: $SAN_B)"
for t in $(find tests/integration -maxdepth 1 -name 'test_dp_*.py' | sort); do
	n=$(basename "$t")
	run "integration-asan/$n" san_test "$PWD/$LOGDIR/san/${n%.py}" /usr/bin/python3 "$t"
done

if ((fail)); then
	echo "failed: ${failed[*]}"
fi
echo "$pass passed, $fail failed$( ((skip)) && echo ", $skip skipped")"
((fail == 0))
