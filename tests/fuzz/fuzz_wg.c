/* Fuzzes core/wg's receive path (wg_device_receive) with a device that has
 * one peer, played by the harness. Outgoing datagrams are captured with the
 * device's tx hook, so the harness can complete real handshakes in both
 * directions and then send authentic transport packets with arbitrary inner
 * bytes; that is what reaches the deep code (session rotation, replay
 * window, inner IP checks, allowed-IPs). Checks: every packet handed to the
 * rx callback has a source inside the peer's allowed IPs and a sane length;
 * data the device sends after a handshake decrypts to what was sent.
 *
 * The input is a program, one op byte then its operands, until it runs out:
 *   0 raw:        n = byte * 4; n bytes fed as one datagram
 *   1 peer init:  the peer initiates (mutation byte, offset byte); consumes
 *                 the device's response if one comes
 *   2 dev init:   the device gets an IP packet for the peer (length byte),
 *                 initiates; the peer answers (mutation byte, offset byte)
 *   3 peer data:  length byte, then that many bytes of inner packet (first
 *                 byte forced to 0x45 or 0x60 by a flag byte), sealed with
 *                 the peer's session and the next counter (or a replayed one)
 *   4 cookie:     the peer answers the device's last initiation with a
 *                 cookie reply
 *   5 load:       byte % 3 - 1 -> wg_device_force_under_load
 *   6 refeed:     the last datagram fed again, one byte flipped (offset byte)
 *   7 timers/map: byte b; b % 4: 0 handshake_all, 1 keepalive, 2 and 3 a
 *                 network-map change between packets chosen by b >> 2:
 *                 remove the peer, add it back (same key; a fresh
 *                 handshake is needed), change its endpoint (v4, v6, none),
 *                 replace its allowed IPs (subsets of 100.64.0.0/24 and
 *                 fd00::/64, or none), or its persistent keepalive */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/wg/cookie.h"
#include "core/wg/device.h"
#include "core/wg/device_internal.h"
#include "core/wg/messages.h"
#include "core/wg/noise.h"
#include "core/wg/peer.h"

/* Room for every staged packet flushed after a handshake, plus slack. */
#define MAX_TX    (WG_MAX_STAGED_PACKETS + 8)
#define MAX_DGRAM 4096

struct captured {
	uint8_t buf[MAX_DGRAM];
	size_t len;
};

static struct harness {
	struct wg_device *dev;
	struct wg_peer *dev_peer; /* the device's view of the harness */
	struct wg_noise_identity me;
	uint8_t dev_pub[32];
	struct wg_handshake hs; /* harness -> device */
	struct wg_cookie_maker maker;
	struct wg_cookie_checker checker;
	struct wg_keypair kp;
	bool have_kp;
	struct captured tx[MAX_TX];
	size_t n_tx;
	bool tx_lost; /* a datagram did not fit the capture since n_tx = 0 */
	uint8_t last[MAX_DGRAM + 64];
	size_t last_len;
	uint8_t sent_plain[20 + 256];
	size_t sent_len;
} H;

static const uint8_t DEV_PRIV[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                     12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t PEER_PRIV[32] = {99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89,
                                      88, 87, 86, 85, 84, 83, 82, 81, 80, 79, 78,
                                      77, 76, 75, 74, 73, 72, 71, 70, 69, 68};

static struct event_base *base;

static void on_tx(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
	if (H.n_tx < MAX_TX && len <= MAX_DGRAM) {
		memcpy(H.tx[H.n_tx].buf, buf, len);
		H.tx[H.n_tx].len = len;
		H.n_tx++;
	} else {
		H.tx_lost = true;
	}
}

static void on_rx(void *ctx, const uint8_t *pkt, size_t len)
{
	/* Only packets from 100.64.0.0/24 or fd00::/64 may come out. */
	if (len < 20)
		abort();
	if (pkt[0] >> 4 == 4) {
		if (pkt[12] != 100 || pkt[13] != 64 || pkt[14] != 0)
			abort();
		if (((size_t)pkt[2] << 8 | pkt[3]) != len)
			abort();
	} else if (pkt[0] >> 4 == 6) {
		static const uint8_t pfx[8] = {0xfd, 0, 0, 0, 0, 0, 0, 0};
		if (len < 40 || memcmp(pkt + 8, pfx, 8) != 0)
			abort();
		if (40 + ((size_t)pkt[4] << 8 | pkt[5]) != len)
			abort();
	} else {
		abort();
	}
}

static void src_addr(struct sockaddr_storage *ss, int v6)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(51820);
		a->sin6_addr.s6_addr[15] = 1;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(51820);
		a->sin_addr.s_addr = htonl(0xc0000201);
	}
}

