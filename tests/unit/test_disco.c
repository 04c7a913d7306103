/* Disco messages (core/disco/disco.h): every type round-trips with IPv4 and
 * IPv6 addresses, the box is a plain crypto_box from the sender's disco key
 * to the receiver's, a datagram for another key or with any bit flipped does
 * not open, every truncation is refused without reading past its end (run
 * under ASan), unknown types and versions are told apart from malformed
 * bodies, and the magic never starts a WireGuard or STUN datagram. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/disco/disco.h"
#include "core/stun/stun.h"
#include "core/wg/messages.h"

/* A sends, B receives, C is a third node. */
static uint8_t a_pub[32], a_priv[32], b_pub[32], b_priv[32], c_pub[32], c_priv[32];
static uint8_t ab[DISCO_SHARED_LEN], ba[DISCO_SHARED_LEN];

static int setup(void **state)
{
	crypto_box_keypair(a_pub, a_priv);
	crypto_box_keypair(b_pub, b_priv);
	crypto_box_keypair(c_pub, c_priv);
	if (disco_shared(ab, b_pub, a_priv) != 0 || disco_shared(ba, a_pub, b_priv) != 0)
		return -1;
	return 0;
}

static struct disco_addr addr4(const char *s, uint16_t port)
{
	struct disco_addr a = {.family = 4, .port = port};
	assert_int_equal(inet_pton(AF_INET, s, a.addr), 1);
	return a;
}

static struct disco_addr addr6(const char *s, uint16_t port)
{
	struct disco_addr a = {.family = 6, .port = port};
	assert_int_equal(inet_pton(AF_INET6, s, a.addr), 1);
	return a;
}

static struct disco_msg ping(void)
{
	struct disco_msg m = {.type = DISCO_PING};
	randombytes_buf(m.txid, sizeof m.txid);
	randombytes_buf(m.node_key, sizeof m.node_key);
	return m;
}

static struct disco_msg pong(struct disco_addr src)
{
	struct disco_msg m = {.type = DISCO_PONG, .src = src};
	randombytes_buf(m.txid, sizeof m.txid);
	return m;
}

/* A CALL_ME_MAYBE with n endpoints, IPv4 and IPv6 in turn (all IPv6 when
 * v6_only). */
static struct disco_msg cmm(unsigned n, bool v6_only)
{
	struct disco_msg m = {.type = DISCO_CALL_ME_MAYBE, .n_eps = (uint8_t)n};
	for (unsigned i = 0; i < n; i++) {
		if (v6_only || i % 2)
			m.eps[i] = addr6("2001:db8::1", (uint16_t)(41641 + i));
		else
			m.eps[i] = addr4("198.18.0.1", (uint16_t)(41641 + i));
		m.eps[i].addr[m.eps[i].family == 4 ? 3 : 15] = (uint8_t)(i + 1);
	}
	return m;
}

static void assert_msg_equal(const struct disco_msg *x, const struct disco_msg *y)
{
	assert_int_equal(x->type, y->type);
	switch (x->type) {
	case DISCO_PING:
		assert_memory_equal(x->txid, y->txid, DISCO_TXID_LEN);
		assert_memory_equal(x->node_key, y->node_key, DISCO_NODE_KEY_LEN);
		break;
	case DISCO_PONG:
		assert_memory_equal(x->txid, y->txid, DISCO_TXID_LEN);
		assert_true(disco_addr_equal(&x->src, &y->src));
		break;
	case DISCO_CALL_ME_MAYBE:
		assert_int_equal(x->n_eps, y->n_eps);
		for (unsigned i = 0; i < x->n_eps; i++)
			assert_true(disco_addr_equal(&x->eps[i], &y->eps[i]));
		assert_int_equal(x->nat, y->nat);
		if (x->nat)
			assert_true(disco_addr_equal(&x->pub, &y->pub));
		break;
	case DISCO_BIRTHDAY:
		assert_true(disco_addr_equal(&x->pub, &y->pub));
		assert_int_equal(x->socks, y->socks);
		assert_int_equal(x->probes, y->probes);
		break;
	default:
		fail();
	}
}

