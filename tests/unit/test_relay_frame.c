/* The relay's wire format (core/relay/frame.h, http.h): every frame type
 * round-trips, lengths are bounded before the body arrives, short bodies of
 * known types are refused, CLIENT_INFO proves the private key and the fresh
 * challenge, and the HTTP upgrade accepts only what it should. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/relay/frame.h"
#include "core/relay/http.h"
#include "core/relay/session.h"

static uint8_t buf[RELAY_FRAME_MAX + 16];

static void decode_one(const uint8_t *p, size_t n, struct relay_frame *f)
{
	size_t used, need;
	assert_int_equal(relay_frame_decode(p, n, f, &used, &need), RELAY_DECODE_READY);
	assert_int_equal(used, n);
	assert_int_equal(need, n);
	/* Every proper prefix is "more", never an error or a frame. */
	for (size_t k = 0; k < n; k++) {
		struct relay_frame g;
		assert_int_equal(relay_frame_decode(p, k, &g, &used, NULL),
		                 RELAY_DECODE_MORE);
		assert_int_equal(used, 0);
	}
}

static void round_trips(void **state)
{
	uint8_t k1[32], k2[32], data[1400], ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	memset(k1, 0x11, 32);
	memset(k2, 0x22, 32);
	randombytes_buf(data, sizeof data);
	struct relay_frame f;
	size_t n;

	n = relay_encode_server_key(buf, sizeof buf, k1, k2);
	decode_one(buf, n, &f);
	assert_int_equal(f.type, RELAY_FRAME_SERVER_KEY);
	assert_memory_equal(f.u.server_key.key, k1, 32);
	assert_memory_equal(f.u.server_key.challenge, k2, 32);

	uint8_t sp[32], sk[32], cp[32], ck[32], cc[32];
	crypto_box_keypair(sp, sk);
	crypto_box_keypair(cp, ck);
	randombytes_buf(cc, 32);
	uint8_t eph[32], got_eph[32];
	randombytes_buf(eph, 32);
	n = relay_encode_server_info(buf, sizeof buf, 0, 32, 60, sk, cp, cc, eph);
	decode_one(buf, n, &f);
	assert_int_equal(relay_server_info_open(&f, ck, sp, cc, got_eph), 0);
	assert_memory_equal(got_eph, eph, 32);
	assert_int_equal(f.u.server_info.version, RELAY_PROTO_VERSION);
	assert_int_equal(f.u.server_info.queue_packets, 32);
	assert_int_equal(f.u.server_info.keepalive_s, 60);

	n = relay_encode_packet(buf, sizeof buf, RELAY_FRAME_SEND_PACKET, k1, data, 1400);
	decode_one(buf, n, &f);
	assert_int_equal(f.type, RELAY_FRAME_SEND_PACKET);
	assert_memory_equal(f.u.packet.key, k1, 32);
	assert_int_equal(f.u.packet.data_len, 1400);
	assert_memory_equal(f.u.packet.data, data, 1400);

	n = relay_encode_packet(buf, sizeof buf, RELAY_FRAME_RECV_PACKET, k2, data, 1);
	decode_one(buf, n, &f);
	assert_int_equal(f.type, RELAY_FRAME_RECV_PACKET);
	assert_int_equal(f.u.packet.data_len, 1);

	n = relay_encode_forward(buf, sizeof buf, k1, k2, data, 100);
	decode_one(buf, n, &f);
	assert_memory_equal(f.u.packet.src, k1, 32);
	assert_memory_equal(f.u.packet.dst, k2, 32);
	assert_int_equal(f.u.packet.data_len, 100);

	n = relay_encode_keepalive(buf, sizeof buf);
	decode_one(buf, n, &f);
	assert_int_equal(f.type, RELAY_FRAME_KEEPALIVE);

	n = relay_encode_peer(buf, sizeof buf, RELAY_FRAME_PEER_GONE, k2,
	                      RELAY_GONE_NOT_HERE);
	decode_one(buf, n, &f);
	assert_int_equal(f.u.peer.reason, RELAY_GONE_NOT_HERE);
	n = relay_encode_peer(buf, sizeof buf, RELAY_FRAME_PEER_PRESENT, k2, 0);
	decode_one(buf, n, &f);
	assert_memory_equal(f.u.peer.key, k2, 32);

	n = relay_encode_ping(buf, sizeof buf, RELAY_FRAME_PONG, ping);
	decode_one(buf, n, &f);
	assert_memory_equal(f.u.ping.data, ping, 8);

	n = relay_encode_health(buf, sizeof buf, "home region overloaded");
	decode_one(buf, n, &f);
	assert_int_equal(f.u.text.text_len, 22);

	n = relay_encode_restarting(buf, sizeof buf, 1000, 30000);
	decode_one(buf, n, &f);
	assert_int_equal(f.u.restarting.reconnect_in_ms, 1000);
	assert_int_equal(f.u.restarting.try_for_ms, 30000);

	n = relay_encode_refused(buf, sizeof buf, RELAY_REFUSED_NOT_ADMITTED,
	                         "not a node");
	decode_one(buf, n, &f);
	assert_int_equal(f.u.text.reason, RELAY_REFUSED_NOT_ADMITTED);
	assert_memory_equal(f.u.text.text, "not a node", 10);

	/* Largest payload fits; one more byte does not encode. */
	static uint8_t big[RELAY_PACKET_MAX + 1];
	n = relay_encode_forward(buf, sizeof buf, k1, k2, big, RELAY_PACKET_MAX);
	assert_int_equal(n, RELAY_FRAME_MAX - RELAY_TAG_LEN); /* room for a tag */
	decode_one(buf, n, &f);
	assert_int_equal(
	    relay_encode_forward(buf, sizeof buf, k1, k2, big, RELAY_PACKET_MAX + 1), 0);
	assert_int_equal(
	    relay_encode_packet(buf, sizeof buf, RELAY_FRAME_SEND_PACKET, k1, data, 0),
	    0);
	/* Too small an output buffer: 0, never a partial write past it. */
	for (size_t cap = 0; cap < RELAY_HDR_LEN + 32 + 10; cap++)
		assert_int_equal(
		    relay_encode_packet(buf, cap, RELAY_FRAME_SEND_PACKET, k1, data, 10),
		    0);
}

