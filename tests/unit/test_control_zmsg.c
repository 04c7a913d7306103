/* The compressed map codec (core/control/zmsg.h): a ZMAP body round-trips,
 * and what a hostile server could send is refused with a clear error
 * before it costs memory: a zstd bomb (a few KB that expand to 64 MiB),
 * with and without a declared size, a frame declaring more than the
 * limit, corrupt or cut frames, trailing bytes, a type that is not a map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <zstd.h>

#include "core/control/frame.h"
#include "core/control/msg.h"
#include "core/control/zmsg.h"

static const char body_json[] = "{\"peers\":[],\"more\":true}";

/* A ZMAP body (type byte + one frame) of n zero bytes, with or without the
 * content size in the frame header. */
static uint8_t *zeros_frame(size_t n, bool with_size, size_t *len)
{
	uint8_t *src = calloc(n ? n : 1, 1);
	size_t cap = 1 + ZSTD_compressBound(n);
	uint8_t *out = malloc(cap);
	assert_non_null(src);
	assert_non_null(out);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	assert_false(ZSTD_isError(
	    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, with_size ? 1 : 0)));
	out[0] = CTL_MSG_MAP_PEERS;
	ZSTD_inBuffer in = {src, n, 0};
	ZSTD_outBuffer ob = {out + 1, cap - 1, 0};
	size_t r;
	/* streamed in pieces: the header then says "size unknown" unless
	 * the size was pledged */
	if (with_size)
		assert_false(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(cc, n)));
	do {
		size_t step = in.size - in.pos > 65536 ? 65536 : in.size - in.pos;
		ZSTD_inBuffer piece = {(const uint8_t *)in.src + in.pos, step, 0};
		bool last = in.pos + step == in.size;
		r = ZSTD_compressStream2(cc, &ob, &piece,
		                         last ? ZSTD_e_end : ZSTD_e_continue);
		assert_false(ZSTD_isError(r));
		in.pos += piece.pos;
		while (last && r != 0) {
			r = ZSTD_compressStream2(cc, &ob, &piece, ZSTD_e_end);
			assert_false(ZSTD_isError(r));
		}
	} while (in.pos < in.size);
	ZSTD_freeCCtx(cc);
	free(src);
	*len = 1 + ob.pos;
	unsigned long long cs = ZSTD_getFrameContentSize(out + 1, ob.pos);
	if (with_size)
		assert_int_equal(cs, n);
	else
		assert_true(cs == ZSTD_CONTENTSIZE_UNKNOWN);
	return out;
}

static void roundtrip(void **state)
{
	(void)state;
	struct ctl_zenc *ze = ctl_zenc_new();
	struct ctl_zdec *zd = ctl_zdec_new();
	assert_non_null(ze);
	assert_non_null(zd);
	uint8_t *z = NULL, *out = NULL, type = 0;
	size_t zl = 0, ol = 0;
	size_t n = strlen(body_json);
	assert_int_equal(ctl_zmsg_wrap(ze, CTL_ZMSG_LEVEL_SHARED, CTL_MSG_MAP_PEERS,
	                               (const uint8_t *)body_json, n, &z, &zl),
	                 0);
	assert_int_equal(z[0], CTL_MSG_MAP_PEERS);
	struct ctl_msg_err err;
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err), 0);
	assert_int_equal(type, CTL_MSG_MAP_PEERS);
	assert_int_equal(ol, n);
	assert_memory_equal(out, body_json, n);
	/* and it decodes as the plain body would */
	struct ctl_msg m;
	assert_int_equal(ctl_msg_decode(type, out, ol, &m, &err), 0);
	assert_int_equal(m.u.chunk.n_peers, 0);
	assert_true(m.u.chunk.more);
	ctl_msg_free(&m);
	free(out);
	/* no context: one is made for the call */
	assert_int_equal(
	    ctl_zmsg_unwrap(NULL, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, NULL), 0);
	assert_int_equal(ol, n);
	free(out);
	free(z);
	/* a big body shrinks (what the whole thing is for) */
	size_t big = 1 << 20;
	char *b = malloc(big);
	for (size_t i = 0; i < big; i++)
		b[i] = "{\"id\":12,\"name\":\"sim-00012\"},"[i % 29];
	assert_int_equal(ctl_zmsg_wrap(ze, CTL_ZMSG_LEVEL_FAST, CTL_MSG_MAP_DELTA,
	                               (const uint8_t *)b, big, &z, &zl),
	                 0);
	assert_true(zl < big / 20);
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err), 0);
	assert_int_equal(type, CTL_MSG_MAP_DELTA);
	assert_int_equal(ol, big);
	assert_memory_equal(out, b, big);
	free(out);
	free(z);
	free(b);
	/* only map messages are wrapped */
	assert_int_equal(
	    ctl_zmsg_wrap(ze, 1, CTL_MSG_REGISTER_REQ, (const uint8_t *)"{}", 2, &z, &zl),
	    -EINVAL);
	assert_null(z);
	ctl_zenc_free(ze);
	ctl_zdec_free(zd);
}