/* Seals m from A to B, checks the header, opens it as B; the length. */
static size_t round_trip(const struct disco_msg *m, uint8_t *out, size_t cap)
{
	size_t n = disco_seal(out, cap, a_pub, ab, m);
	assert_true(n > 0 && n <= DISCO_MAX_LEN);
	assert_true(disco_is_message(out, n));
	assert_memory_equal(disco_sender_key(out), a_pub, 32);
	struct disco_msg got;
	memset(&got, 0xA5, sizeof got);
	assert_int_equal(disco_open(out, n, ba, &got), 0);
	assert_int_equal(got.version, DISCO_VERSION);
	assert_msg_equal(m, &got);
	/* The sender opens what it sealed too: one shared key per pair. */
	assert_int_equal(disco_open(out, n, ab, &got), 0);
	return n;
}

static void round_trips(void **state)
{
	uint8_t d[DISCO_MAX_LEN], d2[DISCO_MAX_LEN];
	assert_memory_equal(ab, ba, DISCO_SHARED_LEN);

	struct disco_msg m = ping();
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 2 + 12 + 32);
	/* A fresh nonce each time: the same message never seals the same. */
	assert_int_equal(disco_seal(d2, sizeof d2, a_pub, ab, &m), 124);
	assert_memory_not_equal(d + 38, d2 + 38, 124 - 38);

	m = pong(addr4("198.18.0.7", 41641));
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 2 + 12 + 7);
	m = pong(addr6("2001:db8::7", 65535));
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 2 + 12 + 19);

	m = cmm(0, false);
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 3);
	m = cmm(5, false);
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 3 + 3 * 7 + 2 * 19);
	m = cmm(DISCO_CALLMEMAYBE_MAX, true);
	assert_int_equal(round_trip(&m, d, sizeof d), 689);
	/* The trailer: the sender's NAT kind and public address. */
	m.nat = DISCO_NAT_HARD;
	m.pub = addr6("2001:db8::99", 7);
	assert_int_equal(round_trip(&m, d, sizeof d), DISCO_MAX_LEN);
	assert_int_equal(DISCO_MAX_LEN, 709);
	m = cmm(1, false);
	m.nat = DISCO_NAT_EASY;
	m.pub = addr4("198.18.10.2", 41641);
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 3 + 7 + 1 + 7);

	m = (struct disco_msg){.type = DISCO_BIRTHDAY, .pub = addr4("198.18.10.4", 0),
	                       .socks = 256, .probes = 1500};
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 2 + 7 + 4);
	m.pub = addr6("2001:db8::4", 9);
	assert_int_equal(round_trip(&m, d, sizeof d), 62 + 16 + 2 + 19 + 4);

	/* m->version is not the sender's to choose. */
	m = ping();
	m.version = 9;
	round_trip(&m, d, sizeof d);

	assert_string_equal(disco_type_name(DISCO_PING), "PING");
	assert_string_equal(disco_type_name(DISCO_PONG), "PONG");
	assert_string_equal(disco_type_name(DISCO_CALL_ME_MAYBE), "CALL_ME_MAYBE");
	assert_string_equal(disco_type_name(DISCO_BIRTHDAY), "BIRTHDAY");
	assert_null(disco_type_name(0));
	assert_null(disco_type_name(5));
}

/* The layout the header documents, checked with libsodium's own
 * crypto_box_open_easy from the two key pairs (no shared key): any NaCl
 * implementation reads it. */
static void wire_format_is_crypto_box(void **state)
{
	struct disco_msg m = pong(addr4("198.18.3.4", 0x1234));
	uint8_t d[DISCO_MAX_LEN], plain[64];
	size_t n = disco_seal(d, sizeof d, a_pub, ab, &m);
	assert_int_equal(n, 99);
	assert_memory_equal(d, "MDSC\xF0\x9F", 6);
	assert_memory_equal(d + 6, a_pub, 32);
	assert_int_equal(
	    crypto_box_open_easy(plain, d + 62, n - 62, d + 38, a_pub, b_priv), 0);
	const uint8_t want[] = {DISCO_PONG, 1};
	assert_memory_equal(plain, want, 2);
	assert_memory_equal(plain + 2, m.txid, 12);
	const uint8_t addr[] = {4, 0x12, 0x34, 198, 18, 3, 4};
	assert_memory_equal(plain + 14, addr, sizeof addr);
}

