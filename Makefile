# The two commands a user needs: `make run` and `make test`. Each installs what is missing
# (Debian packages, npm modules for the second interop client), builds, then runs.
SHELL := /bin/bash
PY := /usr/bin/python3
BUILD := build
ASAN := build-asan
FUZZ := build-fuzz
PYGEN := $(BUILD)/pygen
FUZZ_SECONDS ?= 20

# dnsmasq-base is dnsmasq's program without the system service (test_peer_dns.py runs its
# own on a loopback port; the dnsmasq package would also start one on port 53).
APT_PACKAGES := meson ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format \
	libnghttp2-dev liburing-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler \
	libsqlite3-dev zlib1g-dev libssl-dev libcmocka-dev grpc-proto protobuf-compiler-grpc \
	python3 python3-grpcio python3-protobuf python3-pytest python3-h2 nghttp2-client openssl \
	procps libc-ares-dev dnsmasq-base iproute2 tmux libhttp-parser-dev curl chromium

BENCH := build-bench
# The peers of bench/peers.py: grpc-go built offline in GOPATH mode from Debian's sources,
# nghttpd for raw HTTP/2 (grpc-js is the one tests/interop/node installs).
BENCH_PACKAGES := libgrpc++-dev libprotobuf-dev protobuf-compiler-grpc g++ gnuplot-nox \
	golang-go golang-google-grpc-dev nghttp2-server

.PHONY: all deps bench-deps apt-install build asan run test unit e2e interop fuzz fuzz-run bench clean

all: build

# Installs only what is missing, so that a ready machine skips apt entirely.
deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory apt-install PACKAGES="nodejs npm"; fi

bench-deps: deps
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BENCH_PACKAGES)"

apt-install:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN)/build.ninja: | deps
	meson setup $(ASAN) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

$(FUZZ)/build.ninja: | deps
	CC=clang meson setup $(FUZZ) --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false -Dfuzz=true

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: deps $(ASAN)/build.ninja
	ninja -C $(ASAN)

run: build
	./$(BUILD)/collector --listen 127.0.0.1:50051 --data ./data

$(PYGEN)/.done: tests/gen_stubs.sh $(wildcard proto/collector/*.proto) | deps
	tests/gen_stubs.sh $(PYGEN) && touch $@

tests/interop/node/node_modules/.done: tests/interop/node/package.json | deps
	cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.done

# puppeteer-core for the web console's browser tests (tests/e2e/test_console_web.py), which
# drive Debian's chromium.
tests/e2e/console/node_modules/.done: tests/e2e/console/package.json tests/e2e/console/package-lock.json | deps
	cd tests/e2e/console && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.done

unit: build asan
	meson test -C $(BUILD) --print-errorlogs
	meson test -C $(ASAN) --print-errorlogs

interop: build tests/interop/node/node_modules/.done $(PYGEN)/.done
	tests/interop/run_interop.sh $(BUILD)/tests/interop/interop_server

fuzz: deps $(FUZZ)/build.ninja
	ninja -C $(FUZZ)

# Each harness for a short fixed budget on its committed corpus (every seed replayed
# first: crash and timeout inputs found earlier are kept there as regression seeds), with
# its own flags from fuzz/<harness>.flags and its own dictionary fuzz/<harness>.dict when
# there is one (none rather than another harness's: tokens of the wrong input format only
# waste mutations); any crash, timeout, leak or sanitizer report fails the run.
fuzz-run: fuzz
	@set -e; for h in $$(ls fuzz/corpus); do \
		echo "fuzz $$h: $(FUZZ_SECONDS) s"; \
		work=$$(mktemp -d); cp fuzz/corpus/$$h/* $$work/ 2>/dev/null || true; \
		flags=$$(cat fuzz/$$h.flags 2>/dev/null || true); \
		dict=; if [ -e fuzz/$$h.dict ]; then dict=-dict=fuzz/$$h.dict; fi; \
		./$(FUZZ)/fuzz/$$h -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$$dict $$flags $$work > $(FUZZ)/$$h.log 2>&1 \
			|| { tail -50 $(FUZZ)/$$h.log; rm -rf $$work; exit 1; }; \
		grep -E 'stat::number_of_executed_units|cov:' $(FUZZ)/$$h.log | tail -2; \
		rm -rf $$work; \
	done

e2e: build asan $(PYGEN)/.done tests/e2e/console/node_modules/.done
	PYGEN_DIR=$(CURDIR)/$(PYGEN) COLLECTOR_BIN=$(CURDIR)/$(ASAN)/collector \
		INTEROP_SERVER_BIN=$(CURDIR)/$(ASAN)/tests/interop/interop_server \
		$(PY) -m pytest -q -m 'not load' tests/e2e -p no:cacheprovider
	COLLECTOR_IO=epoll PYGEN_DIR=$(CURDIR)/$(PYGEN) COLLECTOR_BIN=$(CURDIR)/$(ASAN)/collector \
		INTEROP_SERVER_BIN=$(CURDIR)/$(ASAN)/tests/interop/interop_server \
		$(PY) -m pytest -q -m 'not load' tests/e2e -p no:cacheprovider
	PYGEN_DIR=$(CURDIR)/$(PYGEN) COLLECTOR_BIN=$(CURDIR)/$(BUILD)/collector \
		INTEROP_SERVER_BIN=$(CURDIR)/$(BUILD)/tests/interop/interop_server \
		$(PY) -m pytest -q tests/e2e -p no:cacheprovider

# Unit tests (plain and ASan+UBSan), fuzzers, interop with two stock clients, then the
# end-to-end suite on the ASan build (io_uring, then every node on epoll: COLLECTOR_IO) and
# on the plain build (its summary ends the run).
test: unit fuzz-run interop e2e

$(BENCH)/build.ninja: | bench-deps
	meson setup $(BENCH) --buildtype=release -Dbench=true

# Not part of `make test`: this project's core against stock gRPC, side by side.
# Go's build cache and GOPATH stay inside the bench build tree (make clean removes them).
$(BENCH)/peers/go_server: bench/peers/go/server.go | bench-deps $(BENCH)/build.ninja
	mkdir -p $(BENCH)/peers/gopath
	cd bench/peers/go && GO111MODULE=off GOFLAGS= GOPATH=$(CURDIR)/$(BENCH)/peers/gopath:/usr/share/gocode \
		GOCACHE=$(CURDIR)/$(BENCH)/peers/gocache go build -o $(CURDIR)/$@ server.go

bench: bench-deps $(BENCH)/build.ninja $(BENCH)/peers/go_server tests/interop/node/node_modules/.done
	ninja -C $(BENCH)
	$(PY) bench/run.py --build $(BENCH)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ) $(BENCH)
