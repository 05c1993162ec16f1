# zeo: build, test and benchmark entry points. `make test` is what CI runs.
CARGO ?= cargo
VENV ?= $(CURDIR)/.venv
PREFIX ?= /usr/local
export ZEO_TEST_VENV := $(VENV)

.PHONY: all release test venv test-rust test-interop lint bench clean

all: release

release:
	$(CARGO) build --release

venv:
	scripts/setup-venv.sh $(VENV)

# Everything: Rust unit + integration tests, then the interop tests against real
# Python ZODB/ZEO from the pinned virtualenv (created on first use).
test: venv test-rust test-interop

test-rust:
	$(CARGO) build --release
	$(CARGO) test --release --all-targets

test-interop: venv
	ZEO_BIN=$(CURDIR)/target/release/zeo scripts/run-interop.sh $(VENV)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: release venv
	scripts/bench-all.sh $(VENV)

clean:
	$(CARGO) clean
