# Our patches to lwIP (third_party/patches/lwip-*.patch; README.md says what
# each fixes and why). The unpacked source stays pristine: the files the
# patches change are copied under a build directory and patched there, and
# their objects are compiled from those copies. Included by lwip.mk and
# tests/fuzz/fuzz.mk, which define LWIP_DIR.

LWIP_PATCHES := $(sort $(wildcard third_party/patches/lwip-*.patch))
# The files (under src/) the patches change, read from their "+++ b/src/..."
# lines.
LWIP_PATCHED_FILES := $(sort $(shell sed -n 's|^+++ b/src/\([^[:space:]]*\).*|\1|p' \
	$(LWIP_PATCHES) /dev/null))

# $(call lwip_patch_list,FILE): FILE, which names the patches; rewritten
# (when the makefile is read) only when the set of patches changes, so that
# a patch added with an old date or a patch removed also redoes the copies.
lwip_patch_list = $(shell mkdir -p $(dir $(1)) && { echo '$(LWIP_PATCHES)' | \
	cmp -s - $(1) || echo '$(LWIP_PATCHES)' >$(1); })$(1)

# $(call lwip_apply_patches,DIR): DIR/src/<file> for each patched file.
define lwip_apply_patches
	@rm -rf $(1) && mkdir -p $(1)
	@for f in $(LWIP_PATCHED_FILES); do \
		mkdir -p $(1)/src/$$(dirname $$f) && cp $(LWIP_DIR)/src/$$f $(1)/src/$$f || exit 1; \
	done
	@for p in $(LWIP_PATCHES); do \
		echo "  PATCH $$p"; patch -s -p1 -d $(1) <$$p || exit 1; \
	done
	@touch $(1)/.ok
endef