/* 64 MiB of zeros in a few KB, declaring its size: refused from the header
 * (E2BIG), before any output buffer exists. */
static void bomb_with_size_refused(void **state)
{
	(void)state;
	size_t zl;
	uint8_t *z = zeros_frame((size_t)64 << 20, true, &zl);
	print_message("bomb: %zu bytes declaring 64 MiB\n", zl);
	assert_true(zl < 16384);
	uint8_t *out = (uint8_t *)1, type = 0;
	size_t ol = 1;
	struct ctl_msg_err err;
	struct ctl_zdec *zd = ctl_zdec_new();
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -E2BIG);
	assert_null(out);
	assert_int_equal(ol, 0);
	assert_int_equal(err.code, CTL_MSG_E_TOO_BIG);
	print_message("%s\n", err.text);
	assert_non_null(strstr(err.text, "67108864"));
	/* one byte over a caller's lower limit is refused too */
	free(z);
	z = zeros_frame(1001, true, &zl);
	assert_int_equal(ctl_zmsg_unwrap(zd, z, zl, 1000, &type, &out, &ol, &err),
	                 -E2BIG);
	assert_int_equal(ctl_zmsg_unwrap(zd, z, zl, 1001, &type, &out, &ol, &err), 0);
	assert_int_equal(ol, 1001);
	free(out);
	free(z);
	ctl_zdec_free(zd);
}

/* The same bomb without a declared size: decoded streaming, stopped one
 * byte past the limit (never 64 MiB of output). A small frame without a
 * size still decodes. */
static void bomb_without_size_refused(void **state)
{
	(void)state;
	size_t zl;
	uint8_t *z = zeros_frame((size_t)64 << 20, false, &zl);
	uint8_t *out = NULL, type = 0;
	size_t ol = 0;
	struct ctl_msg_err err;
	struct ctl_zdec *zd = ctl_zdec_new();
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -E2BIG);
	assert_null(out);
	assert_int_equal(err.code, CTL_MSG_E_TOO_BIG);
	print_message("%s\n", err.text);
	free(z);
	/* exactly the limit passes, one more does not */
	z = zeros_frame(200000, false, &zl);
	assert_int_equal(ctl_zmsg_unwrap(zd, z, zl, 200000, &type, &out, &ol, &err), 0);
	assert_int_equal(ol, 200000);
	free(out);
	assert_int_equal(ctl_zmsg_unwrap(zd, z, zl, 199999, &type, &out, &ol, &err),
	                 -E2BIG);
	free(z);
	/* and the context is fine for the next message */
	z = zeros_frame(10, false, &zl);
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err), 0);
	assert_int_equal(ol, 10);
	free(out);
	free(z);
	ctl_zdec_free(zd);
}

