# zeo: build, test and benchmark entry points. `make test` is what CI runs.
CARGO ?= cargo
VENV ?= $(CURDIR)/.venv
PREFIX ?= /usr/local
export ZEO_TEST_VENV := $(VENV)

.PHONY: all release test venv test-interop lint bench generated clean zookeeper

all: release

release:
	$(CARGO) build --release

venv:
	scripts/setup-venv.sh $(VENV)

# The ZooKeeper server the service-registry tests start privately (Debian package).
zookeeper:
	scripts/setup-zookeeper.sh
test test-interop: zookeeper

# Everything: Rust unit and integration tests, including tests/interop/ which drives
# real Python ZODB/ZEO from the pinned virtualenv (created on first use).
test: venv
	$(CARGO) test --profile ci --all-targets

test-interop: venv
	$(CARGO) test --profile ci --test interop

# Rewrite man/ and completions/ from the clap definitions.
generated:
	ZEO_UPDATE_GENERATED=1 $(CARGO) test --test generated_docs

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: release venv
	scripts/bench-all.sh $(VENV)

clean:
	$(CARGO) clean
