# Developer commands. `test-all` is exactly what CI runs (.ci/run).

default:
    @just --list

# Run the chat demo (native protocol) on 127.0.0.1:3000.
demo:
    cargo run --example chat

# Run the STOMP chat (Spring-style: rooms, private messages, /app/echo) on 127.0.0.1:3002 (needs `npm ci --prefix tests/browser`: the page's scripts).
stomp:
    cargo run --example stomp

# Compare the transports on one page at 127.0.0.1:3001 (needs `npm ci --prefix tests/browser`: sockjs-client).
compare:
    cargo run --release --example compare -- --sockjs-client tests/browser/node_modules/sockjs-client/dist/sockjs.min.js

# Workspace tests, without the #[ignore]d ones that test-all also runs.
test:
    cargo test --workspace

# Everything CI checks: installs prerequisites, then lint and every test.
test-all:
    bash tests/run-all.sh

# Formatting and clippy, as strict as CI.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Load test with 1000 subscribers (release build).
bench:
    cargo run --release --example load -- --subscribers 1000

# Fan-out over every transport (SockJS and native) with 1000 subscribers, against the baseline.
bench-all:
    cargo run --release --example load -- --transport all --subscribers 1000 --messages 10000 --retention 20000

# Redraw docs/benchmarks/*.svg from docs/benchmarks/results.jsonl.
bench-charts:
    cargo run --example load-charts -- docs/benchmarks/results.jsonl docs/benchmarks

# Fuzz the parsers that read client bytes for a while (needs nightly and `cargo install cargo-fuzz`).
fuzz seconds="60":
    cd crates/tidings-core/fuzz && cargo +nightly fuzz run client_payload -- -max_total_time={{seconds}}
    cd crates/tidings-core/fuzz && cargo +nightly fuzz run escape -- -max_total_time={{seconds}}
    cd crates/tidings-core/fuzz && cargo +nightly fuzz run position -- -max_total_time={{seconds}}
    cd crates/tidings-core/fuzz && cargo +nightly fuzz run stomp -- -max_total_time={{seconds}}
