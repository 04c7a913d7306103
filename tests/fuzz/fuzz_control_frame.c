/* Fuzzes the control channel's transport (core/control): the frame decoder in
 * both phases, the responder reading message 1, and the join token parser.
 * The first byte picks the mode; the rest is the mode's input.
 *
 *   0 raw msg1:    the rest is a Noise message 1 for the server (a fixed
 *                  key): refused cleanly, or (a seed) accepted and answered.
 *   1 mutated msg1: a real message 1 from a fixed client (payload = rest
 *                  after 3 bytes: offset hi/lo, xor); with xor 0 it must be
 *                  accepted with the client's key, timestamp and payload;
 *                  with a flipped byte it must be refused.
 *   2 clear frames: the rest fed to a handshake-phase decoder in chunks
 *                  (sizes from a small cycle); each HS1 frame's body goes to
 *                  a responder. Checks consumed counts, body limits, clean results.
 *   3 sealed frames: the rest is a list of (type, len, bytes) records sealed
 *                  as transport frames, then fed in chunks split where the
 *                  first bytes say, optionally with one byte flipped; every
 *                  frame decoded before the flip must equal what was sealed.
 *   4 token:       the rest as a join token (version 1 or 2: one to eight
 *                  control addresses); a token that decodes must re-encode
 *                  and decode to the same fields, every address in order,
 *                  and re-encode to version 1 exactly when it has one. */
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/control/frame.h"
#include "core/control/noise_ik.h"
#include "core/control/token.h"

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static uint8_t server_priv[32], server_pub[32], client_priv[32], client_pub[32];
static uint8_t client_e[32];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	for (int i = 0; i < 32; i++) {
		server_priv[i] = (uint8_t)(0x11 * (i + 1));
		client_priv[i] = (uint8_t)(0x23 + i);
		client_e[i] = (uint8_t)(0x99 ^ i);
	}
	ctl_noise_public_key(server_pub, server_priv);
	ctl_noise_public_key(client_pub, client_priv);
	return 0;
}

static void raw_msg1(const uint8_t *p, size_t len)
{
	struct ctl_noise_handshake hs;
	uint8_t payload[256], msg2[256 + CTL_NOISE_MSG2_MIN];
	size_t n;
	int rc;

	CHECK(ctl_noise_init_responder(&hs, server_priv, NULL, 0) == 0);
	rc = ctl_noise_read_msg1(&hs, p, len, payload, sizeof(payload), &n);
	CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
	if (rc == 0) {
		CHECK(n + CTL_NOISE_MSG1_MIN == len);
		CHECK(ctl_noise_write_msg2(&hs, payload, n, msg2, sizeof(msg2), &n) == 0);
	} else {
		CHECK(ctl_noise_write_msg2(&hs, NULL, 0, msg2, sizeof(msg2), &n) ==
		      -EINVAL);
	}
	CHECK(ctl_noise_init_responder(&hs, server_priv, NULL, 0) == 0);
	rc = ctl_noise_read_msg1_raw(&hs, p, len, payload, sizeof(payload), &n);
	CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
	ctl_noise_handshake_wipe(&hs);
}

static void mutated_msg1(const uint8_t *p, size_t len)
{
	struct ctl_noise_handshake ini, res;
	uint8_t msg[CTL_NOISE_MSG1_MIN + 4096], out[4096];
	size_t mlen, n, off;
	uint8_t x;
	int rc;

	if (len < 3 || len - 3 > 4096)
		return;
	off = (size_t)p[0] << 8 | p[1];
	x = p[2];
	p += 3;
	len -= 3;
	CHECK(ctl_noise_init_initiator(&ini, client_priv, server_pub, NULL, 0) == 0);
	CHECK(ctl_noise_set_ephemeral(&ini, client_e) == 0);
	CHECK(ctl_noise_write_msg1(&ini, p, len, msg, sizeof(msg), &mlen) == 0);
	CHECK(mlen == CTL_NOISE_MSG1_MIN + len);
	off %= mlen;
	msg[off] ^= x;
	CHECK(ctl_noise_init_responder(&res, server_priv, NULL, 0) == 0);
	rc = ctl_noise_read_msg1(&res, msg, mlen, out, sizeof(out), &n);
	if (x == 0) {
		CHECK(rc == 0 && n == len && memcmp(out, p, len) == 0);
		CHECK(memcmp(ctl_noise_remote_static(&res), client_pub, 32) == 0);
		/* and the rest of the handshake completes */
		CHECK(ctl_noise_write_msg2(&res, p, len, msg, sizeof(msg), &mlen) == 0);
		CHECK(ctl_noise_read_msg2(&ini, msg, mlen, out, sizeof(out), &n) == 0);
		CHECK(n == len && memcmp(out, p, len) == 0);
	} else {
		CHECK(rc == -EBADMSG);
	}
	ctl_noise_handshake_wipe(&ini);
	ctl_noise_handshake_wipe(&res);
}

static const size_t chunk_cycle[] = {1, 7, 3, 64, 2, 1000, 5};

