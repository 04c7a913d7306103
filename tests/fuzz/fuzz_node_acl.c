/* libFuzzer harness for the node's inbound filter (node/acl.c): the input
 * is a packet from the mesh (after decryption, so anything a peer may
 * send), fed to node_acl_inbound under a policy, and to node_acl_outbound
 * (our own lwIP output is trusted, but its parser is the same). ASan and
 * UBSan catch a read past the packet (it is copied into an allocation of
 * its exact size). */
#include "node/acl.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool fuzz_conn(void *ctx, const struct ns_addr *l, uint16_t lp,
                      const struct ns_addr *r, uint16_t rp)
{
	(void)ctx, (void)l, (void)r;
	return (lp ^ rp) & 1; /* some connections exist */
}

static struct node_acl *acl;

static void fuzz_init(void)
{
	if (acl)
		return;
	if (sodium_init() < 0)
		__builtin_trap();
	static struct ctl_port_range ports[] = {{22, 22}, {80, 90}}, any[] = {{0, 65535}};
	static struct ctl_filter_block blk[3];
	for (int i = 0; i < 3; i++) {
		blk[i].lo.family = 4;
		blk[i].hi.family = 4;
		memcpy(blk[i].lo.addr, "\x64\x40\x00\x00", 4);
		memcpy(blk[i].hi.addr, "\x64\x7f\xff\xff", 4);
		blk[i].ports = i == 2 ? any : ports;
		blk[i].n_ports = i == 2 ? 1 : 2;
	}
	struct ctl_filter f = {.n_blocks = {1, 1, 1},
	                       .blocks = {&blk[0], &blk[1], &blk[2]}};
	acl = node_acl_new(fuzz_conn, NULL);
	if (!acl || node_acl_set(acl, true, &f, NULL, 0) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_init();
	static int64_t now;
	now += 10;
	/* an exact copy, so a read past size lands outside the allocation */
	uint8_t *p = size ? malloc(size) : NULL;
	if (size)
		memcpy(p, data, size);
	node_acl_outbound(acl, p, size, now);
	node_acl_inbound(acl, p, size, now);
	free(p);
	return 0;
}