static void other_key_does_not_open(void **state)
{
	uint8_t cb[DISCO_SHARED_LEN], d[DISCO_MAX_LEN];
	assert_int_equal(disco_shared(cb, a_pub, c_priv), 0);
	struct disco_msg m = ping(), got;
	size_t n = disco_seal(d, sizeof d, a_pub, ab, &m);
	memset(&got, 0xA5, sizeof got);
	assert_int_equal(disco_open(d, n, cb, &got), -EBADMSG);
	struct disco_msg zero = {0};
	assert_memory_equal(&got, &zero, sizeof got);
	/* Sealed by C to B, with A's key written in the header instead of C's:
	 * B opens it with what it shares with A, which fails. */
	uint8_t cbk[DISCO_SHARED_LEN];
	assert_int_equal(disco_shared(cbk, b_pub, c_priv), 0);
	n = disco_seal(d, sizeof d, c_pub, cbk, &m);
	memcpy(d + 6, a_pub, 32);
	assert_int_equal(disco_open(d, n, ba, &got), -EBADMSG);
}

/* Every single-bit change is refused the way a receiver would meet it: it
 * is no longer disco, or the key field now names another key and B's
 * shared key with that key (whoever owns it) does not open it, or the key
 * is unchanged and the tag fails. */
static void every_bit_flip_fails(void **state)
{
	uint8_t d[DISCO_MAX_LEN], q[DISCO_MAX_LEN], shared[DISCO_SHARED_LEN];
	struct disco_msg m = cmm(3, false), got;
	size_t n = disco_seal(d, sizeof d, a_pub, ab, &m);
	unsigned not_disco = 0, other_key = 0, bad_tag = 0;
	for (size_t bit = 0; bit < n * 8; bit++) {
		memcpy(q, d, n);
		q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (!disco_is_message(q, n)) {
			assert_int_equal(disco_open(q, n, ba, &got), -EBADMSG);
			not_disco++;
		} else if (memcmp(disco_sender_key(q), a_pub, 32) != 0) {
			if (disco_shared(shared, disco_sender_key(q), b_priv) == 0)
				assert_int_equal(disco_open(q, n, shared, &got),
				                 -EBADMSG);
			/* Bit 255: the same X25519 key spelled another way
			 * (it would open with A's shared key), refused as
			 * non-canonical. */
			if (bit == (6 + 31) * 8 + 7) {
				assert_int_equal(
				    disco_shared(shared, disco_sender_key(q), b_priv),
				    -EINVAL);
				assert_int_equal(disco_open(q, n, ba, &got), -EBADMSG);
			}
			other_key++;
		} else {
			assert_int_equal(disco_open(q, n, ba, &got), -EBADMSG);
			bad_tag++;
		}
	}
	assert_int_equal(not_disco, 6 * 8);
	assert_int_equal(other_key, 32 * 8);
	assert_int_equal(bad_tag, (n - 38) * 8);
	assert_int_equal(disco_open(d, n, ba, &got), 0);
}

/* Each prefix in a heap block of exactly its size, so ASan sees a read past
 * the end. */
static void truncations(const struct disco_msg *m)
{
	uint8_t d[DISCO_MAX_LEN];
	size_t n = disco_seal(d, sizeof d, a_pub, ab, m);
	assert_true(n > 0);
	struct disco_msg got;
	for (size_t k = 0; k < n; k++) {
		uint8_t *p = malloc(k ? k : 1);
		assert_non_null(p);
		memcpy(p, d, k);
		assert_int_equal(disco_is_message(p, k), k >= DISCO_MIN_LEN);
		assert_int_equal(disco_open(p, k, ba, &got), -EBADMSG);
		/* Sealing into too small a buffer writes nothing past it. */
		assert_int_equal(disco_seal(p, k, a_pub, ab, m), 0);
		free(p);
	}
	uint8_t *p = malloc(n);
	assert_non_null(p);
	memcpy(p, d, n);
	assert_int_equal(disco_open(p, n, ba, &got), 0);
	assert_int_equal(disco_seal(p, n, a_pub, ab, m), n);
	free(p);
}