static void clear_frames(const uint8_t *p, size_t len)
{
	struct ctl_frame_decoder d;
	struct ctl_frame f;
	size_t used, ci = 0;
	int rc;

	ctl_frame_decoder_init(&d);
	while (len > 0) {
		size_t chunk = chunk_cycle[ci++ % 7];

		if (chunk > len)
			chunk = len;
		const uint8_t *q = p;
		size_t left = chunk;
		while (left > 0) {
			rc = ctl_frame_decode(&d, q, left, &used, &f);
			CHECK(used <= left);
			if (rc < 0)
				goto out;
			q += used;
			left -= used;
			if (rc == CTL_FRAME_MORE) {
				CHECK(left == 0);
				break;
			}
			CHECK(f.len + 1 <= CTL_FRAME_HS_MAX);
			if (f.type == CTL_FRAME_HS1) {
				struct ctl_noise_handshake hs;
				size_t n;

				CHECK(ctl_noise_init_responder(&hs, server_priv, NULL,
				                               0) == 0);
				rc = ctl_noise_read_msg1(&hs, f.body, f.len, NULL, 0, &n);
				CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
				ctl_noise_handshake_wipe(&hs);
			}
		}
		p += chunk;
		len -= chunk;
	}
out:
	ctl_frame_decoder_free(&d);
}

static void set_key(struct ctl_noise_cipher *c)
{
	memset(c, 0, sizeof(*c));
	memset(c->k, 0x5a, sizeof(c->k));
	c->has_key = true;
}

#define MAX_REC 32

static void sealed_frames(const uint8_t *p, size_t len)
{
	struct ctl_noise_transport tx, rx;
	struct ctl_frame_decoder d;
	struct ctl_frame f;
	uint8_t *wire;
	size_t wlen = 0, cap, n, used, flip_at;
	const uint8_t *rec_body[MAX_REC];
	size_t rec_len[MAX_REC], rec_end[MAX_REC], nrec = 0, got = 0, split;
	uint8_t rec_type[MAX_REC], flip;
	int rc;

	if (len < 4)
		return;
	split = p[0];
	flip = p[1];
	flip_at = (size_t)p[2] << 8 | p[3];
	p += 4;
	len -= 4;
	cap = len * 2 + MAX_REC * 32;
	wire = malloc(cap);
	CHECK(wire);
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	set_key(&tx.send);
	set_key(&rx.recv);
	while (len >= 2 && nrec < MAX_REC) {
		size_t bl = p[1];

		if (bl > len - 2)
			bl = len - 2;
		rec_type[nrec] = p[0];
		rec_body[nrec] = p + 2;
		rec_len[nrec] = bl;
		CHECK(ctl_frame_seal(&tx, p[0], p + 2, bl, wire + wlen, cap - wlen, &n) ==
		      0);
		CHECK(n == ctl_frame_sealed_size(bl));
		wlen += n;
		rec_end[nrec++] = wlen;
		p += 2 + bl;
		len -= 2 + bl;
	}
	if (flip && wlen)
		wire[flip_at % wlen] ^= flip;

	ctl_frame_decoder_init(&d);
	ctl_frame_decoder_set_transport(&d, &rx);
	size_t off = 0;
	while (off < wlen) {
		size_t chunk = split ? split : 4096;

		if (chunk > wlen - off)
			chunk = wlen - off;
		rc = ctl_frame_decode(&d, wire + off, chunk, &used, &f);
		CHECK(used <= chunk);
		off += used;
		if (rc < 0) {
			/* only a flipped byte can make a frame fail */
			CHECK(flip && got < nrec && flip_at % wlen < rec_end[got]);
			break;
		}
		if (rc == CTL_FRAME_READY) {
			CHECK(got < nrec && off == rec_end[got]);
			if (!flip || flip_at % wlen >= rec_end[got]) {
				CHECK(f.type == rec_type[got] && f.len == rec_len[got]);
				CHECK(memcmp(f.body, rec_body[got], f.len) == 0);
			}
			got++;
		}
	}
	if (!flip)
		CHECK(got == nrec);
	ctl_frame_decoder_free(&d);
	free(wire);
}

static void token(const uint8_t *p, size_t len)
{
	struct ctl_token t, t2;
	char s[CTL_TOKEN_STR_MAX];
	int n;

	if (ctl_token_decode((const char *)p, len, &t) != 0)
		return;
	n = ctl_token_encode(&t, s, sizeof(s));
	CHECK(n > 0);
	CHECK(ctl_token_decode(s, (size_t)n, &t2) == 0);
	CHECK(strcmp(t.host, t2.host) == 0 && t.port == t2.port);
	CHECK(memcmp(t.server_key, t2.server_key, 32) == 0);
	CHECK(strcmp(t.auth_key, t2.auth_key) == 0);
	CHECK(ctl_token_addr_count(&t) >= 1 &&
	      ctl_token_addr_count(&t) <= CTL_TOKEN_ADDRS_MAX);
	CHECK(ctl_token_addr_count(&t) == ctl_token_addr_count(&t2));
	for (size_t i = 0; i < ctl_token_addr_count(&t); i++) {
		const char *h1, *h2;
		uint16_t p1, p2;
		ctl_token_addr_get(&t, i, &h1, &p1);
		ctl_token_addr_get(&t2, i, &h2, &p2);
		CHECK(strcmp(h1, h2) == 0 && p1 == p2 && p1 != 0 && h1[0]);
	}
	uint8_t bin[CTL_TOKEN_BIN_MAX];
	size_t bl = 0;
	CHECK(sodium_base642bin(bin, sizeof(bin), s + 5, (size_t)n - 5, NULL, &bl, NULL,
	                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
	CHECK(bl > 0 && (bin[0] == CTL_TOKEN_VERSION) == (ctl_token_addr_count(&t) == 1));
	ctl_token_wipe(&t);
	ctl_token_wipe(&t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		raw_msg1(data + 1, size - 1);
		break;
	case 1:
		mutated_msg1(data + 1, size - 1);
		break;
	case 2:
		clear_frames(data + 1, size - 1);
		break;
	case 3:
		sealed_frames(data + 1, size - 1);
		break;
	case 4:
		token(data + 1, size - 1);
		break;
	}
	return 0;
}
