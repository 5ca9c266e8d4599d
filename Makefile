# switchback — the two commands the README opens with, plus helpers.
#   make demo   build and run the zero-setup showcase
#   make test   fmt check, clippy, and every test
.PHONY: demo test deps build

CARGO ?= cargo

# Pingora's zlib-ng build needs cmake. Install it when we can (root with apt-get);
# otherwise stop with the exact command to run.
deps:
	@if ! command -v cmake >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing cmake (needed to build Pingora)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null) \
	      || { echo "error: installing cmake failed; run: sudo apt-get install -y cmake" >&2; exit 1; }; \
	  else \
	    echo "error: cmake is required to build Pingora; run: sudo apt-get install -y cmake" >&2; exit 1; \
	  fi; \
	fi

build: deps
	$(CARGO) build

demo: deps
	$(CARGO) run --quiet -- demo

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
