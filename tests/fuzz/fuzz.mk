# Fuzzing: builds every tests/fuzz/fuzz_*.c as a libFuzzer binary with
# ASan+UBSan against the project sources, then runs each one for a while.
# Run from the top of the tree:
#   make fuzz                                   (= make -f tests/fuzz/fuzz.mk run)
#   make -f tests/fuzz/fuzz.mk build            just build
#   make -f tests/fuzz/fuzz.mk run FUZZ_SECONDS=300
#   make -f tests/fuzz/fuzz.mk run-allowedips   one harness
# See tests/fuzz/README.md.
.DEFAULT_GOAL := run
SHELL := /bin/bash

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
# Extra libFuzzer flags, e.g. FUZZ_ARGS="-jobs=4 -workers=4".
FUZZ_ARGS ?=
# 1: a project source that does not compile with clang fails the build.
# 0: it is left out with a warning (a harness that needs it then fails to
# link, naming the missing symbols).
FUZZ_STRICT ?= 0
FB := build-fuzz

LWIP_DIR := third_party/src/lwip-2.1.3
PKGS := libsodium libevent inih sqlite3 jansson libevent_openssl openssl miniupnpc libzstd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CPPFLAGS := -D_GNU_SOURCE -DMESH_FUZZING -I. -Inetstack -I$(LWIP_DIR)/src/include
# Library code gets coverage instrumentation; the harness gets libFuzzer's main.
FUZZ_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Wshadow -Wno-unused-parameter \
	$(SAN) -fsanitize=fuzzer-no-link -MMD -MP

# lwIP only when both its source (make deps) and our lwipopts.h exist.
HAVE_LWIP := $(and $(wildcard $(LWIP_DIR)/src/core/init.c),$(wildcard netstack/lwipopts.h))

# The project's library sources, as in the main Makefile.
MESH_SRC := $(wildcard core/*/*.c netstack/*.c proxy/*.c proxy/proto/*.c node/*.c node/dns/*.c \
	cli/*.c config/*.c servers/*/*.c)
