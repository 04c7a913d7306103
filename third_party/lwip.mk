# lwIP 2.1.3 core (Debian source package, see third_party/README.md), built
# as a static library with our netstack/lwipopts.h and netstack/arch/cc.h.
# Included by the top-level Makefile, which defines BUILD, CC, SAN_FLAGS,
# OPT, LWIP_DIR and DEPS_STAMP.

LWIP_LIB := $(BUILD)/liblwip.a

# Only the core: IPv4, IPv6, TCP, UDP, RAW, ICMP. No sequential/socket API
# (api/) and no link layers (netif/): our netif is defined in netstack/ns.c.
# The list is fixed rather than a wildcard because the source tree may not
# be unpacked yet when make reads this file.
LWIP_CORE_FILES := \
	core/altcp.c core/altcp_alloc.c core/altcp_tcp.c core/def.c core/dns.c \
	core/inet_chksum.c core/init.c core/ip.c core/mem.c core/memp.c \
	core/netif.c core/pbuf.c core/raw.c core/stats.c core/sys.c core/tcp.c \
	core/tcp_in.c core/tcp_out.c core/timeouts.c core/udp.c \
	core/ipv4/autoip.c core/ipv4/dhcp.c core/ipv4/etharp.c core/ipv4/icmp.c \
	core/ipv4/igmp.c core/ipv4/ip4.c core/ipv4/ip4_addr.c core/ipv4/ip4_frag.c \
	core/ipv6/dhcp6.c core/ipv6/ethip6.c core/ipv6/icmp6.c core/ipv6/inet6.c \
	core/ipv6/ip6.c core/ipv6/ip6_addr.c core/ipv6/ip6_frag.c core/ipv6/mld6.c \
	core/ipv6/nd6.c
LWIP_SRC := $(addprefix $(LWIP_DIR)/src/,$(LWIP_CORE_FILES))
LWIP_OBJ := $(LWIP_CORE_FILES:%.c=$(BUILD)/lwip/%.o)

# lwIP's core builds clean with these warnings (gcc 12, clang 14), so keep
# -Werror: a new warning means a changed option set deserves a look. clang
# flags tcp.c comparing a u16 MSS with TCP_WND/2 (> 0xffff with window
# scaling): harmless, and gcc ignores the unknown -Wno- option.
LWIP_CPPFLAGS := -D_GNU_SOURCE -Inetstack -I$(LWIP_DIR)/src/include
LWIP_CFLAGS := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-tautological-constant-out-of-range-compare $(SAN_FLAGS) -MMD -MP

# One exception: nd6.c declares a router-solicitation counter that is unused
# when LWIP_IPV6_SEND_ROUTER_SOLICIT is 0 (our point-to-point link).
$(BUILD)/lwip/core/ipv6/nd6.o: LWIP_CFLAGS += -Wno-unused-variable
# init.c checks TCP_MAXRTX <= 12, a limit lwIP 2.1 no longer needs
# (netstack/lwipopts.h says why): it alone sees 12.
$(BUILD)/lwip/core/init.o: LWIP_CFLAGS += -DMESH_LWIP_INIT_C

$(BUILD)/lwip/%.o: $(LWIP_DIR)/src/%.c netstack/lwipopts.h netstack/arch/cc.h \
		netstack/ns_hooks.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(LWIP_CPPFLAGS) $(LWIP_CFLAGS) -c $< -o $@

# Files our patches change are built from patched copies (lwip_patches.mk).
include third_party/lwip_patches.mk
LWIP_PATCH_DIR := $(BUILD)/lwip-patched
# A re-extracted lwIP (DEPS_STAMP newer), a changed patch or a changed set of
# patches makes the copies again.
$(LWIP_PATCH_DIR)/.ok: $(LWIP_PATCHES) $(call lwip_patch_list,$(BUILD)/lwip-patches.list) \
		$(DEPS_STAMP)
	$(call lwip_apply_patches,$(LWIP_PATCH_DIR))
# The copies come from the rule above (an object's .d names its copy, which
# may have been removed with the directory).
$(LWIP_PATCHED_FILES:%=$(LWIP_PATCH_DIR)/src/%): | $(LWIP_PATCH_DIR)/.ok ;

$(LWIP_PATCHED_FILES:%.c=$(BUILD)/lwip/%.o): $(BUILD)/lwip/%.o: $(LWIP_PATCH_DIR)/.ok \
		netstack/lwipopts.h netstack/arch/cc.h netstack/ns_hooks.h
	@mkdir -p $(dir $@)
	$(CC) $(LWIP_CPPFLAGS) $(LWIP_CFLAGS) -c $(LWIP_PATCH_DIR)/src/$*.c -o $@

$(LWIP_LIB): $(LWIP_OBJ)
	@rm -f $@
	ar rcs $@ $^

-include $(LWIP_OBJ:.o=.d)
