# The project's commands. `make run` and `make test` do all set-up on a fresh machine with
# the Rust toolchain (rustup) installed.

GUESTS      := counter counter-v2 storage-demo bank alarm worker rate-limiter lock chat-room notifications connection-pool test-object todos sql-bench
EXAMPLES    := counter storage-demo bank alarm rate-limiter lock chat-room notifications connection-pool todos
# Built with componentize-js on the SDK in sdk-js/ (see their rule below).
JS_GUESTS   := counter-js rate-limiter-js test-object-js
GUEST_OUT   := target/guests
GUEST_BUILD := target/guests-build
WASM_TARGET := wasm32-wasip2
LISTEN      ?= 127.0.0.1:8787
DATA        ?= data

TORTURE_CYCLES ?= 100
FUZZ_CASES     ?= 1000000
SOAK_SECS      ?= 3600

.PHONY: torture fuzz soak run cluster test test-deps build-deps bench bench-deps guests rust-guests build wasm-target browser-deps lint clean componentize-py py-bindings sdk-types

COMPONENTIZE_PY := 0.25.1

## Serve the example objects on $(LISTEN) (data in ./$(DATA)).
run: guests build
	./target/release/dohost run --listen $(LISTEN) --data $(DATA) \
		$(foreach g,$(EXAMPLES),$(GUEST_OUT)/$(g).wasm)

## A local three-node cluster (its own etcd and PostgreSQL in a temp dir) serving the
## examples on 127.0.0.1:8787-8789; Ctrl-C stops everything it started.
cluster: test-deps guests build
	scripts/cluster.sh $(foreach g,$(EXAMPLES),$(GUEST_OUT)/$(g).wasm)

## The whole test suite.
test: test-deps guests browser-deps
	cargo test --workspace
	@# The SDK's unit tests (its pure parts: the router) and doc examples, built for the
	@# host (wit-bindgen stubs the imports there); no doc example runs, since only the host
	@# can answer an object's imports.
	cargo test --manifest-path sdk/Cargo.toml --target-dir target/sdk-host
	@# A crate made by `dohost new` outside the repository: builds, passes its test, runs.
	scripts/new-crate.sh

## curl for the README quick-start test, PostgreSQL 15 (server and psql) and etcd for the
## tests that run on them (they start their own servers from temp dirs), and protoc, which
## the etcd client's build needs (Debian packages).
test-deps: build-deps
	@command -v curl >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq curl >/dev/null; }
	@[ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/psql ] || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null; }
	@command -v etcd >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq etcd-server >/dev/null; }

## protoc: the etcd client compiles etcd's .proto files when the host builds.
build-deps:
	@command -v protoc >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq protobuf-compiler >/dev/null; }

## Debian's Chromium and the pinned Playwright driver for the browser test.
browser-deps:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@[ -d tests/browser/node_modules/playwright-core ] || \
		npm ci --prefix tests/browser --no-audit --no-fund

## dohost against workerd and a bare axum server, one table (see bench/RESULTS.md).
## BENCH_ARGS passes options through, e.g. BENCH_ARGS="--duration 3".
bench: build-deps guests bench-deps bench/workerd/build/counter.js
	cargo build --release -p dohost -p dohost-bench
	./target/release/dohost-bench $(BENCH_ARGS)

## kill -9 under load, TORTURE_CYCLES times (100): appends by request and by alarm, bank
## transfers, counters and WebSockets; prints cycles, acknowledged operations and
## violations (none allowed). `make test` runs 10 cycles.
torture: test-deps guests
	DOHOST_TORTURE_CYCLES=$(TORTURE_CYCLES) cargo test -p dohost --test torture -- --nocapture

## Property-based fuzzing of the edge, IDs, the config file, migration histories,
## WebSocket messages and the storage imports: FUZZ_CASES cases (1,000,000) from a fresh
## seed, printed (DOHOST_FUZZ_SEED=N to replay one). `make test` runs 3,000 from a fixed
## seed.
fuzz: test-deps guests
	@seed=$${DOHOST_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "fuzz: $(FUZZ_CASES) cases, seed $$seed"; \
	DOHOST_FUZZ_CASES=$(FUZZ_CASES) DOHOST_FUZZ_SEED=$$seed cargo test -p dohost --test fuzz

## SOAK_SECS (an hour) of mixed load: increments over 5,000 objects, alarms, 2,000
## WebSockets, hostile guests; prints RSS, open fds and p99 every 10 s and fails when the
## RSS keeps growing after warm-up. `make test` runs 20 s at a tenth of the size.
soak: test-deps guests
	DOHOST_SOAK_SECS=$(SOAK_SECS) cargo test -p dohost --test soak -- --nocapture

## wrk and PostgreSQL 15 from Debian's packages; workerd and esbuild from npm (pinned in
## bench/package-lock.json).
bench-deps:
	@command -v wrk >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }
	@# Each live instance needs ~10 memory mappings; Linux's default cap is 65,530 and the
	@# scale table keeps 100,000 objects live.
	@[ "$$(cat /proc/sys/vm/max_map_count)" -ge 1100000 ] || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO sysctl -q -w vm.max_map_count=1100000; }
	@[ -x bench/node_modules/@cloudflare/workerd-linux-64/bin/workerd ] || \
		npm ci --prefix bench --no-audit --no-fund
	@# The PostgreSQL rows start a server of their own.
	@[ -x /usr/lib/postgresql/15/bin/initdb ] || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15 >/dev/null; }
	@# The cluster rows start an etcd of their own.
	@command -v etcd >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq etcd-server >/dev/null; }

