#!/usr/bin/env bash
# The one command that checks everything: installs what the tests need, then runs the same
# lint and test steps CI does. Safe to re-run; installs are skipped when already done.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
repo_root="$PWD"

current_step="startup"
step() {
  current_step="$1"
  printf '\n==> %s\n' "$1"
}
# Name the failed step last, so it is the first thing a reader of a long CI log sees.
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    printf '\nrun-all.sh: FAILED at step "%s" (exit %d)\n' "$current_step" "$rc" >&2
  fi
}
trap on_exit EXIT

die() {
  printf 'run-all.sh: %s\n' "$1" >&2
  exit 1
}

step "disk"
# A clean build of the workspace and its tests takes several GB under target/.
df -h "$repo_root" | tail -n 1
free_kb=$(df -Pk "$repo_root" | awk 'NR == 2 { print $4 }')
if ((free_kb < 8 * 1024 * 1024)); then
  printf 'run-all.sh: warning: only %s KiB free; the build may run out of disk\n' "$free_kb" >&2
fi

step "system packages (chromium, redis-server, python3-venv)"
apt_packages=()
[[ -x /usr/bin/chromium ]] || apt_packages+=(chromium)
command -v redis-server >/dev/null || apt_packages+=(redis-server)
# redis-cli (Debian's redis-tools) joins the test Redis Cluster's nodes.
command -v redis-cli >/dev/null || apt_packages+=(redis-tools)
# stomp.py runs in a virtual environment of its own (below), made by a Python with venv and
# ensurepip: the one on PATH, else Debian's (python3-venv).
venv_python() {
  local candidate
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}
[[ -n "$(venv_python)" ]] || apt_packages+=(python3 python3-venv)
if ((${#apt_packages[@]} == 0)); then
  echo "already installed"
else
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root or sudo to apt-get install ${apt_packages[*]}"
    sudo=(sudo)
  fi
  # Wait for, rather than fail on, another apt process holding the dpkg lock.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends "${apt_packages[@]}"
fi

step "node packages (tests/browser)"
command -v npm >/dev/null || die "npm not found; install Node.js 20 or later"
browser_dir="$repo_root/tests/browser"
# npm ci rewrites node_modules/.package-lock.json, so a lock file newer than it means the
# installed tree is stale.
if [[ ! -d "$browser_dir/node_modules" ||
  "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]]; then
  (cd "$browser_dir" && npm ci --no-audit --no-fund)
else
  echo "up to date"
fi

step "python packages (tests/stomp-py)"
stomp_py_dir="$repo_root/tests/stomp-py"
venv="$stomp_py_dir/.venv"
# The stamp is written after a complete install, so a requirements file newer than it (or an
# install cut off half way) means installing again.
if [[ ! -f "$venv/installed" || "$stomp_py_dir/requirements.txt" -nt "$venv/installed" ]]; then
  rm -rf "$venv"
  "$(venv_python)" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$stomp_py_dir/requirements.txt"
  touch "$venv/installed"
else
  echo "up to date"
fi
export TIDINGS_PYTHON="$venv/bin/python"

export TIDINGS_CHROMIUM="${TIDINGS_CHROMIUM:-/usr/bin/chromium}"
export TIDINGS_NODE_MODULES="$browser_dir/node_modules"

# A broken browser install otherwise surfaces as a timeout deep inside a Rust test.
step "browser smoke test"
node "$browser_dir/smoke.mjs"

# The browser client's TypeScript declarations describe a typical use of it, and the client
# itself type-checks against its JSDoc.
step "TypeScript: tidings.d.ts and tidings.js"
"$browser_dir/node_modules/.bin/tsc" -p "$browser_dir/tsconfig.types.json"
"$browser_dir/node_modules/.bin/tsc" --noEmit --strict --allowJs --checkJs --target es2022 \
  --module es2022 --lib es2022,dom crates/tidings/src/routes/tidings.js

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace --all-targets -- --include-ignored"
cargo test --workspace --all-targets -- --include-ignored

# The same transport suites again on the Redis store (a redis-server the tests start), so every
# transport is known to work when its session lives in Redis.
step "transport suites on RedisStore (TIDINGS_TEST_STORE=redis)"
TIDINGS_TEST_STORE=redis cargo test -p tidings-tests \
  --test websocket --test native --test sockjs_http --test sockjs_static --test stomp \
  --test dead_clients --test offline --test client

# And on a Redis Cluster of three shards (redis-server processes the tests start and join with
# redis-cli --cluster create), where the store's keys share one slot and appends are announced
# with sharded pub/sub.
step "transport suites and examples/cluster on RedisStore over Redis Cluster (TIDINGS_TEST_STORE=redis-cluster)"
TIDINGS_TEST_STORE=redis-cluster cargo test -p tidings-tests \
  --test websocket --test native --test sockjs_http --test stomp --test offline --test client
TIDINGS_TEST_STORE=redis-cluster cargo test -p tidings-tests \
  --test cluster --test browser_cluster -- --include-ignored

# The protocol suite's tests (the SockJS HTTP, static and WebSocket suites) once more, against
# three nodes of examples/cluster --app echo on one redis-server, behind the cluster's
# round-robin balancer: every request of a session reaches another node than the one before.
step "SockJS suite through three nodes on Redis (examples/cluster --app echo)"
cargo build -p tidings-examples --example cluster
cluster_dir="$(mktemp -d)"
cluster_pids=()
stop_cluster() {
  ((${#cluster_pids[@]} == 0)) || kill "${cluster_pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$cluster_dir"
}
trap 'stop_cluster; on_exit' EXIT
redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$cluster_dir" --save '' \
  --appendonly no >"$cluster_dir/redis.log" 2>&1 &
cluster_pids+=($!)
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
target/debug/examples/cluster --app echo --nodes 3 --addr 127.0.0.1:0 \
  --redis "redis://127.0.0.1:$redis_port/" >"$cluster_dir/cluster.out" 2>&1 &
cluster_pids+=($!)
balancer=""
for _ in $(seq 100); do
  balancer="$(sed -n 's|^cluster of 3 echo nodes on http://\([^/]*\)/.*|\1|p' "$cluster_dir/cluster.out")"
  [[ -n "$balancer" ]] && break
  sleep 0.1
done
[[ -n "$balancer" ]] || die "the cluster did not start: $(cat "$cluster_dir/cluster.out")"
TIDINGS_TEST_SOCKJS_AT="$balancer" INSTA_UPDATE=no cargo test -p tidings-tests \
  --test sockjs_http --test sockjs_static --test websocket
stop_cluster
cluster_pids=()
trap on_exit EXIT

# --all-targets does not include doctests.
step "cargo test --workspace --doc"
cargo test --workspace --doc

current_step="done"
printf '\n==> all checks passed\n'