static void lengths_and_short_bodies(void **state)
{
	struct relay_frame f;
	size_t used, need;
	/* An oversized length is refused from the header alone. */
	uint8_t h[5] = {RELAY_FRAME_SEND_PACKET, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(relay_frame_decode(h, 5, &f, &used, &need), -EMSGSIZE);
	uint32_t over = RELAY_FRAME_BODY_MAX + 1;
	h[1] = (uint8_t)(over >> 24), h[2] = (uint8_t)(over >> 16);
	h[3] = (uint8_t)(over >> 8), h[4] = (uint8_t)over;
	assert_int_equal(relay_frame_decode(h, 5, &f, &used, &need), -EMSGSIZE);
	/* The maximum is announced as needed, not an error. */
	over--;
	h[1] = (uint8_t)(over >> 24), h[2] = (uint8_t)(over >> 16);
	h[3] = (uint8_t)(over >> 8), h[4] = (uint8_t)over;
	assert_int_equal(relay_frame_decode(h, 5, &f, &used, &need), RELAY_DECODE_MORE);
	assert_int_equal(need, RELAY_FRAME_MAX);

	/* Known types with bodies too short for their fields. */
	const struct {
		uint8_t type;
		size_t len;
	} bad[] = {
	    {RELAY_FRAME_SERVER_KEY, RELAY_SERVER_KEY_LEN - 1},
	    {RELAY_FRAME_CLIENT_INFO, RELAY_CLIENT_INFO_LEN - 1},
	    {RELAY_FRAME_SERVER_INFO, RELAY_SERVER_INFO_LEN - 1},
	    {RELAY_FRAME_SEND_PACKET, 32}, /* a key and no payload */
	    {RELAY_FRAME_RECV_PACKET, 10},
	    {RELAY_FRAME_FORWARD, 64},
	    {RELAY_FRAME_PEER_GONE, 32},
	    {RELAY_FRAME_PEER_PRESENT, 31},
	    {RELAY_FRAME_PING, 7},
	    {RELAY_FRAME_PONG, 0},
	    {RELAY_FRAME_HEALTH, RELAY_TEXT_MAX + 1},
	    {RELAY_FRAME_RESTARTING, 7},
	    {RELAY_FRAME_REFUSED, 0},
	    {RELAY_FRAME_SEND_PACKET, 32 + RELAY_PACKET_MAX + 1},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(buf, 0, bad[i].len + 5);
		relay_encode_header(buf, sizeof buf, bad[i].type, bad[i].len);
		assert_int_equal(relay_frame_decode(buf, bad[i].len + 5, &f, &used, NULL),
		                 -EBADMSG);
	}
	/* An unknown type is returned for the caller to skip; extra bytes after
	 * a fixed body are ignored (later versions may add fields). */
	relay_encode_header(buf, sizeof buf, 0x7f, 3);
	assert_int_equal(relay_frame_decode(buf, 8, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(f.type, 0x7f);
	assert_int_equal(used, 8);
	assert_null(relay_frame_type_name(0x7f));
	relay_encode_header(buf, sizeof buf, RELAY_FRAME_SERVER_INFO,
	                    RELAY_SERVER_INFO_LEN + 3);
	assert_int_equal(relay_frame_decode(buf,
	                                    RELAY_HDR_LEN + RELAY_SERVER_INFO_LEN + 3, &f,
	                                    &used, NULL),
	                 RELAY_DECODE_READY);
	/* Two frames back to back: the first is returned with its length. */
	size_t a = relay_encode_keepalive(buf, sizeof buf);
	size_t b = relay_encode_health(buf + a, sizeof buf - a, "x");
	assert_int_equal(relay_frame_decode(buf, a + b, &f, &used, NULL),
	                 RELAY_DECODE_READY);
	assert_int_equal(used, a);
	assert_int_equal(f.type, RELAY_FRAME_KEEPALIVE);
}

static void client_info_proves_key(void **state)
{
	uint8_t spub[32], spriv[32], cpub[32], cpriv[32], opub[32], opriv[32];
	uint8_t chal[32], other[32], cc[32], got[32], eph[32], got_eph[32];
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cpub, cpriv);
	crypto_box_keypair(opub, opriv);
	randombytes_buf(chal, 32);
	randombytes_buf(other, 32);
	struct relay_frame f;
	size_t used;
	uint8_t ver = 0, flags = 0;

	size_t n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, spub, chal,
	                                  RELAY_CLIENT_MESH, cc, eph);
	assert_int_equal(n, RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_memory_equal(f.u.client_info.key, cpub, 32);
	assert_int_equal(
	    relay_client_info_open(&f, spriv, chal, &ver, &flags, got, got_eph), 0);
	assert_int_equal(ver, RELAY_PROTO_VERSION);
	assert_int_equal(flags, RELAY_CLIENT_MESH);
	assert_memory_equal(got, cc, 32); /* the client's challenge came through */
	uint8_t eph_pub[32];
	crypto_scalarmult_base(eph_pub, eph);
	assert_memory_equal(got_eph, eph_pub, 32); /* and its ephemeral key */
	/* A replay on a new connection (another challenge) fails. */
	assert_int_equal(
	    relay_client_info_open(&f, spriv, other, &ver, &flags, got, got_eph),
	    -EBADMSG);
	/* Claiming another node's key without its private key fails: sealed
	 * with our private key, but the frame says opub. */
	memcpy(buf + RELAY_HDR_LEN, opub, 32);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(
	    relay_client_info_open(&f, spriv, chal, &ver, &flags, got, got_eph),
	    -EBADMSG);
	/* Sealed to another server: that server's key does not open it here. */
	n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, opub, chal, 0, cc, eph);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(
	    relay_client_info_open(&f, spriv, chal, &ver, &flags, got, got_eph),
	    -EBADMSG);
	/* A flipped byte in the box. */
	n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, spub, chal, 0, cc, eph);
	buf[n - 1] ^= 1;
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(
	    relay_client_info_open(&f, spriv, chal, &ver, &flags, got, got_eph),
	    -EBADMSG);
}

