# meshproxy: one entry point. `make help` lists the targets.
.DEFAULT_GOAL := all
SHELL := /bin/bash

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
BUILD ?= build
SAN_FLAGS :=
OPT := -O2
endif

CC ?= gcc
LWIP_DIR := third_party/src/lwip-2.1.3
DEPS_STAMP := $(LWIP_DIR)/.ok

PKGS := libsodium libevent inih sqlite3 libpq jansson libevent_openssl openssl miniupnpc libzstd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CPPFLAGS := -D_GNU_SOURCE -I. -Inetstack -I$(LWIP_DIR)/src/include
CFLAGS := -std=gnu11 $(OPT) -g $(WARN) $(SAN_FLAGS) -MMD -MP
LDFLAGS := $(SAN_FLAGS) -Wl,--as-needed
LDLIBS = $(PKG_LIBS) -lnatpmp -lpthread -lm

# Our sources: everything under these folders except program entry points.
LIB_SRC := $(wildcard core/*/*.c netstack/*.c proxy/*.c proxy/proto/*.c node/*.c node/dns/*.c \
	cli/*.c config/*.c servers/*/*.c)
LIB_SRC := $(filter-out cli/main.c servers/%/main.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libmesh.a

include third_party/lwip.mk

PROGRAMS := $(BUILD)/mesh-proxy $(BUILD)/mesh-control $(BUILD)/mesh-relay
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test check unit asan clean demo fuzz bench format help check-layout image
# Keep unit-test objects (make would delete them as intermediates).
.SECONDARY: $(UNIT_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.o)
TOOLS := $(BUILD)/tests/wg-ping $(BUILD)/tests/ctl-scale $(BUILD)/tests/crypto-ceiling $(BUILD)/tests/httpload \
	$(BUILD)/tests/relay-client $(BUILD)/tests/relay-load $(BUILD)/tests/map-delta-bench \
	$(BUILD)/tests/portmap-probe $(BUILD)/tests/acl-bench
all: $(PROGRAMS) $(UNIT_BIN) $(TOOLS)

help:
	@echo "make deps    install Debian packages, fetch and check lwIP source"
	@echo "make         build mesh-proxy, mesh-control, mesh-relay and the unit tests into $(BUILD)/"
	@echo "make demo    run two nodes on loopback and fetch a page through SOCKS5"
	@echo "make test    run every test: unit, demo, e2e (as root), ASan/UBSan, fuzz smoke"
	@echo "make check   only the normal build's tests (unit, demo, e2e as root)"
	@echo "make check-layout  fail if a lower layer includes or calls a higher one (DESIGN.md, Layout)"
	@echo "make asan    unit tests and the demo built with ASan+UBSan"
	@echo "make fuzz    run the fuzzers for a while"
	@echo "make bench   benchmarks against wireguard-go, Nebula, microsocks (root)"
	@echo "make image   the container image meshproxy:latest (podman, FROM scratch)"

deps:
	@third_party/deps.sh

# Every build first checks (in ~0.3 s) that the Debian packages and the lwIP
# source are there, and installs what is missing; MESH_SKIP_DEPS=1 skips it.
ifeq ($(filter deps clean help format,$(MAKECMDGOALS))$(MESH_SKIP_DEPS),)
DEPS_RC := $(shell third_party/deps.sh >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error make deps failed (see above); run `make deps` as root once)
endif
endif

$(DEPS_STAMP): third_party/deps.sh
	@third_party/deps.sh
	@touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mesh-proxy: $(BUILD)/obj/cli/main.o $(LIB) $(LWIP_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/mesh-control: $(BUILD)/obj/servers/control/main.o $(LIB) $(LWIP_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/mesh-relay: $(BUILD)/obj/servers/relay/main.o $(LIB) $(LWIP_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB) $(LWIP_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# The host's interface list is the test's (tests/unit/test_node_netchg.c).
$(BUILD)/tests/test_node_netchg: LDFLAGS += -Wl,--wrap=getifaddrs -Wl,--wrap=freeifaddrs

# Every test: the normal build (unit, demo, e2e as root), the same under
# ASan+UBSan, a short run of every fuzzer and the benchmark smoke; the
# stages run side by side (tests/all.sh). The build itself uses every CPU.
TEST_BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test:
	@$(MAKE) --no-print-directory -j$(TEST_BUILD_JOBS) all
	@tests/all.sh

# Tools for tests and benchmarks, one tests/tools/NAME.c each: wg-ping (the
# WireGuard device alone, for raw interop tests), ctl-scale (many light
# control clients in one process), crypto-ceiling (ChaCha20-Poly1305 on one
# core), httpload (a small HTTP server and load client), relay-client (a
# blocking mesh-relay client for tests/e2e/relay.sh), relay-load (many relay
# clients in one process: the relay's load test), portmap-probe (the port
# mapper with one protocol, against the NAT lab's miniupnpd), acl-bench (the
# node's inbound filter per packet with a large policy, against none).
$(TOOLS): $(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(LIB) $(LWIP_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The layers: core/ < config/, netstack/ < proxy/proto/ < proxy/ < node/ <
# cli/, servers/ on config/ and core/. tests/check_layout.py checks every
# include as the compiler resolves it and every object's undefined symbols,
# after a self-test that plants a violation of each rule.
check-layout: $(LIB) $(BUILD)/obj/cli/main.o $(BUILD)/obj/servers/control/main.o \
		$(BUILD)/obj/servers/relay/main.o $(LWIP_LIB)
	@tests/check_layout.py --self-test --cc "$(CC)" \
		$(patsubst -I%,--incdir %,$(filter -I%,$(CPPFLAGS))) \
		--objdir $(BUILD)/obj --lib $(LWIP_LIB) \
		$(LIB_OBJ) $(BUILD)/obj/cli/main.o $(BUILD)/obj/servers/control/main.o \
		$(BUILD)/obj/servers/relay/main.o

# Only the normal build's tests.
check: all
	@tests/run.sh $(BUILD)

unit: all
	@tests/run.sh --unit-only $(BUILD)

asan:
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@tests/run.sh build-asan --no-e2e

demo: all
	@tests/demo.sh $(BUILD) $(DEMO_ARGS)

fuzz:
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk run

# The benchmark suite (root): BENCH_ARGS="--quick" or "--only memory" etc.
bench: all
	@bench/run.sh $(BUILD) $(BENCH_ARGS)

# The container image (image/build.sh): FROM scratch, the three programs
# stripped, the shared libraries they link and the loader; tagged
# meshproxy:latest in the caller's podman store (IMAGE_ARGS="--tag T" etc.).
image: $(PROGRAMS)
	@image/build.sh --build $(BUILD) $(IMAGE_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/cli/main.d $(BUILD)/obj/servers/control/main.d \
	$(BUILD)/obj/servers/relay/main.d \
	$(TOOLS:$(BUILD)/tests/%=$(BUILD)/obj/tests/tools/%.d)
-include $(UNIT_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d)
