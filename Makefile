# The two commands of the README, plus the benchmark and lints.
#   make dev    build berth and the example component, start a local cluster serving it
#   make test   run the whole test suite (what CI runs), fuzzing included

CARGO ?= cargo
GUEST_DIR := target/guest

.PHONY: dev test guest bench lint fuzz

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
	$(MAKE) fuzz

# Fuzz the decoders that outside bytes reach (wire frames, manifests, object
# JSON) with cargo-fuzz and libFuzzer under AddressSanitizer, each for
# FUZZ_SECONDS. The toolchain is stable; RUSTC_BOOTSTRAP lets cargo-fuzz pass
# its sanitizer flags. Seeds: fuzz/seeds/TARGET and the example manifests
# (only the manifest target makes use of those). Longer by hand: make fuzz FUZZ_SECONDS=600
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := wire_request wire_response manifest object_json
CARGO_FUZZ_VERSION := 0.13.2

fuzz:
	@$(CARGO) fuzz --version 2>/dev/null | grep -q $(CARGO_FUZZ_VERSION) || \
		$(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -O
	cd fuzz && for target in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$target seeds/$$target && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$target corpus/$$target seeds/$$target ../examples \
			-- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

bench: guest
	$(CARGO) bench -p berth --bench apply_to_first_200

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
