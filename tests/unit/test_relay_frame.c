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
	n = relay_encode_server_info(buf, sizeof buf, 0, 32, 60, sk, cp, cc);
	decode_one(buf, n, &f);
	assert_int_equal(relay_server_info_open(&f, ck, sp, cc), 0);
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
	assert_int_equal(n, RELAY_FRAME_MAX);
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
	uint8_t chal[32], other[32], cc[32], got[32];
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cpub, cpriv);
	crypto_box_keypair(opub, opriv);
	randombytes_buf(chal, 32);
	randombytes_buf(other, 32);
	struct relay_frame f;
	size_t used;
	uint8_t ver = 0, flags = 0;

	size_t n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, spub, chal,
	                                  RELAY_CLIENT_MESH, cc);
	assert_int_equal(n, RELAY_HDR_LEN + RELAY_CLIENT_INFO_LEN);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_memory_equal(f.u.client_info.key, cpub, 32);
	assert_int_equal(relay_client_info_open(&f, spriv, chal, &ver, &flags, got), 0);
	assert_int_equal(ver, RELAY_PROTO_VERSION);
	assert_int_equal(flags, RELAY_CLIENT_MESH);
	assert_memory_equal(got, cc, 32); /* the client's challenge came through */
	/* A replay on a new connection (another challenge) fails. */
	assert_int_equal(relay_client_info_open(&f, spriv, other, &ver, &flags, got),
	                 -EBADMSG);
	/* Claiming another node's key without its private key fails: sealed
	 * with our private key, but the frame says opub. */
	memcpy(buf + RELAY_HDR_LEN, opub, 32);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_client_info_open(&f, spriv, chal, &ver, &flags, got),
	                 -EBADMSG);
	/* Sealed to another server: that server's key does not open it here. */
	n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, opub, chal, 0, cc);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_client_info_open(&f, spriv, chal, &ver, &flags, got),
	                 -EBADMSG);
	/* A flipped byte in the box. */
	n = relay_client_info_seal(buf, sizeof buf, cpub, cpriv, spub, chal, 0, cc);
	buf[n - 1] ^= 1;
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_client_info_open(&f, spriv, chal, &ver, &flags, got),
	                 -EBADMSG);
}

/* SERVER_INFO proves the relay holds the key the client sealed to: only the
 * holder of spriv can seal the client's challenge for it. */
static void server_info_proves_key(void **state)
{
	uint8_t spub[32], spriv[32], cpub[32], cpriv[32], opub[32], opriv[32], cc[32],
	    other[32];
	crypto_box_keypair(spub, spriv);
	crypto_box_keypair(cpub, cpriv);
	crypto_box_keypair(opub, opriv);
	randombytes_buf(cc, 32);
	randombytes_buf(other, 32);
	struct relay_frame f;
	size_t used;
	size_t n = relay_encode_server_info(buf, sizeof buf, 0, 64, 60, spriv, cpub, cc);
	assert_int_equal(n, RELAY_HDR_LEN + RELAY_SERVER_INFO_LEN);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc), 0);
	/* Another challenge (a SERVER_INFO replayed from an earlier connection). */
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, other), -EBADMSG);
	/* A relay that does not hold spub's private key (a pass-through that
	 * answers with its own key). */
	n = relay_encode_server_info(buf, sizeof buf, 0, 64, 60, opriv, cpub, cc);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc), -EBADMSG);
	/* Sealed for another client. */
	n = relay_encode_server_info(buf, sizeof buf, 0, 64, 60, spriv, opub, cc);
	assert_int_equal(relay_frame_decode(buf, n, &f, &used, NULL), RELAY_DECODE_READY);
	assert_int_equal(relay_server_info_open(&f, cpriv, spub, cc), -EBADMSG);
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
	    cmocka_unit_test(http_upgrade),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