/* SERVER_INFO proves the relay holds the key the client sealed to: only the
 * holder of spriv can seal the client's challenge for it. */
static void server_info_proves_key(void **state)
{
	uint8_t spub[32], spriv[32], cpub[32], cpriv[32], opub[32], opriv[32], cc[32],
	    other[32], eph[32], reph[32];
	randombytes_buf(eph, 32);
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cpub, cpriv);
	crypto_box_keypair(opub, opriv);
	randombytes_buf(cc, 32);
	randombytes_buf(other, 32);
	struct relay_frame f;
	size_t used;
	size_t n =
	    relay_encode_server_info(buf, sizeof buf, 0, 64, 60, spriv, cpub, cc, eph);
	assert_int_equal(n, RELAY_HDR_LEN + RELAY_SERVER_INFO_LEN);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc, reph), 0);
	/* Another challenge (a SERVER_INFO replayed from an earlier connection). */
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, other, reph), -EBADMSG);
	/* A relay that does not hold spub's private key (a pass-through that
	 * answers with its own key). */
	n = relay_encode_server_info(buf, sizeof buf, 0, 64, 60, opriv, cpub, cc, eph);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc, reph), -EBADMSG);
	/* Sealed for another client. */
	n = relay_encode_server_info(buf, sizeof buf, 0, 64, 60, spriv, opub, cc, eph);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc, reph), -EBADMSG);
}

