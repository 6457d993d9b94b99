# The two commands of the README, plus the benchmark and lints.
#   make dev    build berth and the example component, start a local cluster serving it
#   make test   run the whole test suite (what CI runs)

CARGO ?= cargo
GUEST_DIR := target/guest

.PHONY: dev test guest bench lint

# The example component, built for wasm32-wasip2 into the same directory the
# test fixtures use, so it is built once for both.
guest:
	$(CARGO) build --workspace --release --target wasm32-wasip2 \
		--manifest-path sdk/examples/Cargo.toml --target-dir $(GUEST_DIR)

dev: guest
	$(CARGO) build -p berth
	./target/debug/berth dev -f examples/hello.yaml

test:
	$(CARGO) test --workspace --locked

bench: guest
	$(CARGO) bench -p berth --bench apply_to_first_200

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
