#!/usr/bin/env bash
# `make test`'s check of the standalone start: a crate made by `dohost new` outside the
# repository builds, its test (on dohost-testing, with virtual time and an alarm) passes,
# and `dohost run` serves it. Uses the dohost binary `cargo test` built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dohost="$root/target/debug/dohost"
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$dohost" new hello-todos --path "$work/hello-todos"
cd "$work/hello-todos"
# The checkout's lock file: the dependency versions its own tests ran with.
cp "$root/Cargo.lock" .
export CARGO_TARGET_DIR="$root/target"
cargo test-host
cargo build --release
component="$CARGO_TARGET_DIR/wasm32-wasip2/release/hello_todos.wasm"

"$dohost" run --listen 127.0.0.1:0 --data "$work/data" --admin off "$component" \
    2> "$work/log" &
pid=$!
addr=
for _ in $(seq 600); do
    addr=$(sed -n 's/.*dohost is serving.*address=\([0-9.:]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/log"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "dohost never said it was serving"; cat "$work/log"; exit 1; }
id=$(curl -fsS -X POST "http://$addr/hello_todos/mine/todos" -d 'try dohost')
[ "$id" = 1 ] || { echo "expected id 1, got $id"; exit 1; }
curl -fsS "http://$addr/hello_todos/mine/todos/1" | grep -q '"try dohost"'
# The SDK's compile-time diagnostics, rather than linker errors: a build for this machine,
# and a second object in the crate.
if cargo build --target host-tuple --lib 2> "$work/native.log"; then
    echo "a native build of an object crate was not refused"; exit 1
fi
grep -q "is a WebAssembly component" "$work/native.log" || { cat "$work/native.log"; exit 1; }
cat >> src/lib.rs <<'RUST'

#[durable_object]
pub struct Second {
    state: State,
}
RUST
if cargo build --release 2> "$work/second.log"; then
    echo "a second #[durable_object] in one crate was not refused"; exit 1
fi
grep -q "a component exports one Durable Object class" "$work/second.log" || { cat "$work/second.log"; exit 1; }
echo "dohost new: the generated crate builds, passes its test and is served; mistakes are refused clearly"