static void feed(const uint8_t *buf, size_t len, int v6)
{
	struct sockaddr_storage ss;

	src_addr(&ss, v6);
	if (len <= sizeof(H.last)) {
		memcpy(H.last, buf, len);
		H.last_len = len;
	}
	H.n_tx = 0;
	H.tx_lost = false;
	wg_device_receive(H.dev, buf, len, (struct sockaddr *)&ss);
}

static struct wg_handshake *lookup_dev(void *ctx, const uint8_t key[32])
{
	return memcmp(key, H.dev_pub, 32) == 0 ? &H.hs : NULL;
}

static void mutate(uint8_t *buf, size_t len, uint8_t how, uint8_t off)
{
	if (how & 1 && len)
		buf[off % len] ^= (uint8_t)(how | 1);
}

/* Captured data messages from the device: they must decrypt under our
 * session, and after a handshake we answered the packet that started it
 * must be among them. Older packets staged while earlier handshakes failed
 * go out first (oldest first), so it need not be the first one. */
static void check_device_data(void)
{
	uint8_t plain[MAX_DGRAM];
	bool saw_data = false;

	for (size_t i = 0; i < H.n_tx; i++) {
		const struct captured *c = &H.tx[i];
		if (c->len < WG_MSG_DATA_MIN_LEN || wg_le32(c->buf) != WG_MSG_DATA ||
		    !H.have_kp)
			continue;
		if (wg_le32(c->buf + 4) != H.kp.local_index)
			continue;
		if (wg_noise_open(&H.kp, c->buf, c->len, plain) != 0)
			abort();
		size_t plen = c->len - WG_MSG_DATA_MIN_LEN;
		if (plen % WG_MESSAGE_PADDING_MULTIPLE)
			abort();
		if (H.sent_len && plen) {
			saw_data = true;
			if (plen >= H.sent_len &&
			    memcmp(plain, H.sent_plain, H.sent_len) == 0)
				H.sent_len = 0;
		}
	}
	if (saw_data && H.sent_len && !H.tx_lost)
		abort();
}

static void op_peer_init(uint8_t how, uint8_t off, int v6)
{
	struct wg_msg_initiation init;
	uint8_t plain[8];

	if (wg_noise_create_initiation(&H.hs, &H.me, 0x5eed0001, &init) != 0)
		return;
	wg_cookie_add_macs(&H.maker, (uint8_t *)&init, sizeof(init), wg_now_ns());
	mutate((uint8_t *)&init, sizeof(init), how, off);
	feed((const uint8_t *)&init, sizeof(init), v6);
	for (size_t i = 0; i < H.n_tx; i++) {
		const struct captured *c = &H.tx[i];
		if (c->len != WG_MSG_RESPONSE_LEN ||
		    wg_le32(c->buf) != WG_MSG_HANDSHAKE_RESPONSE)
			continue;
		if (wg_noise_consume_response(&H.hs, &H.me, (const void *)c->buf) == 0 &&
		    wg_noise_begin_session(&H.hs, &H.kp, wg_now_ns()) == 0) {
			H.have_kp = true;
			/* Confirm with a keepalive, as an initiator does. */
			uint8_t ka[WG_MSG_DATA_MIN_LEN];
			wg_noise_seal(&H.kp, H.kp.send_counter++, ka, 0);
			feed(ka, sizeof(ka), v6);
			(void)plain;
		}
	}
}