static void truncated_is_refused(void **state)
{
	struct disco_msg m = ping();
	truncations(&m);
	m = pong(addr6("2001:db8::2", 7));
	truncations(&m);
	m = cmm(DISCO_CALLMEMAYBE_MAX, false);
	truncations(&m);
}

/* Seals plain from A to B and opens it as B. */
static int open_plain(const uint8_t *plain, size_t len, struct disco_msg *m)
{
	uint8_t d[DISCO_OPEN_MAX];
	size_t n = disco_seal_plain(d, sizeof d, a_pub, ab, NULL, plain, len);
	assert_int_equal(n, DISCO_MIN_LEN + len);
	return disco_open(d, n, ba, m);
}

static void unknown_type_or_version(void **state)
{
	uint8_t plain[2 + 44] = {0};
	struct disco_msg m;
	plain[0] = 7;
	plain[1] = 1;
	assert_int_equal(open_plain(plain, sizeof plain, &m), -EPROTO);
	assert_int_equal(m.type, 7);
	assert_int_equal(m.version, 1);
	plain[0] = 0;
	assert_int_equal(open_plain(plain, sizeof plain, &m), -EPROTO);
	assert_int_equal(open_plain(plain, 2, &m), -EPROTO);
	/* A known type of another version. */
	plain[0] = DISCO_PING;
	plain[1] = 2;
	assert_int_equal(open_plain(plain, sizeof plain, &m), -EPROTO);
	assert_int_equal(m.type, DISCO_PING);
	assert_int_equal(m.version, 2);
	plain[1] = 0;
	assert_int_equal(open_plain(plain, sizeof plain, &m), -EPROTO);
	plain[1] = 1;
	assert_int_equal(open_plain(plain, sizeof plain, &m), 0);
}

/* plain (a valid message's plaintext) opens, with extra bytes after it too,
 * and every shorter prefix is malformed. */
static void prefixes_are_malformed(const uint8_t *plain, size_t len)
{
	struct disco_msg m;
	uint8_t longer[DISCO_PLAIN_MAX + 8];
	assert_true(len + 8 <= sizeof longer);
	assert_int_equal(open_plain(plain, len, &m), 0);
	memcpy(longer, plain, len);
	memset(longer + len, 0xEE, 8);
	assert_int_equal(open_plain(longer, len + 8, &m), 0);
	for (size_t k = 0; k < len; k++) {
		memset(&m, 0xA5, sizeof m);
		assert_int_equal(open_plain(plain, k, &m), -EINVAL);
		if (k >= 2) {
			assert_int_equal(m.type, plain[0]);
			assert_int_equal(m.version, 1);
			assert_int_equal(m.n_eps, 0);
			assert_int_equal(m.src.family, 0);
		}
	}
}