/* Both ends of a session, set up as the handshake does. */
static void session_pair(struct relay_session *cs, struct relay_session *ss,
                         const uint8_t *cchal_override, const uint8_t *set_override)
{
	uint8_t cpub[32], cpriv[32], spub[32], spriv[32], ce[32], cepub[32], se[32],
	    sepub[32], chal[32], cchal[32];
	crypto_box_keypair(cpub, cpriv);
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cepub, ce);
	crypto_box_keypair(sepub, se);
	randombytes_buf(chal, 32);
	randombytes_buf(cchal, 32);
	uint8_t set[RELAY_SETTINGS_LEN];
	relay_encode_settings(set, RELAY_PROTO_VERSION, 0, 64, 30);
	assert_int_equal(
	    relay_session_init(cs, true, ce, sepub, cpub, spub, chal, cchal, set), 0);
	assert_int_equal(relay_session_init(ss, false, se, cepub, cpub, spub, chal,
	                                    cchal_override ? cchal_override : cchal,
	                                    set_override ? set_override : set),
	                 0);
	/* The ephemeral private keys are wiped. */
	uint8_t zero[32] = {0};
	assert_memory_equal(ce, zero, 32);
	assert_memory_equal(se, zero, 32);
}

/* Review relay H2: every frame after the handshake is sealed; a frame that
 * was altered (body or header), injected, replayed, reordered or dropped
 * does not open. */
