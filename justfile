# profile-import development recipes. `just` lists them.

default:
    @just --list

# README command 1: import samples/users.csv into the built-in simulator, end to end
demo:
    cargo run --release -- demo

# README command 2: the whole test suite
test:
    cargo test

# Formatting and lints, as CI runs them
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# What CI runs
ci: lint test

# cargo-mutants is installed if missing. The files, the exclusions with their reasons and the
# tests each mutant runs are in .cargo/mutants.toml; two mutants at a time; the results land in
# mutants.out/. Narrow it with a name regex: `just mutants -F sync.rs`.
# Mutation testing (about 40 min on 2 cores) of the modules where a mistake loses rows, sends wrong values or burns quota
mutants *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! cargo mutants --version >/dev/null 2>&1; then
        cargo install --locked cargo-mutants
    fi
    cargo mutants --jobs 2 {{ARGS}}

# Validate the samples without sending anything
dry-run-samples:
    -cargo run --release -- import samples/users.csv --dry-run
    -cargo run --release -- import samples/users-with-errors.csv --dry-run --failures /tmp/users-with-errors.failures.csv
    -cargo run --release -- import samples/export-with-mapping.csv --delimiter ';' --mapping samples/mapping.toml --dry-run

# Serve the simulator on loopback for a rehearsal (Ctrl-C prints what it saw)
sim *ARGS:
    cargo run --release -- sim {{ARGS}}

# Dry run vs parse-only baseline at 1 M rows (median of 5 runs: rows/s, peak RSS), and 5 M rows
bench-dry-run:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --quiet --bin profile-import --example gen_profiles --example parse_only
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    measure() { # label rows runs cmd...
        local label=$1 rows=$2 runs=$3; shift 3
        : > "$dir/times"
        for _ in $(seq "$runs"); do
            # Wall time from the nanosecond clock (time's %e has 10 ms steps); peak RSS from time.
            start=$(date +%s%N)
            /usr/bin/time -f "%M" -o "$dir/time" "$@" >/dev/null 2>&1 || true
            end=$(date +%s%N)
            echo "$(( (end - start) / 1000 )) $(cat "$dir/time")" | awk '{ printf "%.4f %s\n", $1 / 1e6, $2 }' >> "$dir/times"
        done
        sort -n "$dir/times" | awk -v l="$label" -v r="$rows" -v n="$runs" '
            { s[NR] = $1; k[NR] = $2 }
            END { m = s[int((n + 1) / 2)]; kb = 0; for (i = 1; i <= NR; i++) if (k[i] > kb) kb = k[i];
                  printf "%-28s %9d rows %7.3f s %12.0f rows/s %7.1f MB peak RSS  (median of %d)\n", l, r, m, (m > 0 ? r / m : 0), kb / 1024, n
                  print m > "'"$dir/median"'" }'
    }
    for rows in 1000000 5000000; do
        runs=5; [ "$rows" -gt 1000000 ] && runs=1
        target/release/examples/gen_profiles "$rows" "$dir/in.csv"
        sync  # let the fresh file's writeback finish before timing reads of it
        echo "── $rows rows, $(du -h "$dir/in.csv" | cut -f1) (8 profile columns) ──"
        measure "parse-only (csv ByteRecord)" "$rows" "$runs" target/release/examples/parse_only "$dir/in.csv"
        parse=$(cat "$dir/median")
        measure "dry run" "$rows" "$runs" target/release/profile-import -q import "$dir/in.csv" --dry-run --failures "$dir/f.csv"
        awk -v p="$parse" -v d="$(cat "$dir/median")" 'BEGIN { printf "dry run rows/s ÷ parse-only rows/s = %.2f\n", (d > 0 ? p / d : 0) }'
    done
    echo "targets: dry run >= 1/3 of parse-only rows/s; peak RSS <= 64 MB at 1 M rows and flat at 5 M"

# 6,000 rows to the simulator at the default rate, 20-80 ms and 200-600 ms latency, next to a bare
# reqwest loop (the CPU floor: the same requests and nothing else) and a naive per_second loop
bench-send:
    cargo build --release --quiet --bin profile-import --example send_bench
    target/release/examples/send_bench 6000 20-80
    target/release/examples/send_bench 6000 200-600

# Pacing at other quotas against the simulator, beside naive per_second(rate): a. --rate = limit at
# 50/200/1,000/3,000 per second and 1-5/20-80/200-600 ms; b. --rate 5,000 and 100,000 against 200/s;
# c. one throttle at the limit, and a limit that falls and comes back. Pass parts or rates to narrow it.
bench-rates *ARGS:
    cargo build --release --quiet --bin profile-import --example rates_bench
    target/release/examples/rates_bench {{ARGS}}

# Change-only sync of 1 M rows with 1 % changed: whole sync wall time, and its local pass next to a dry run
bench-sync:
    cargo build --release --quiet --bin profile-import --example gen_profiles --example sync_bench
    target/release/examples/sync_bench 1000000 1

# --changes-only of 1 M rows (1 % changed) against a simulator already holding the import: wall time, requests by command, peak RSS, next to --state
bench-changes:
    cargo build --release --quiet --bin profile-import --example gen_profiles --example changes_bench
    target/release/examples/changes_bench 1000000 1

# verify of 1 M users Chat holds, at Chat's limits: wall time, portrait_get calls, peak RSS, beside
# the floor those limits set and --changes-only's reads of the same file. Pass ROWS and an earlier
# build's binary to measure its verify too (before/after).
bench-verify *ARGS:
    cargo build --release --quiet --bin profile-import --example gen_profiles --example verify_bench
    target/release/examples/verify_bench {{ARGS}}

# 1 M Nick+Image rows through --batch-nick-image at the default rates: wall time, requests by command, peak RSS, beside portrait_set's rows ÷ 200/s
bench-batch:
    cargo build --release --quiet --bin profile-import --example batch_bench
    target/release/examples/batch_bench 1000000