MESH_SRC := $(filter-out cli/main.c servers/%/main.c,$(MESH_SRC))
ifeq ($(HAVE_LWIP),)
MESH_SRC := $(filter-out netstack/%,$(MESH_SRC))
LWIP_SRC :=
else
LWIP_SRC := $(wildcard $(LWIP_DIR)/src/core/*.c $(LWIP_DIR)/src/core/ipv4/*.c \
	$(LWIP_DIR)/src/core/ipv6/*.c)
endif
MESH_OBJ := $(MESH_SRC:%.c=$(FB)/obj/%.o)
LWIP_OBJ := $(LWIP_SRC:$(LWIP_DIR)/%.c=$(FB)/lwip/%.o)

HARNESS_SRC := $(wildcard tests/fuzz/fuzz_*.c)
NAMES := $(HARNESS_SRC:tests/fuzz/fuzz_%.c=%)
BINS := $(NAMES:%=$(FB)/fuzz_%)

.PHONY: build run clean-fuzz list $(NAMES:%=run-%)
# Keep harness objects (they would be deleted as intermediates).
.SECONDARY: $(NAMES:%=$(FB)/harness/fuzz_%.o)

build: $(BINS)

list:
	@echo $(NAMES)

$(FB)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC (fuzz) $<"
	@if $(FUZZ_CC) $(FUZZ_CPPFLAGS) $(PKG_CFLAGS) $(FUZZ_CFLAGS) -c $< -o $@ 2>$@.err; then \
		cat $@.err >&2; rm -f $@.err; \
	elif [ "$(FUZZ_STRICT)" = 1 ]; then \
		cat $@.err >&2; exit 1; \
	else \
		echo "fuzz: warning: $< does not compile with $(FUZZ_CC); left out (see $@.err)" >&2; \
		rm -f $@; \
	fi

# init.c alone sees TCP_MAXRTX 12 (netstack/lwipopts.h says why).
$(FB)/lwip/src/core/init.o: FUZZ_CFLAGS += -DMESH_LWIP_INIT_C
$(FB)/lwip/%.o: $(LWIP_DIR)/%.c netstack/lwipopts.h
	@mkdir -p $(dir $@)
	@echo "  CC (fuzz) $<"
	@$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -w -c $< -o $@

# Files our lwIP patches change are built from patched copies.
include third_party/lwip_patches.mk
$(FB)/lwip-patched/.ok: $(LWIP_PATCHES) $(call lwip_patch_list,$(FB)/lwip-patches.list) \
		$(wildcard $(LWIP_DIR)/.ok)
	$(call lwip_apply_patches,$(FB)/lwip-patched)
$(LWIP_PATCHED_FILES:%=$(FB)/lwip-patched/src/%): | $(FB)/lwip-patched/.ok ;

$(LWIP_PATCHED_FILES:%.c=$(FB)/lwip/src/%.o): $(FB)/lwip/src/%.o: $(FB)/lwip-patched/.ok \
		netstack/lwipopts.h
	@mkdir -p $(dir $@)
	@echo "  CC (fuzz) $(FB)/lwip-patched/src/$*.c"
	@$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -w -c $(FB)/lwip-patched/src/$*.c -o $@

# Archives, so each harness links only the objects it actually uses.
$(FB)/libmesh.a: $(MESH_OBJ)
	@rm -f $@
	@objs=(); for o in $^; do [ -f "$$o" ] && objs+=("$$o"); done; \
	ar rcs $@ "$${objs[@]}"

$(FB)/liblwip.a: $(LWIP_OBJ)
	@rm -f $@
	@ar rcs $@ $^

FUZZ_LIBS := $(FB)/libmesh.a $(if $(HAVE_LWIP),$(FB)/liblwip.a)

$(FB)/harness/fuzz_%.o: tests/fuzz/fuzz_%.c
	@mkdir -p $(dir $@)
	@echo "  CC (fuzz) $<"
	@$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(PKG_CFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

$(FB)/fuzz_%: $(FB)/harness/fuzz_%.o $(FUZZ_LIBS)
	@echo "  LD (fuzz) $@"
	@$(FUZZ_CC) $(SAN) -fsanitize=fuzzer $< -o $@ \
		-Wl,--start-group $(FUZZ_LIBS) -Wl,--end-group $(PKG_LIBS) -lnatpmp -lpthread -lm

# One harness: the corpus lives in $(FB)/corpus/NAME; tests/fuzz/seeds/NAME
# (or seeds/fuzz_NAME) is read as extra input; tests/fuzz/NAME.dict is used
# if it exists. libFuzzer exits non-zero when it finds a crash, a leak, a
# timeout or an out-of-memory. Shell: $$1 is the name; returns its status.
define RUN_ONE
run_one() { \
	local n=$$1 rc d; local seeds=() dict=(); \
	mkdir -p $(FB)/corpus/$$n $(FB)/artifacts/$$n; \
	for d in tests/fuzz/seeds/$$n tests/fuzz/seeds/fuzz_$$n; do \
		[ -d "$$d" ] && seeds+=("$$d"); done; \
	[ -f tests/fuzz/$$n.dict ] && dict=(-dict=tests/fuzz/$$n.dict); \
	echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	$(FB)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix=$(FB)/artifacts/$$n/ \
		"$${dict[@]}" $(FUZZ_ARGS) $(FB)/corpus/$$n "$${seeds[@]}" \
		> $(FB)/$$n.log 2>&1; rc=$$?; \
	grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE' \
		$(FB)/$$n.log | sed 's/^/  /'; \
	if [ $$rc -ne 0 ]; then \
		tail -n 60 $(FB)/$$n.log; \
		echo "fuzz: $$n FAILED (exit $$rc); full log $(FB)/$$n.log"; \
	fi; \
	return $$rc; \
}
endef

# Runs every harness for FUZZ_SECONDS each; all run even if one fails, and
# the target fails if any of them found a problem.
run: build
	@$(RUN_ONE); failed=(); \
	for n in $(NAMES); do run_one $$n || failed+=("$$n"); done; \
	if [ $${#failed[@]} -gt 0 ]; then \
		echo "fuzz: FAILED: $${failed[*]} (inputs in $(FB)/artifacts/)"; exit 1; \
	fi; \
	echo "fuzz: $(words $(NAMES)) harness(es), $(FUZZ_SECONDS)s each: no problems found"

$(NAMES:%=run-%): run-%: $(FB)/fuzz_%
	@$(RUN_ONE); run_one $*

clean-fuzz:
	rm -rf $(FB)

-include $(MESH_OBJ:.o=.d) $(LWIP_OBJ:.o=.d) $(NAMES:%=$(FB)/harness/fuzz_%.d)