static void session_seals_frames(void **state)
{
	struct relay_session cs, ss;
	session_pair(&cs, &ss, NULL, NULL);
	uint8_t k[32], data[1400], a[2000], b[2000], c[2000];
	randombytes_buf(k, 32);
	randombytes_buf(data, sizeof data);
	struct relay_frame f;
	size_t used;
	/* Client to server, in order. */
	size_t n =
	    relay_encode_packet(a, sizeof a, RELAY_FRAME_SEND_PACKET, k, data, 1400);
	size_t sn = relay_seal(&cs, a, n, sizeof a);
	assert_int_equal(sn, n + RELAY_TAG_LEN);
	assert_int_equal(relay_hdr_len(a), 32 + 1400 + RELAY_TAG_LEN);
	assert_true(memcmp(a + RELAY_HDR_LEN + 32, data, 64) != 0); /* encrypted */
	memcpy(c, a, sn); /* for the replay below */
	assert_int_equal(relay_open(&ss, a, sn), (int)n);
	assert_int_equal(relay_frame_decode(a, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(f.type, RELAY_FRAME_SEND_PACKET);
	assert_memory_equal(f.u.packet.data, data, 1400);
	/* The same frame again (a replay) does not open. */
	assert_int_equal(relay_open(&ss, c, sn), -EBADMSG);
	/* Server to client: an empty KEEPALIVE, then a flipped body byte, then
	 * a changed type in the header. */
	n = relay_encode_keepalive(b, sizeof b);
	sn = relay_seal(&ss, b, n, sizeof b);
	assert_int_equal(sn, RELAY_HDR_LEN + RELAY_TAG_LEN);
	assert_int_equal(relay_open(&cs, b, sn), (int)RELAY_HDR_LEN);
	assert_int_equal(b[0], RELAY_FRAME_KEEPALIVE);
	assert_int_equal(relay_hdr_len(b), 0);
	/* (A failed open wipes the buffer: each try works on a copy.) */
	n = relay_encode_peer(b, sizeof b, RELAY_FRAME_PEER_GONE, k, 0);
	sn = relay_seal(&ss, b, n, sizeof b);
	memcpy(c, b, sn);
	c[RELAY_HDR_LEN] ^= 1;
	assert_int_equal(relay_open(&cs, c, sn), -EBADMSG);
	memcpy(c, b, sn);
	c[0] = RELAY_FRAME_PEER_PRESENT;
	assert_int_equal(relay_open(&cs, c, sn), -EBADMSG);
	assert_int_equal(relay_open(&cs, b, sn), (int)n); /* untouched: opens */
	/* A plain frame injected into the sealed stream does not open. */
	n = relay_encode_peer(b, sizeof b, RELAY_FRAME_PEER_PRESENT, k, 0);
	assert_int_equal(relay_open(&cs, b, n), -EBADMSG);
	/* Reordered / dropped: frame 2 before frame 1. */
	size_t n1 = relay_encode_ping(a, sizeof a, RELAY_FRAME_PING, data);
	size_t s1 = relay_seal(&cs, a, n1, sizeof a);
	size_t n2 = relay_encode_ping(b, sizeof b, RELAY_FRAME_PING, data + 8);
	size_t s2 = relay_seal(&cs, b, n2, sizeof b);
	memcpy(c, b, s2);
	assert_int_equal(relay_open(&ss, c, s2), -EBADMSG);
	assert_int_equal(relay_open(&ss, a, s1), (int)n1);
	assert_int_equal(relay_open(&ss, b, s2), (int)n2);
	/* A frame the client sealed does not open as if the server had sent
	 * it (each direction has its own key). */
	n = relay_encode_keepalive(a, sizeof a);
	sn = relay_seal(&cs, a, n, sizeof a);
	struct relay_session cs2 = cs;
	assert_int_equal(relay_open(&cs2, a, sn), -EBADMSG);
	/* Too short to hold a tag; no room to seal; not a whole frame. */
	assert_int_equal(relay_open(&ss, a, RELAY_HDR_LEN + 3), -EBADMSG);
	n = relay_encode_keepalive(a, sizeof a);
	assert_int_equal(relay_seal(&cs, a, n, n + RELAY_TAG_LEN - 1), 0);
	assert_int_equal(relay_seal(&cs, a, n + 1, sizeof a), 0);
	/* The largest packet still fits a frame once sealed. */
	static uint8_t big[RELAY_FRAME_MAX], payload[RELAY_PACKET_MAX];
	n = relay_encode_forward(big, sizeof big, k, k, payload, RELAY_PACKET_MAX);
	assert_true(n > 0);
	assert_int_equal(relay_seal(&cs, big, n, sizeof big), RELAY_FRAME_MAX);
	relay_session_wipe(&cs);
	relay_session_wipe(&ss);
}

/* Sides that disagree on anything in the handshake (here the client
 * challenge) end with different keys: nothing opens. */
static void session_binds_handshake(void **state)
{
	struct relay_session cs, ss;
	uint8_t other[32], a[64];
	randombytes_buf(other, 32);
	session_pair(&cs, &ss, other, NULL);
	size_t n = relay_encode_keepalive(a, sizeof a);
	size_t sn = relay_seal(&cs, a, n, sizeof a);
	assert_int_equal(relay_open(&ss, a, sn), -EBADMSG);
	/* SERVER_INFO's settings changed on the way (review M1: a keepalive
	 * of 65535 s): the same. */
	uint8_t set[RELAY_SETTINGS_LEN];
	relay_encode_settings(set, RELAY_PROTO_VERSION, 0, 64, 0xffff);
	session_pair(&cs, &ss, NULL, set);
	n = relay_encode_keepalive(a, sizeof a);
	sn = relay_seal(&ss, a, n, sizeof a);
	assert_int_equal(relay_open(&cs, a, sn), -EBADMSG);
	/* A low-order ephemeral key (all zero) is refused. */
	uint8_t e[32], zero[32] = {0};
	randombytes_buf(e, 32);
	assert_int_equal(
	    relay_session_init(&cs, true, e, zero, other, other, other, other, other),
	    -EINVAL);
}

/* A version-1 client's CLIENT_INFO opens but is refused by version (its box
 * has no ephemeral key), not as a bad key. */
static void client_info_old_version(void **state)
{
	uint8_t spub[32], spriv[32], cpub[32], cpriv[32], chal[32], nonce[24];
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cpub, cpriv);
	randombytes_buf(chal, 32);
	randombytes_buf(nonce, 24);
	uint8_t plain[RELAY_CLIENT_PLAIN_MIN] = {0};
	memcpy(plain, chal, 32);
	plain[32] = 1; /* version 1 */
	uint8_t body[32 + 24 + 16 + sizeof plain];
	memcpy(body, cpub, 32);
	memcpy(body + 32, nonce, 24);
	assert_int_equal(
	    crypto_box_easy(body + 56, plain, sizeof plain, nonce, spub, cpriv), 0);
	size_t n =
	    relay_encode_header(buf, sizeof buf, RELAY_FRAME_CLIENT_INFO, sizeof body);
	memcpy(buf + n, body, sizeof body);
	struct relay_frame f;
	size_t used;
	assert_int_equal(relay_frame_decode(buf, n + sizeof body, &f, &used, NULL),
	                 -EBADMSG); /* shorter than version 2's */
	f.type = RELAY_FRAME_CLIENT_INFO;
	f.u.client_info.key = body;
	f.u.client_info.nonce = body + 32;
	f.u.client_info.box = body + 56;
	f.u.client_info.box_len = 16 + sizeof plain;
	uint8_t ver = 0, fl = 0, cc[32], ce[32];
	assert_int_equal(relay_client_info_open(&f, spriv, chal, &ver, &fl, cc, ce), 0);
	assert_int_equal(ver, 1);
}

static int req(const char *s)
{
	return relay_http_parse_request((const uint8_t *)s, strlen(s));
}

static void http_upgrade(void **state)
{
	char r[512];
	size_t n = relay_http_request(r, sizeof r, "relay.example:443");
	assert_true(n > 0);
	assert_int_equal(req(r), (int)n);
	/* Case and spacing of header names and values do not matter; lists do. */
	assert_true(req("GET /relay HTTP/1.1\r\nupgrade:  MeshRelay \r\n"
	                "connection: keep-alive, Upgrade\r\n\r\n") > 0);
	assert_int_equal(req("GET /relay HTTP/1.1\r\nHost: x\r\n"), 0); /* incomplete */
	assert_int_equal(req("GET /relay HTTP/1.1\r\nHost: x\r\n\r\n"), -426);
	assert_int_equal(
	    req("GET / HTTP/1.1\r\nUpgrade: meshrelay\r\nConnection: upgrade\r\n\r\n"),
	    -404);
	assert_int_equal(req("POST /relay HTTP/1.1\r\n\r\n"), -405);
	assert_int_equal(req("GET /relay HTTP/2\r\n\r\n"), -400);
	assert_int_equal(req("garbage\r\n\r\n"), -400);
	assert_int_equal(req("GET /relay HTTP/1.1\r\nno colon here\r\n\r\n"), -400);
	assert_int_equal(req("GET /relay HTTP/1.1\r\nUpgrade: websocket\r\nConnection: "
	                     "upgrade\r\n\r\n"),
	                 -426);
	/* A head that never ends is refused at the limit. */
	static char big[RELAY_HTTP_HEAD_MAX + 10];
	memset(big, 'a', sizeof big - 1);
	assert_int_equal(req(big), -431);
	/* The client side */
	assert_int_equal(relay_http_parse_response((const uint8_t *)relay_http_101,
	                                           strlen(relay_http_101)),
	                 (int)strlen(relay_http_101));
	const char *e = relay_http_error(404);
	assert_int_equal(relay_http_parse_response((const uint8_t *)e, strlen(e)), -404);
	/* Review L4: a status under 100, or a malformed status line, is an
	 * error at once (not "incomplete", which would wait for the timeout). */
	static const char *const bad_status[] = {
	    "HTTP/1.1 000 X\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 1010 X\r\n\r\n",
	    "HTTP/1.1 10\r\n\r\n", "HTTP/1.1 1x1 Y\r\n\r\n"};
	for (size_t i = 0; i < sizeof bad_status / sizeof bad_status[0]; i++)
		assert_int_equal(relay_http_parse_response((const uint8_t *)bad_status[i],
		                                           strlen(bad_status[i])),
		                 -1);
	assert_int_equal(
	    relay_http_parse_response((const uint8_t *)"HTTP/1.1 503\r\n\r\n", 16), -503);
	assert_int_equal(
	    relay_http_parse_response((const uint8_t *)"SSH-2.0-x\r\n\r\n", 13), -1);
	assert_int_equal(relay_http_request(r, sizeof r, "x\r\nEvil: 1"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trips),
	    cmocka_unit_test(lengths_and_short_bodies),
	    cmocka_unit_test(client_info_proves_key),
	    cmocka_unit_test(server_info_proves_key),
	    cmocka_unit_test(session_seals_frames),
	    cmocka_unit_test(session_binds_handshake),
	    cmocka_unit_test(client_info_old_version),
	    cmocka_unit_test(http_upgrade),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
