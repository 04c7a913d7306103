/* Fuzzes allowed-IPs: the input is a program of insert / lookup / remove
 * operations on both families, and every lookup is checked against a linear
 * scan over the prefixes inserted so far. Any disagreement aborts.
 *
 * Encoding, repeated until the input runs out (a truncated op ends it):
 *   op byte: bits 0-1 = kind, bit 2 = IPv6, bits 3-5 = peer (0..7)
 *   kind 0 insert:   cidr byte, address (4 or 16 bytes)
 *   kind 1 lookup:   address
 *   kind 2 near:     index byte, address; looks up the index-th stored
 *                    prefix with the address supplying the host bits
 *   kind 3 remove:   removes every prefix of the peer */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/wg/allowedips.h"

#define MAX_REF 1024

struct ref {
	int family;
	uint8_t addr[16];
	uint8_t cidr;
	void *peer;
};

static int peers[8];

static void mask_to(uint8_t *a, size_t alen, unsigned cidr)
{
	for (unsigned bit = cidr; bit < alen * 8; bit++)
		a[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
}

static bool prefix_has(const struct ref *r, const uint8_t *a)
{
	for (unsigned bit = 0; bit < r->cidr; bit++) {
		uint8_t m = (uint8_t)(0x80 >> (bit % 8));
		if ((r->addr[bit / 8] & m) != (a[bit / 8] & m))
			return false;
	}
	return true;
}

static void *ref_lookup(const struct ref *refs, size_t n, int family, const uint8_t *a)
{
	int best = -1;
	void *peer = NULL;
	for (size_t i = 0; i < n; i++) {
		if (refs[i].family != family || refs[i].peer == NULL)
			continue;
		if ((int)refs[i].cidr > best && prefix_has(&refs[i], a)) {
			best = refs[i].cidr;
			peer = refs[i].peer;
		}
	}
	return peer;
}

static void check(const struct wg_allowedips *t, const struct ref *refs, size_t n,
                  int family, const uint8_t *a)
{
	if (wg_allowedips_lookup(t, family, a) != ref_lookup(refs, n, family, a))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ref refs[MAX_REF];
	size_t nref = 0;
	struct wg_allowedips *t = wg_allowedips_new();
	if (t == NULL)
		return 0;

	while (size > 0) {
		uint8_t op = data[0];
		int kind = op & 3;
		int family = (op & 4) ? AF_INET6 : AF_INET;
		size_t alen = family == AF_INET6 ? 16 : 4;
		void *peer = &peers[(op >> 3) & 7];
		size_t need =
		    1 + (kind == 0 || kind == 2 ? 1 : 0) + (kind == 3 ? 0 : alen);
		if (size < need)
			break;
		const uint8_t *arg = data + 1;
		uint8_t a[16] = {0};

		switch (kind) {
		case 0: {
			uint8_t cidr = arg[0];
			memcpy(a, arg + 1, alen);
			int rc = wg_allowedips_insert(t, family, a, cidr, peer);
			if (cidr > alen * 8) {
				if (rc == 0)
					abort();
				break;
			}
			if (rc != 0)
				abort();
			mask_to(a, alen, cidr);
			size_t i;
			for (i = 0; i < nref; i++) {
				if (refs[i].family == family && refs[i].cidr == cidr &&
				    memcmp(refs[i].addr, a, alen) == 0)
					break;
			}
			if (i == nref) {
				if (nref == MAX_REF) {
					/* Keep the model exact: stop here. */
					goto done;
				}
				refs[nref].family = family;
				memcpy(refs[nref].addr, a, sizeof(a));
				refs[nref].cidr = cidr;
				nref++;
			}
			refs[i].peer = peer;
			check(t, refs, nref, family, a);
			break;
		}
		case 1:
			memcpy(a, arg, alen);
			check(t, refs, nref, family, a);
			break;
		case 2:
			memcpy(a, arg + 1, alen);
			if (nref > 0) {
				const struct ref *r = &refs[arg[0] % nref];
				if (r->family == family) {
					for (unsigned bit = 0; bit < r->cidr; bit++) {
						uint8_t m = (uint8_t)(0x80 >> (bit % 8));
						a[bit / 8] =
						    (uint8_t)((a[bit / 8] & ~m) |
						              (r->addr[bit / 8] & m));
					}
				}
			}
			check(t, refs, nref, family, a);
			break;
		case 3:
			wg_allowedips_remove_by_peer(t, peer);
			for (size_t i = 0; i < nref; i++)
				if (refs[i].peer == peer)
					refs[i].peer = NULL;
			break;
		}
		data += need;
		size -= need;
	}
done:
	/* Every stored prefix still answers for itself (or a longer one). */
	for (size_t i = 0; i < nref; i++)
		check(t, refs, nref, refs[i].family, refs[i].addr);
	wg_allowedips_free(t);
	return 0;
}