static void op_dev_init(uint8_t plen, uint8_t how, uint8_t off)
{
	uint8_t pkt[20 + 255];
	size_t len = 20 + plen;

	memset(pkt, 0, sizeof(pkt));
	pkt[0] = 0x45;
	pkt[2] = (uint8_t)(len >> 8);
	pkt[3] = (uint8_t)len;
	pkt[9] = 17;
	pkt[12] = 100; /* 100.64.0.1 -> 100.64.0.5 */
	pkt[13] = 64;
	pkt[15] = 1;
	pkt[16] = 100;
	pkt[17] = 64;
	pkt[19] = 5;
	for (size_t i = 20; i < len; i++)
		pkt[i] = (uint8_t)i;
	H.n_tx = 0;
	H.tx_lost = false;
	if (wg_device_send(H.dev, pkt, len) != 0)
		return;
	for (size_t i = 0; i < H.n_tx; i++) {
		struct captured c = H.tx[i];
		struct wg_handshake *hs;
		struct wg_msg_response resp;

		if (c.len != WG_MSG_INITIATION_LEN ||
		    wg_le32(c.buf) != WG_MSG_HANDSHAKE_INITIATION)
			continue;
		if (wg_noise_consume_initiation(&H.me, (const void *)c.buf, wg_now_ns(),
		                                lookup_dev, NULL, &hs) != 0)
			continue;
		if (wg_noise_create_response(&H.hs, 0x5eed0002, &resp) != 0)
			continue;
		wg_cookie_add_macs(&H.maker, (uint8_t *)&resp, sizeof(resp), wg_now_ns());
		if (wg_noise_begin_session(&H.hs, &H.kp, wg_now_ns()) != 0)
			continue;
		H.have_kp = true;
		memcpy(H.sent_plain, pkt, len);
		H.sent_len = (how & 1) ? 0 : len;
		mutate((uint8_t *)&resp, sizeof(resp), how, off);
		feed((const uint8_t *)&resp, sizeof(resp), 0);
		check_device_data();
		return;
	}
}

static void op_peer_data(const uint8_t *body, size_t blen, uint8_t flags)
{
	uint8_t msg[WG_MSG_DATA_LEN(256 + 16)];
	uint8_t *plain = msg + WG_MSG_DATA_HEADER_LEN;
	size_t padded;
	uint64_t counter;

	if (!H.have_kp)
		return;
	memcpy(plain, body, blen);
	if (blen && (flags & 1))
		plain[0] = (flags & 2) ? 0x60 : 0x45;
	if (blen >= 20 && (flags & 4) && plain[0] == 0x45) {
		/* Make it look right: total length, a source in 100.64.0.0/24. */
		plain[2] = (uint8_t)(blen >> 8);
		plain[3] = (uint8_t)blen;
		plain[12] = 100;
		plain[13] = 64;
		plain[14] = 0;
	}
	padded = (flags & 8) ? blen : (blen + 15) & ~(size_t)15;
	memset(plain + blen, 0, padded - blen);
	counter = (flags & 16 && H.kp.send_counter) ? H.kp.send_counter - 1 - (flags >> 5)
	                                            : H.kp.send_counter++;
	size_t n = wg_noise_seal(&H.kp, counter, msg, padded);
	feed(msg, n, flags & 32);
	check_device_data();
}

static void op_cookie(void)
{
	for (size_t i = 0; i < H.n_tx; i++) {
		const struct captured *c = &H.tx[i];
		struct wg_msg_cookie reply;
		struct sockaddr_storage ss;

		if (c->len != WG_MSG_INITIATION_LEN && c->len != WG_MSG_RESPONSE_LEN)
			continue;
		src_addr(&ss, 0);
		wg_cookie_reply_create(&H.checker, &reply, c->buf, c->len,
		                       wg_le32(c->buf + 4), (struct sockaddr *)&ss,
		                       wg_now_ns());
		feed((const uint8_t *)&reply, sizeof(reply), 0);
		return;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (sodium_init() < 0)
		abort();
	base = event_base_new();
	return 0;
}

/* The device's peer (the harness) as configured at the start. */
static struct wg_peer *add_harness_peer(void)
{
	struct wg_peer_config pc;
	struct wg_allowed_ip ips[2];
	struct wg_peer *p;
	int err;

	memset(&pc, 0, sizeof(pc));
	memset(ips, 0, sizeof(ips));
	memcpy(pc.public_key, H.me.public_key, 32);
	ips[0].family = AF_INET;
	ips[0].addr[0] = 100;
	ips[0].addr[1] = 64;
	ips[0].cidr = 24;
	ips[1].family = AF_INET6;
	ips[1].addr[0] = 0xfd;
	ips[1].cidr = 64;
	pc.allowed_ips = ips;
	pc.n_allowed_ips = 2;
	src_addr(&pc.endpoint, 0);
	p = wg_device_add_peer(H.dev, &pc, &err);
	if (!p)
		abort();
	return p;
}

/* A network-map change between packets. */
static void op_map(uint8_t sub)
{
	struct wg_peer_config pc;
	struct wg_allowed_ip ips[2];
	struct wg_peer_info info;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, H.me.public_key, 32);
	switch (sub % 5) {
	case 0:
		if (wg_device_remove_peer(H.dev, H.me.public_key) !=
		    (H.dev_peer ? 0 : -ENOENT))
			abort();
		H.dev_peer = NULL;
		if (wg_device_peer_count(H.dev) != 0 ||
		    wg_index_table_count(H.dev->index) != 0)
			abort();
		break;
	case 1:
		if (!H.dev_peer)
			H.dev_peer = add_harness_peer();
		break;
	case 2:
		if (sub & 8)
			src_addr(&pc.endpoint, sub & 16);
		if (wg_device_update_peer(H.dev, &pc, WG_PEER_UPD_ENDPOINT) !=
		    (H.dev_peer ? 0 : -ENOENT))
			abort();
		break;
	case 3:
		memset(ips, 0, sizeof(ips));
		ips[0].family = AF_INET;
		ips[0].addr[0] = 100;
		ips[0].addr[1] = 64;
		ips[0].addr[3] = (sub & 32) ? 128 : 0;
		ips[0].cidr = (sub & 8) ? 25 : 24;
		ips[1].family = AF_INET6;
		ips[1].addr[0] = 0xfd;
		ips[1].cidr = (sub & 16) ? 64 : 72;
		pc.allowed_ips = ips;
		pc.n_allowed_ips = (sub >> 3) % 3;
		if (wg_device_update_peer(H.dev, &pc, WG_PEER_UPD_ALLOWED_IPS) !=
		    (H.dev_peer ? 0 : -ENOENT))
			abort();
		if (H.dev_peer &&
		    (wg_device_peer_info_by_key(H.dev, H.me.public_key, &info) != 0 ||
		     info.n_allowed_ips != pc.n_allowed_ips))
			abort();
		break;
	case 4:
		pc.persistent_keepalive = sub >> 3;
		if (wg_device_update_peer(H.dev, &pc, WG_PEER_UPD_KEEPALIVE) !=
		    (H.dev_peer ? 0 : -ENOENT))
			abort();
		break;
	}
}