static void malformed_bodies(void **state)
{
	struct disco_msg m;
	/* PING: txid and node key. */
	uint8_t p[2 + 44] = {DISCO_PING, 1};
	prefixes_are_malformed(p, sizeof p);
	/* PONG: txid and an IPv4 or IPv6 address. */
	uint8_t q4[2 + 12 + 7] = {DISCO_PONG, 1, [14] = 4, 0x12, 0x34, 198, 18, 0, 1};
	prefixes_are_malformed(q4, sizeof q4);
	uint8_t q6[2 + 12 + 19] = {DISCO_PONG, 1,    [14] = 6, 0x12, 0x34,
	                           0x20,       0x01, 0x0d,     0xb8};
	prefixes_are_malformed(q6, sizeof q6);
	/* Family 5 or 0, with room for either address size. */
	q6[14] = 5;
	assert_int_equal(open_plain(q6, sizeof q6, &m), -EINVAL);
	q6[14] = 0;
	assert_int_equal(open_plain(q6, sizeof q6, &m), -EINVAL);
	/* Family 6 with an IPv4 address's room only. */
	q4[14] = 6;
	assert_int_equal(open_plain(q4, sizeof q4, &m), -EINVAL);

	/* CALL_ME_MAYBE: n, then n endpoints. */
	uint8_t c[3 + 2 * 7 + 19] = {DISCO_CALL_ME_MAYBE,
	                             1,
	                             3,
	                             4,
	                             0,
	                             1,
	                             198,
	                             18,
	                             0,
	                             1,
	                             6,
	                             0,
	                             2,
	                             0x20,
	                             0x01,
	                             0x0d,
	                             0xb8,
	                             [28] = 1,
	                             4,
	                             0,
	                             3,
	                             100,
	                             64,
	                             0,
	                             1};
	prefixes_are_malformed(c, sizeof c);
	assert_int_equal(open_plain(c, sizeof c, &m), 0);
	assert_int_equal(m.n_eps, 3);
	assert_int_equal(m.eps[1].family, 6);
	assert_int_equal(m.eps[1].port, 2);
	assert_int_equal(m.eps[2].addr[0], 100);
	c[10] = 5; /* the second endpoint's family */
	assert_int_equal(open_plain(c, sizeof c, &m), -EINVAL);
	assert_int_equal(m.n_eps, 0);
	c[10] = 6;
	c[2] = 4; /* one more than there are */
	assert_int_equal(open_plain(c, sizeof c, &m), -EINVAL);

	/* n over the maximum, even with that many endpoints present. */
	uint8_t big[3 + 40 * 7];
	big[0] = DISCO_CALL_ME_MAYBE;
	big[1] = 1;
	for (unsigned i = 0; i < 40; i++) {
		const uint8_t ep[7] = {4, 0x80, (uint8_t)i, 198, 18, 1, (uint8_t)i};
		memcpy(big + 3 + 7 * i, ep, 7);
	}
	big[2] = DISCO_CALLMEMAYBE_MAX;
	assert_int_equal(open_plain(big, 3 + 32 * 7, &m), 0);
	assert_int_equal(m.n_eps, 32);
	assert_int_equal(m.eps[31].addr[3], 31);
	big[2] = DISCO_CALLMEMAYBE_MAX + 1;
	assert_int_equal(open_plain(big, sizeof big, &m), -EINVAL);
	big[2] = 255;
	assert_int_equal(open_plain(big, sizeof big, &m), -EINVAL);

	/* BIRTHDAY: an address, socks and probes. */
	uint8_t b4[2 + 7 + 4] = {DISCO_BIRTHDAY, 1, 4, 0, 0, 198, 18, 10, 4, 1, 0, 5, 0xdc};
	prefixes_are_malformed(b4, sizeof b4);
	assert_int_equal(open_plain(b4, sizeof b4, &m), 0);
	assert_int_equal(m.socks, 256);
	assert_int_equal(m.probes, 1500);
	assert_int_equal(m.pub.addr[3], 4);
	b4[2] = 6; /* family 6 without room for its address */
	assert_int_equal(open_plain(b4, sizeof b4, &m), -EINVAL);
	b4[2] = 0;
	assert_int_equal(open_plain(b4, sizeof b4, &m), -EINVAL);
}

/* A CALL_ME_MAYBE's trailer (nat, then the public address) is optional; one
 * cut short or with a bad address is malformed; a NAT kind this version
 * does not know reads as unknown. */