static void corrupt_frames_refused(void **state)
{
	(void)state;
	struct ctl_zdec *zd = ctl_zdec_new();
	uint8_t *z = NULL, *out = NULL, type = 0;
	size_t zl = 0, ol = 0;
	struct ctl_msg_err err;
	char big[8192];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)('a' + (i * 7919) % 26);
	assert_int_equal(ctl_zmsg_wrap(NULL, 1, CTL_MSG_MAP_DELTA, (const uint8_t *)big,
	                               sizeof big, &z, &zl),
	                 0);
	/* empty, type only */
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, 0, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -EPROTO);
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, 1, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -EPROTO);
	/* cut anywhere */
	for (size_t cut = 2; cut < zl; cut += 1 + cut / 8) {
		int r = ctl_zmsg_unwrap(zd, z, cut, CTL_FRAME_BODY_MAX, &type, &out, &ol,
		                        &err);
		assert_int_equal(r, -EBADMSG);
		assert_null(out);
	}
	/* trailing bytes after the frame (a second frame, or garbage) */
	uint8_t *two = malloc(2 * zl);
	memcpy(two, z, zl);
	memcpy(two + zl, z + 1, zl - 1);
	assert_int_equal(ctl_zmsg_unwrap(zd, two, 2 * zl - 1, CTL_FRAME_BODY_MAX, &type,
	                                 &out, &ol, &err),
	                 -EBADMSG);
	print_message("%s\n", err.text);
	free(two);
	/* not zstd at all */
	const uint8_t plain[] = {
	    CTL_MSG_MAP_PEERS, '{', '"', 'p', '"', ':', '[', ']', '}'};
	assert_int_equal(ctl_zmsg_unwrap(zd, plain, sizeof plain, CTL_FRAME_BODY_MAX,
	                                 &type, &out, &ol, &err),
	                 -EBADMSG);
	/* a type that is not a map */
	z[0] = CTL_MSG_REGISTER_REQ;
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -EPROTO);
	z[0] = CTL_MSG_ZMAP; /* not nested either */
	assert_int_equal(
	    ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type, &out, &ol, &err),
	    -EPROTO);
	z[0] = CTL_MSG_MAP_DELTA;
	/* every single flipped byte: an error, or exactly the declared size
	 * (no checksum: zstd may decode a flipped literal); never more */
	int refused = 0;
	for (size_t i = 1; i < zl; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			z[i] ^= (uint8_t)(1u << bit);
			int r = ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type,
			                        &out, &ol, &err);
			if (r == 0) {
				assert_true(ol <= CTL_FRAME_BODY_MAX);
				free(out);
			} else {
				refused++;
				assert_null(out);
			}
			z[i] ^= (uint8_t)(1u << bit);
		}
	}
	print_message("flipped bits in a %zu-byte frame: %d refused\n", zl, refused);
	assert_true(refused > 0);
	free(z);
	ctl_zdec_free(zd);
}

/* Third review L3: a skippable frame is one whole frame to zstd, with no
 * content, and was unwrapped as an empty map body; an empty frame (with
 * or without its size) likewise. All are refused like a corrupt frame. */
static void skippable_and_empty_frames_refused(void **state)
{
	(void)state;
	struct ctl_zdec *zd = ctl_zdec_new();
	uint8_t *out = NULL, type = 0;
	size_t ol = 0;
	struct ctl_msg_err err;
	const uint8_t skip[] = {
	    CTL_MSG_MAP_PEERS, 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'a', 'b', 'c', 'd'};
	assert_int_equal(ctl_zmsg_unwrap(zd, skip, sizeof skip, CTL_FRAME_BODY_MAX, &type,
	                                 &out, &ol, &err),
	                 -EBADMSG);
	assert_null(out);
	assert_int_equal(err.code, CTL_MSG_E_SYNTAX);
	print_message("%s\n", err.text);
	/* and without a decompression context of its own */
	assert_int_equal(ctl_zmsg_unwrap(NULL, skip, sizeof skip, CTL_FRAME_BODY_MAX,
	                                 &type, &out, &ol, &err),
	                 -EBADMSG);
	for (int sized = 0; sized < 2; sized++) {
		size_t zl;
		uint8_t *z = zeros_frame(0, sized, &zl);
		assert_int_equal(ctl_zmsg_unwrap(zd, z, zl, CTL_FRAME_BODY_MAX, &type,
		                                 &out, &ol, &err),
		                 -EBADMSG);
		assert_null(out);
		print_message("%s\n", err.text);
		free(z);
	}
	ctl_zdec_free(zd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(roundtrip),
	    cmocka_unit_test(bomb_with_size_refused),
	    cmocka_unit_test(bomb_without_size_refused),
	    cmocka_unit_test(corrupt_frames_refused),
	    cmocka_unit_test(skippable_and_empty_frames_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
