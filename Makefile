# zeo: build, test and benchmark entry points. `make test` is what CI runs.
CARGO ?= cargo
VENV ?= $(CURDIR)/.venv
PREFIX ?= /usr/local
DESTDIR ?=
# The release binary is linked statically (glibc static-pie); an explicit --target keeps
# the crt-static flag away from build scripts and proc macros.
TARGET ?= x86_64-unknown-linux-gnu
RELEASE_BIN := target/$(TARGET)/release/zeo
export ZEO_TEST_VENV := $(VENV)

.PHONY: all release install test venv test-interop lint bench generated clean zookeeper curl

all: release

release:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target $(TARGET)

# Binary, runzeo/zeopack/zeoup/zeo-nagios links, man pages, completions, systemd unit,
# sample configuration; honours PREFIX and DESTDIR (see docs/operations.md).
install: release
	scripts/install.sh --strip --bin $(RELEASE_BIN) --prefix $(PREFIX) --destdir "$(DESTDIR)"

venv:
	scripts/setup-venv.sh $(VENV)

# The ZooKeeper server the service-registry tests start privately (Debian package).
zookeeper:
	scripts/setup-zookeeper.sh
test test-interop: zookeeper

# curl, the HTTP client the monitoring endpoint tests (tests/server_monitor.rs) use.
curl:
	scripts/setup-curl.sh
test: curl

# Everything: Rust unit and integration tests, including tests/interop/ which drives
# real Python ZODB/ZEO from the pinned virtualenv (created on first use).
# Benchmarks are only built here (they are drivers for scripts/bench-*.sh, not tests).
test: venv
	$(CARGO) test --profile ci --lib --bins --tests --examples
	$(CARGO) build --profile ci --benches

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