static void call_me_maybe_trailer(void **state)
{
	struct disco_msg m;
	uint8_t c[3 + 7 + 1 + 7] = {DISCO_CALL_ME_MAYBE, 1, 1, 4, 0, 1, 198, 18, 0, 1,
	                            DISCO_NAT_HARD, 4, 0xa2, 0x69, 198, 18, 10, 4};
	assert_int_equal(open_plain(c, sizeof c, &m), 0);
	assert_int_equal(m.nat, DISCO_NAT_HARD);
	assert_int_equal(m.pub.family, 4);
	assert_int_equal(m.pub.port, 41577);
	assert_int_equal(m.pub.addr[3], 4);
	/* Without the trailer: the old form, NAT unknown. */
	assert_int_equal(open_plain(c, 10, &m), 0);
	assert_int_equal(m.nat, DISCO_NAT_UNKNOWN);
	assert_int_equal(m.pub.family, 0);
	/* A nat byte and part of an address, or none. */
	for (size_t k = 11; k < sizeof c; k++) {
		memset(&m, 0xA5, sizeof m);
		assert_int_equal(open_plain(c, k, &m), -EINVAL);
		assert_int_equal(m.nat, 0);
		assert_int_equal(m.n_eps, 0);
	}
	c[11] = 5; /* the address's family */
	assert_int_equal(open_plain(c, sizeof c, &m), -EINVAL);
	c[11] = 4;
	c[10] = 3; /* a NAT kind from a later version */
	assert_int_equal(open_plain(c, sizeof c, &m), 0);
	assert_int_equal(m.nat, DISCO_NAT_UNKNOWN);
	assert_int_equal(m.pub.family, 0);
	assert_int_equal(m.n_eps, 1);
}

static void seal_refuses_invalid(void **state)
{
	uint8_t d[DISCO_MAX_LEN];
	struct disco_msg m = ping();
	m.type = 5;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m.type = 0;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m = pong(addr4("198.18.0.1", 1));
	m.src.family = 5;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m.src.family = AF_INET; /* a socket family, not ours */
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m = cmm(DISCO_CALLMEMAYBE_MAX, false);
	m.n_eps = DISCO_CALLMEMAYBE_MAX + 1;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m = cmm(3, false);
	m.eps[2].family = 0;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m.eps[2].family = 6;
	assert_true(disco_seal(d, sizeof d, a_pub, ab, &m) > 0);
	m.nat = DISCO_NAT_HARD + 1;
	m.pub = addr4("198.18.10.4", 1);
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m.nat = DISCO_NAT_EASY;
	m.pub.family = 0;
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
	m = (struct disco_msg){.type = DISCO_BIRTHDAY, .socks = 1, .probes = 1};
	assert_int_equal(disco_seal(d, sizeof d, a_pub, ab, &m), 0);
}

/* The longest datagram disco_open tries is DISCO_OPEN_MAX; one byte more is
 * refused unopened, whatever it holds. */
static void longest_datagram(void **state)
{
	static uint8_t plain[DISCO_OPEN_MAX], d[DISCO_OPEN_MAX + 1];
	struct disco_msg m;
	plain[0] = DISCO_PING;
	plain[1] = 1;
	size_t most = DISCO_OPEN_MAX - DISCO_MIN_LEN;
	assert_int_equal(disco_seal_plain(d, sizeof d, a_pub, ab, NULL, plain, most),
	                 DISCO_OPEN_MAX);
	assert_int_equal(disco_open(d, DISCO_OPEN_MAX, ba, &m), 0);
	assert_int_equal(disco_seal_plain(d, sizeof d, a_pub, ab, NULL, plain, most + 1),
	                 0);
	/* A longer one built by hand: the box of most+1 bytes is valid, but
	 * never tried. */
	uint8_t nonce[DISCO_NONCE_LEN] = {1};
	memcpy(d, "MDSC\xF0\x9F", 6);
	memcpy(d + 6, a_pub, 32);
	memcpy(d + 38, nonce, sizeof nonce);
	assert_int_equal(crypto_box_easy_afternm(d + 62, plain, most + 1, nonce, ab), 0);
	assert_true(disco_is_message(d, sizeof d));
	assert_int_equal(disco_open(d, sizeof d, ba, &m), -EBADMSG);
	/* The same seal API with a given nonce is deterministic. */
	uint8_t d1[128], d2[128];
	assert_int_equal(disco_seal_plain(d1, sizeof d1, a_pub, ab, nonce, plain, 46),
	                 124);
	assert_int_equal(disco_seal_plain(d2, sizeof d2, a_pub, ab, nonce, plain, 46),
	                 124);
	assert_memory_equal(d1, d2, 124);
}