static void setup(void)
{
	memset(&H, 0, sizeof(H));
	H.dev = wg_device_new(base, DEV_PRIV);
	if (!H.dev || wg_noise_identity_init(&H.me, PEER_PRIV) != 0)
		abort();
	crypto_scalarmult_base(H.dev_pub, H.dev->id.private_key);
	wg_device_set_rx(H.dev, on_rx, NULL);
	wg_device_set_tx_hook(H.dev, on_tx, NULL);
	H.dev_peer = add_harness_peer();
	if (wg_noise_handshake_init(&H.hs, &H.me, H.dev_pub, NULL) != 0)
		abort();
	wg_cookie_maker_init(&H.maker, H.dev_pub);
	wg_cookie_checker_init(&H.checker, H.me.public_key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	setup();
#define NEXT() (pos < size ? data[pos++] : 0)
	while (pos < size) {
		uint8_t op = data[pos++] % 8;
		switch (op) {
		case 0: {
			size_t n = (size_t)NEXT() * 4;
			int v6 = n & 4;
			if (n > size - pos)
				n = size - pos;
			feed(data + pos, n, v6);
			pos += n;
			break;
		}
		case 1: {
			uint8_t how = NEXT(), off = NEXT();
			op_peer_init(how, off, how & 2);
			break;
		}
		case 2: {
			uint8_t plen = NEXT(), how = NEXT(), off = NEXT();
			op_dev_init(plen, how, off);
			break;
		}
		case 3: {
			uint8_t flags = NEXT();
			size_t n = NEXT();
			if (n > size - pos)
				n = size - pos;
			op_peer_data(data + pos, n, flags);
			pos += n;
			break;
		}
		case 4:
			op_cookie();
			break;
		case 5:
			wg_device_force_under_load(H.dev, NEXT() % 3 - 1);
			break;
		case 6: {
			uint8_t off = NEXT();
			if (H.last_len) {
				uint8_t copy[sizeof(H.last)];
				size_t n = H.last_len;
				memcpy(copy, H.last, n);
				copy[off % n] ^= 0x10;
				feed(copy, n, 0);
			}
			break;
		}
		case 7: {
			uint8_t b = NEXT();
			H.n_tx = 0;
			H.tx_lost = false;
			if (b % 4 == 1 && H.dev_peer)
				wg_send_keepalive(H.dev_peer);
			else if (b % 4 == 0)
				wg_device_handshake_all(H.dev);
			else if (b % 4 >= 2)
				op_map(b >> 2);
			check_device_data();
			break;
		}
		}
	}
#undef NEXT
	wg_device_free(H.dev);
	wg_noise_handshake_wipe(&H.hs);
	wg_noise_keypair_wipe(&H.kp);
	return 0;
}
