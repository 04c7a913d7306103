/* Fuzzes the relay's wire format (core/relay): the frame decoder on a
 * stream, the CLIENT_INFO opener, and the HTTP upgrade parsers. The first
 * byte picks the mode; the rest is its input.
 *
 *   0 stream: frames decoded one after another, the way the server reads a
 *     connection. Each result is clean: a frame lies inside the input, its
 *     typed view inside its body; a known type re-encodes to the same bytes
 *     where its encoder is exact; the loop stops at MORE or an error.
 *   1 client info: the rest is a CLIENT_INFO body; opening must fail unless
 *     it was sealed with the fixed client key (never for random input).
 *   2 http: the rest as a request head and as a response head; results are
 *     in range and a positive length lies inside the input.
 *   3 sealed stream: the rest as frames of a session (session.h) read the
 *     way the server reads after the handshake: no forged frame opens, the
 *     reader stops at the first that does not, nothing is read out of
 *     bounds. Then a round trip: the input sealed as one frame opens back
 *     to the same bytes. */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "core/relay/frame.h"
#include "core/relay/http.h"
#include "core/relay/session.h"

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static uint8_t spub[32], spriv[32], chal[32];
static uint8_t out[RELAY_FRAME_MAX + RELAY_TAG_LEN];
static struct relay_session tx, rx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		__builtin_trap();
	memset(spriv, 7, 32);
	crypto_scalarmult_base(spub, spriv);
	memset(chal, 9, 32);
	uint8_t e1[32], e2[32], p1[32], p2[32];
	memset(e1, 3, 32);
	memset(e2, 5, 32);
	crypto_scalarmult_base(p1, e1);
	crypto_scalarmult_base(p2, e2);
	if (relay_session_init(&tx, true, e1, p2, spub, spub, chal, chal, chal) < 0 ||
	    relay_session_init(&rx, false, e2, p1, spub, spub, chal, chal, chal) < 0)
		__builtin_trap();
	return 0;
}

static bool inside(const uint8_t *p, size_t n, const uint8_t *lo, size_t len)
{
	return p >= lo && p + n <= lo + len;
}

static void check_frame(const struct relay_frame *f)
{
	size_t n = 0;
	switch (f->type) {
	case RELAY_FRAME_SEND_PACKET:
	case RELAY_FRAME_RECV_PACKET:
		CHECK(inside(f->u.packet.data, f->u.packet.data_len, f->body, f->len));
		CHECK(f->u.packet.data_len >= 1 &&
		      f->u.packet.data_len <= RELAY_PACKET_MAX);
		n = relay_encode_packet(out, sizeof out, f->type, f->u.packet.key,
		                        f->u.packet.data, f->u.packet.data_len);
		CHECK(n == RELAY_HDR_LEN + f->len);
		CHECK(memcmp(out + RELAY_HDR_LEN, f->body, f->len) == 0);
		break;
	case RELAY_FRAME_FORWARD:
		CHECK(inside(f->u.packet.data, f->u.packet.data_len, f->body, f->len));
		n = relay_encode_forward(out, sizeof out, f->u.packet.src,
		                         f->u.packet.dst, f->u.packet.data,
		                         f->u.packet.data_len);
		CHECK(n == RELAY_HDR_LEN + f->len);
		CHECK(memcmp(out + RELAY_HDR_LEN, f->body, f->len) == 0);
		break;
	case RELAY_FRAME_CLIENT_INFO: {
		CHECK(inside(f->u.client_info.box, f->u.client_info.box_len, f->body,
		             f->len));
		uint8_t v, fl, cc[32], ce[32];
		/* Random bytes never open a box sealed with an unknown key. */
		CHECK(relay_client_info_open(f, spriv, chal, &v, &fl, cc, ce) ==
		      -EBADMSG);
		break;
	}
	case RELAY_FRAME_SERVER_INFO: {
		/* Nor a SERVER_INFO proof. */
		uint8_t re[32];
		CHECK(relay_server_info_open(f, spriv, spub, chal, re) == -EBADMSG);
		break;
	}
	case RELAY_FRAME_HEALTH:
	case RELAY_FRAME_REFUSED:
		CHECK(f->u.text.text_len <= RELAY_TEXT_MAX);
		CHECK(inside((const uint8_t *)f->u.text.text, f->u.text.text_len, f->body,
		             f->len));
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 4;
	const uint8_t *p = data + 1;
	size_t len = size - 1;
	if (mode == 0) {
		while (len) {
			struct relay_frame f;
			size_t used = 0, need = 0;
			int r = relay_frame_decode(p, len, &f, &used, &need);
			CHECK(r == RELAY_DECODE_MORE || r == RELAY_DECODE_READY ||
			      r == -EMSGSIZE || r == -EBADMSG);
			if (r != RELAY_DECODE_READY) {
				CHECK(used == 0);
				if (r == RELAY_DECODE_MORE)
					CHECK(need > len && need <= RELAY_FRAME_MAX);
				break;
			}
			CHECK(used >= RELAY_HDR_LEN && used <= len);
			CHECK(f.body == p + RELAY_HDR_LEN &&
			      f.len == used - RELAY_HDR_LEN);
			check_frame(&f);
			p += used;
			len -= used;
		}
	} else if (mode == 1) {
		if (len > RELAY_FRAME_BODY_MAX)
			return 0;
		size_t n =
		    relay_encode_header(out, sizeof out, RELAY_FRAME_CLIENT_INFO, len);
		CHECK(n == RELAY_HDR_LEN);
		memcpy(out + n, p, len);
		struct relay_frame f;
		size_t used;
		int r = relay_frame_decode(out, n + len, &f, &used, NULL);
		if (r == RELAY_DECODE_READY)
			check_frame(&f);
		else
			CHECK(r == -EBADMSG);
	} else if (mode == 3) {
		/* Forged frames: none opens (the counters start fresh each run). */
		struct relay_session r = rx;
		static uint8_t fr[RELAY_FRAME_MAX];
		size_t off = 0;
		while (len - off >= RELAY_HDR_LEN) {
			size_t total = RELAY_HDR_LEN + (size_t)relay_hdr_len(p + off);
			if (total > RELAY_FRAME_MAX || total > len - off)
				break;
			memcpy(fr, p + off, total);
			CHECK(relay_open(&r, fr, total) == -EBADMSG);
			off += total;
		}
		/* A round trip of the input as one frame's body. */
		if (len + RELAY_HDR_LEN + RELAY_TAG_LEN <= sizeof out &&
		    len + RELAY_TAG_LEN <= RELAY_FRAME_BODY_MAX) {
			struct relay_session t = tx;
			r = rx;
			size_t n = relay_encode_header(out, sizeof out, 0x7f, len);
			memcpy(out + n, p, len);
			size_t sn = relay_seal(&t, out, n + len, sizeof out);
			CHECK(sn == n + len + RELAY_TAG_LEN);
			CHECK(relay_open(&r, out, sn) == (int)(n + len));
			CHECK(memcmp(out + n, p, len) == 0);
		}
	} else {
		int r = relay_http_parse_request(p, len);
		CHECK(r <= (int)len && (r >= 0 || r == -400 || r == -404 || r == -405 ||
		                        r == -426 || r == -431));
		r = relay_http_parse_response(p, len);
		CHECK(r <= (int)len);
	}
	return 0;
}