## The seed's Counter is TypeScript; workerd runs JavaScript, so esbuild strips the types.
bench/workerd/build/counter.js: bench/workerd/counter.ts
	@[ -x bench/node_modules/.bin/esbuild ] || npm ci --prefix bench --no-audit --no-fund
	bench/node_modules/.bin/esbuild $< --format=esm --log-level=warning --outfile=$@

## Build every guest into target/guests/<folder>.wasm.
guests: rust-guests $(GUEST_OUT)/counter-py.wasm $(GUEST_OUT)/chat-room-py.wasm \
	$(GUEST_OUT)/test-object-py.wasm $(JS_GUESTS:%=$(GUEST_OUT)/%.wasm)

rust-guests: wasm-target
	cargo build --release --target $(WASM_TARGET) --manifest-path guests/Cargo.toml \
		--target-dir $(GUEST_BUILD)
	@mkdir -p $(GUEST_OUT)
	@for g in $(GUESTS); do \
		cp $(GUEST_BUILD)/$(WASM_TARGET)/release/$$(echo $$g | tr - _).wasm $(GUEST_OUT)/$$g.wasm; \
	done
	@echo "guests built into $(GUEST_OUT)/"

## The Python guests, on the SDK in sdk-python/, built with componentize-py (installed from
## PyPI, pinned, if missing).
PY_SDK := $(wildcard sdk-python/*.py sdk-python/dohost/*.py)

componentize-py:
	@componentize-py --version 2>/dev/null | grep -q "$(COMPONENTIZE_PY)" || \
		python3 -m pip install --quiet "componentize-py==$(COMPONENTIZE_PY)"

$(GUEST_OUT)/counter-py.wasm: guests/counter-py/app.py $(PY_SDK) wit/dohost.wit | componentize-py
	@mkdir -p $(GUEST_OUT)
	componentize-py -d wit -w object componentize -p guests/counter-py -p sdk-python app -o $@

$(GUEST_OUT)/test-object-py.wasm: guests/test-object-py/app.py $(PY_SDK) wit/dohost.wit | componentize-py
	@mkdir -p $(GUEST_OUT)
	componentize-py -d wit -w object componentize -p guests/test-object-py -p sdk-python app -o $@

## Types of the WIT bindings for editors: Python's (typed modules, in target/py-bindings,
## for an editor's path beside sdk-python/) and JavaScript's (.d.ts, in sdk-js/wit-types,
## beside the SDK's own sdk-js/dohost.d.ts); each component generates its own when built.
sdk-types: py-bindings
	@[ -d guests/counter-js/node_modules/@bytecodealliance/componentize-js ] || \
		npm ci --prefix guests/counter-js --no-audit --no-fund
	node sdk-js/gen-types.mjs

py-bindings: componentize-py
	@# componentize-py refuses to write over what it wrote before.
	rm -rf target/py-bindings
	componentize-py -d wit -w object bindings target/py-bindings

## The Python chat room serves the Rust chat room's page, made into a module here.
$(GUEST_OUT)/chat-room-py.wasm: guests/chat-room-py/app.py guests/chat-room/src/page.html $(PY_SDK) wit/dohost.wit | componentize-py
	@mkdir -p $(GUEST_OUT) $(GUEST_BUILD)/chat-room-py
	python3 -c 'import json, sys; print("PAGE = " + json.dumps(open(sys.argv[1]).read()))' \
		guests/chat-room/src/page.html > $(GUEST_BUILD)/chat-room-py/page.py
	componentize-py -d wit -w object componentize -p guests/chat-room-py \
		-p $(GUEST_BUILD)/chat-room-py -p sdk-python app -o $@

## The JavaScript guests, on the SDK in sdk-js/, built with componentize-js (npm, pinned in
## guests/counter-js/package-lock.json). componentize-js loads only modules under its working
## directory, so it runs from the repository root, where ../../sdk-js/dohost.js resolves.
# (Second expansion: a guest's source is guests/NAME-js/NAME.js, the stem twice.)
.SECONDEXPANSION:
$(JS_GUESTS:%=$(GUEST_OUT)/%.wasm): $(GUEST_OUT)/%-js.wasm: guests/$$*-js/$$*.js sdk-js/dohost.js guests/counter-js/package-lock.json wit/dohost.wit
	@mkdir -p $(GUEST_OUT)
	@[ -d guests/counter-js/node_modules/@bytecodealliance/componentize-js ] || \
		npm ci --prefix guests/counter-js --no-audit --no-fund
	guests/counter-js/node_modules/.bin/componentize-js $< -w wit -n object -d http fetch-event -o $@

## The host binary, optimised.
build: build-deps
	cargo build --release -p dohost

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## Formatting and lints, as CI wants them.
lint: build-deps
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cd guests && cargo fmt --all --check && cargo clippy --target $(WASM_TARGET) --target-dir ../$(GUEST_BUILD) -- -D warnings
	cd sdk && cargo fmt --all --check && cargo clippy --target $(WASM_TARGET) --target-dir ../$(GUEST_BUILD) -- -D warnings

clean:
	cargo clean