/* Whatever follows their headers, no WireGuard or STUN datagram is taken
 * for disco, and no disco datagram for STUN. */
static void magic_is_unambiguous(void **state)
{
	static const size_t wg_len[] = {0, WG_MSG_INITIATION_LEN, WG_MSG_RESPONSE_LEN,
	                                WG_MSG_COOKIE_LEN, WG_MSG_DATA_LEN(1200)};
	uint8_t d[DISCO_OPEN_MAX];
	for (unsigned type = WG_MSG_HANDSHAKE_INITIATION; type <= WG_MSG_DATA; type++) {
		for (int fill = 0; fill < 3; fill++) {
			memset(d, 0, sizeof d);
			if (fill == 1)
				randombytes_buf(d, wg_len[type]);
			/* fill 2: the rest of the magic where WireGuard's
			 * index begins, and 'M' in every later byte. */
			if (fill == 2)
				memset(d, DISCO_MAGIC_0, wg_len[type]);
			wg_put_le32(d, type);
			if (fill == 2) {
				d[4] = DISCO_MAGIC_4;
				d[5] = DISCO_MAGIC_5;
			}
			assert_false(disco_is_message(d, wg_len[type]));
		}
	}
	/* STUN: a request, its response, and a classic (RFC 3489) request. */
	uint8_t txid[STUN_TXID_LEN];
	randombytes_buf(txid, sizeof txid);
	size_t n = stun_binding_request(d, sizeof d, txid, "mesh-proxy");
	assert_true(n >= STUN_HDR_LEN && stun_is_message(d, n));
	assert_false(disco_is_message(d, n));
	struct stun_msg req;
	assert_int_equal(stun_parse(d, n, &req), 0);
	struct stun_addr mapped = {.family = 6, .port = 41641};
	uint8_t r[256];
	n = stun_binding_response(r, sizeof r, &req, &mapped, NULL);
	assert_true(n > 0 && stun_is_message(r, n));
	assert_false(disco_is_message(r, n));
	memset(d, 0xF0, 80);
	d[0] = 0x00;
	d[1] = 0x01;
	d[2] = 0;
	d[3] = 0;
	assert_false(disco_is_message(d, 80));

	/* Disco datagrams of every type and size are not STUN, even with a
	 * STUN-like length in bytes 2..3. */
	const struct disco_msg ms[] = {ping(), pong(addr4("198.19.0.1", 3478)),
	                               cmm(0, false), cmm(DISCO_CALLMEMAYBE_MAX, true)};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		n = disco_seal(d, sizeof d, a_pub, ab, &ms[i]);
		assert_true(n > 0);
		assert_false(stun_is_message(d, n));
		d[2] = (uint8_t)((n - STUN_HDR_LEN) >> 8);
		d[3] = (uint8_t)(n - STUN_HDR_LEN);
		assert_false(stun_is_message(d, n));
		/* Nor a WireGuard message: type byte and zero bytes. */
		assert_true(d[0] < 1 || d[0] > 4 || d[1] || d[2] || d[3]);
	}
}

