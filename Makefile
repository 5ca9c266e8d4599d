# switchback — the two commands the README opens with, plus helpers.
#   make demo   build and run the zero-setup showcase
#   make test   fmt check, clippy, the layering check, every test, and the load benchmark's
#               smoke run
#   make bench-load   side-by-side load benchmark (see docs/BENCHMARKS.md)
#   make bench        routing micro-benchmarks (criterion)
#   make bench-control   admin switch round trip, file-write-to-live latency, and with shared
#                        state: write-to-every-replica latency, leader failover, etcd write rate
#   make fuzz         each cargo-fuzz target for FUZZ_SECONDS (default 60); corpora in fuzz/corpus
.PHONY: demo test deps build bench bench-load bench-smoke bench-control fuzz fuzz-admin

CARGO ?= cargo

# Pingora's zlib-ng build needs cmake; the etcd client (shared state) needs protoc to build;
# the shared-state tests run a real etcd cluster (Debian's etcd-server); the dashboard tests
# drive a real headless Chromium (Debian's chromium and chromium-driver). Install what is
# missing when we can (root with apt-get); otherwise stop with the exact command to run.
DEPS_PACKAGES = cmake:cmake protoc:protobuf-compiler etcd:etcd-server chromium:chromium \
	chromedriver:chromium-driver

deps:
	@missing=""; for pair in $(DEPS_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (needed to build and test switchback)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || { echo "error: installing$$missing failed; run: sudo apt-get install -y$$missing" >&2; exit 1; }; \
	  else \
	    echo "error:$$missing required; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

build: deps
	$(CARGO) build

demo: deps
	$(CARGO) run --quiet -- demo

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 tests/layers.py
	$(CARGO) test
	$(MAKE) --no-print-directory bench-smoke

# The load benchmark in smoke mode (debug build, a second or two per contender), so the
# harness cannot rot unnoticed. Installs nginx, haproxy and wrk when run as root.
bench-smoke: deps
	BENCH_QUICK=1 python3 benches/load.py

# The admin API against docs/admin-api.yaml with schemathesis (installs it from PyPI).
fuzz-admin: deps
	benches/fuzz_admin.sh

bench-load: deps
	python3 benches/load.py

# Control-plane latency: admin switch round trip and file-write-to-live; with a real etcd
# cluster and three replicas, ack-to-all-applied, failover and etcd writes (release build).
bench-control: deps
	python3 benches/control_latency.py
	python3 benches/shared_latency.py

bench: deps
	$(CARGO) bench --bench routing

# Fuzzing (libFuzzer through cargo-fuzz). The stable toolchain is enough with RUSTC_BOOTSTRAP=1.
# New interesting inputs land in fuzz/corpus/<target>; tests/fuzz_corpus.rs replays them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= framing config admin_body drain_path
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done
