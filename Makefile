# The README's two commands: `make demo` and `make test`.
# Both install what is missing on Debian/Ubuntu when run as root (or print
# the exact command otherwise) and start epmd.

SHELL := /bin/bash
.DEFAULT_GOAL := test

# elixir alone lacks runtime_tools, os_mon, inets...: erlang-nox brings them.
# python3-venv: Debian's python3 has no `venv`/ensurepip without it.
# chromium, nodejs, npm: the :browser tests drive Debian's chromium through
# playwright-core (package.json; it never downloads a browser). Debian 12's
# nodejs is 18, which playwright-core 1.61 accepts (engines: node >= 18); a
# node/npm already on the PATH (nodesource, nvm) is used as it is.
APT_PACKAGES := elixir erlang-nox erlang-dev iptables python3 python3-venv chromium nodejs npm

export LANG := C.UTF-8
export LC_ALL := C.UTF-8
export ELIXIR_ERL_OPTIONS := +fnu

# The OpenAPI document is checked by openapi-spec-validator (PyPI), in a
# virtualenv of its own under _build.
OPENAPI_VALIDATOR := _build/tools/venv/bin/openapi-spec-validator

.PHONY: test demo system-deps epmd rust-check elixir-check browser-deps

system-deps:
	@missing=""; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	  for p in $(APT_PACKAGES); do \
	    case $$p in \
	      nodejs) command -v node >/dev/null 2>&1 && continue;; \
	      npm) command -v npm >/dev/null 2>&1 && continue;; \
	    esac; \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	  done; \
	else \
	  for c in elixir erl epmd; do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "Missing:$$missing. Install them with:"; \
	    echo "  sudo apt-get install -y $(APT_PACKAGES)"; \
	    exit 1; \
	  fi; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust from https://rustup.rs"; exit 1; }

epmd: system-deps
	@epmd -daemon

rust-check: system-deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

# A venv left half-made by an earlier failure (no ensurepip) is made again.
$(OPENAPI_VALIDATOR): | system-deps
	@command -v python3 >/dev/null 2>&1 || { echo "python3 is needed to validate the OpenAPI document"; exit 1; }
	rm -rf _build/tools/venv
	python3 -m venv _build/tools/venv
	_build/tools/venv/bin/pip install --quiet --disable-pip-version-check openapi-spec-validator==0.7.1

# playwright-core for the :browser tests, exactly as package-lock.json pins it.
node_modules/.package-lock.json: package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund

browser-deps: node_modules/.package-lock.json

elixir-check: epmd $(OPENAPI_VALIDATOR) browser-deps
	mix format --check-formatted
	MIX_ENV=test mix compile --warnings-as-errors
	mix test

test: rust-check elixir-check

demo: epmd
	mix cluster_scope.demo