static void low_order_or_noncanonical_key_refused(void **state)
{
	/* The small-order points of Curve25519 (and their non-canonical
	 * encodings, u + p). */
	static const char *low[] = {
	    "0000000000000000000000000000000000000000000000000000000000000000",
	    "0100000000000000000000000000000000000000000000000000000000000000",
	    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	};
	for (size_t i = 0; i < sizeof low / sizeof low[0]; i++) {
		uint8_t key[32], shared[DISCO_SHARED_LEN];
		assert_int_equal(sodium_hex2bin(key, 32, low[i], 64, NULL, NULL, NULL),
		                 0);
		memset(shared, 0xAA, sizeof shared);
		assert_int_equal(disco_shared(shared, key, a_priv), -EINVAL);
		uint8_t zero[DISCO_SHARED_LEN] = {0};
		assert_memory_equal(shared, zero, sizeof shared);
	}
	/* Another spelling of a valid key: bit 255 set, or u + p. */
	uint8_t key[32], shared[DISCO_SHARED_LEN];
	memcpy(key, c_pub, 32);
	key[31] |= 0x80;
	assert_int_equal(disco_shared(shared, key, a_priv), -EINVAL);
	assert_int_equal(sodium_hex2bin(key, 32,
	                                "f1ffffffffffffffffffffffffffffff"
	                                "ffffffffffffffffffffffffffffff7f",
	                                64, NULL, NULL, NULL),
	                 0);
	assert_int_equal(disco_shared(shared, key, a_priv), -EINVAL);
	key[0] = 0xec; /* p - 1: canonical, of low order */
	assert_int_equal(disco_shared(shared, key, a_priv), -EINVAL);

	uint8_t s1[DISCO_SHARED_LEN], s2[DISCO_SHARED_LEN];
	assert_int_equal(disco_shared(s1, c_pub, a_priv), 0);
	assert_int_equal(disco_shared(s2, a_pub, c_priv), 0);
	assert_memory_equal(s1, s2, sizeof s1);
	assert_memory_not_equal(s1, ab, sizeof s1);
}

static void sockaddr_conversions(void **state)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(41641)};
	inet_pton(AF_INET, "198.18.5.6", &s4.sin_addr);
	struct disco_addr a;
	assert_true(disco_addr_from_sockaddr(&a, (struct sockaddr *)&s4));
	struct disco_addr want4 = addr4("198.18.5.6", 41641);
	assert_true(disco_addr_equal(&a, &want4));
	assert_memory_equal(&a.addr[4], (uint8_t[12]){0}, 12);
	struct sockaddr_storage ss;
	assert_int_equal(disco_addr_to_sockaddr(&a, &ss), sizeof s4);
	assert_memory_equal(&ss, &s4, sizeof s4);

	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(3478)};
	inet_pton(AF_INET6, "2001:db8::9", &s6.sin6_addr);
	assert_true(disco_addr_from_sockaddr(&a, (struct sockaddr *)&s6));
	struct disco_addr want6 = addr6("2001:db8::9", 3478);
	assert_true(disco_addr_equal(&a, &want6));
	assert_false(disco_addr_equal(&a, &want4));
	assert_int_equal(disco_addr_to_sockaddr(&a, &ss), sizeof s6);
	assert_memory_equal(&ss, &s6, sizeof s6);

	/* An IPv4 sender seen on a dual-stack socket is the same IPv4
	 * address. */
	inet_pton(AF_INET6, "::ffff:198.18.5.6", &s6.sin6_addr);
	s6.sin6_port = htons(41641);
	assert_true(disco_addr_from_sockaddr(&a, (struct sockaddr *)&s6));
	assert_true(disco_addr_equal(&a, &want4));

	struct sockaddr un = {.sa_family = AF_UNIX};
	assert_false(disco_addr_from_sockaddr(&a, &un));
	a.family = 5;
	assert_int_equal(disco_addr_to_sockaddr(&a, &ss), 0);
	assert_false(disco_addr_equal(&a, &a));
	want4.port++;
	struct disco_addr again = addr4("198.18.5.6", 41641);
	assert_false(disco_addr_equal(&again, &want4));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trips),
	    cmocka_unit_test(wire_format_is_crypto_box),
	    cmocka_unit_test(other_key_does_not_open),
	    cmocka_unit_test(every_bit_flip_fails),
	    cmocka_unit_test(truncated_is_refused),
	    cmocka_unit_test(unknown_type_or_version),
	    cmocka_unit_test(malformed_bodies),
	    cmocka_unit_test(call_me_maybe_trailer),
	    cmocka_unit_test(seal_refuses_invalid),
	    cmocka_unit_test(longest_datagram),
	    cmocka_unit_test(magic_is_unambiguous),
	    cmocka_unit_test(low_order_or_noncanonical_key_refused),
	    cmocka_unit_test(sockaddr_conversions),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
