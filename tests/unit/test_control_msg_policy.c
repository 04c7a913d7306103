/* core/control/msg: the access-policy fields of a map (CTL_CAP_POLICY).
 *  - round trips: a peer's user and tags, MAP_FULL filter and reach,
 *    MAP_DELTA filter SET / CLEAR (null) / KEEP and reach, and the
 *    pre-encoded path (ctl_msg_encode_peer + ctl_msg_encode_map_texts);
 *  - the port-list text: "*", lists, ranges, adjacent ranges merged, and
 *    what the encoder does with core/policy's 0-65535 and empty blocks;
 *  - every refusal of the decoder (block order, overlap, first > last,
 *    mixed family, IPv4-mapped, port 0, reversed range, unsorted ports,
 *    ICMP ports, caps, duplicate reach ids, reach without a filter, bad
 *    user, bad tag) with a text naming the field, and the encoder's;
 *  - an older server's map (no policy fields) decodes as before. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/control/msg.h"

#include "ctl_msg_fixture.h"

/* ---- building ---- */

static struct ctl_port_range *ranges(size_t n, ...)
{
	struct ctl_port_range *r = calloc(n ? n : 1, sizeof(*r));
	va_list ap;

	assert_non_null(r);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		r[i].lo = (uint16_t)va_arg(ap, int);
		r[i].hi = (uint16_t)va_arg(ap, int);
	}
	va_end(ap);
	return r;
}

static void block(struct ctl_filter *f, int proto, const char *lo, const char *hi,
                  struct ctl_port_range *ports, uint32_t n_ports)
{
	size_t n = f->n_blocks[proto];
	f->blocks[proto] = realloc(f->blocks[proto], (n + 1) * sizeof(*f->blocks[proto]));
	assert_non_null(f->blocks[proto]);
	struct ctl_filter_block *b = &f->blocks[proto][n];
	memset(b, 0, sizeof(*b));
	assert_true(ctl_ip_parse(lo, &b->lo));
	assert_true(ctl_ip_parse(hi, &b->hi));
	b->ports = ports;
	b->n_ports = n_ports;
	f->n_blocks[proto] = n + 1;
}

/* TCP: a v4 block and a v6 block; UDP: all ports from the mesh's v4
 * range; ICMP: one source. */
static void make_filter(struct ctl_filter *f)
{
	memset(f, 0, sizeof(*f));
	block(f, CTL_FILTER_TCP, "100.64.0.1", "100.64.0.9", ranges(2, 22, 22, 80, 90), 2);
	block(f, CTL_FILTER_TCP, "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::ff",
	      ranges(1, 443, 443), 1);
	block(f, CTL_FILTER_UDP, "100.64.0.0", "100.127.255.255", ranges(1, 1, 65535), 1);
	block(f, CTL_FILTER_ICMP, "100.64.0.7", "100.64.0.7", ranges(1, 0, 65535), 1);
}

static void make_reach(struct ctl_reach **out, size_t *n)
{
	struct ctl_reach *r = calloc(2, sizeof(*r));
	assert_non_null(r);
	r[0].id = 1001;
	r[0].tcp = ranges(1, 22, 22);
	r[0].n_tcp = 1;
	r[0].icmp = true;
	r[1].id = 1000;
	r[1].tcp = ranges(1, 1, 65535);
	r[1].n_tcp = 1;
	r[1].udp = ranges(2, 53, 53, 5000, 5010);
	r[1].n_udp = 2;
	*out = r;
	*n = 2;
}

/* ---- comparing ---- */

static void assert_filters_equal(const struct ctl_filter *a, const struct ctl_filter *b)
{
	for (int p = 0; p < CTL_FILTER_NPROTO; p++) {
		assert_int_equal(a->n_blocks[p], b->n_blocks[p]);
		for (size_t i = 0; i < a->n_blocks[p]; i++) {
			const struct ctl_filter_block *x = &a->blocks[p][i], *y = &b->blocks[p][i];
			assert_memory_equal(&x->lo, &y->lo, sizeof(x->lo));
			assert_memory_equal(&x->hi, &y->hi, sizeof(x->hi));
			assert_int_equal(x->n_ports, y->n_ports);
			assert_memory_equal(x->ports, y->ports, x->n_ports * sizeof(*x->ports));
		}
	}
}

static void assert_reach_equal(const struct ctl_reach *a, const struct ctl_reach *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].id, b[i].id);
		assert_int_equal(a[i].icmp, b[i].icmp);
		assert_int_equal(a[i].n_tcp, b[i].n_tcp);
		assert_int_equal(a[i].n_udp, b[i].n_udp);
		if (a[i].n_tcp)
			assert_memory_equal(a[i].tcp, b[i].tcp, a[i].n_tcp * sizeof(*a[i].tcp));
		if (a[i].n_udp)
			assert_memory_equal(a[i].udp, b[i].udp, a[i].n_udp * sizeof(*a[i].udp));
	}
}

static char *enc(const struct ctl_msg *m)
{
	uint8_t *out;
	size_t len;
	struct ctl_msg_err err;
	int r = ctl_msg_encode(m, &out, &len, &err);
	if (r != 0)
		fail_msg("encode: %d %s", r, err.text);
	return (char *)out;
}

static void dec(unsigned type, const char *s, struct ctl_msg *m)
{
	struct ctl_msg_err err;
	int r = ctl_msg_decode(type, (const uint8_t *)s, strlen(s), m, &err);
	if (r != 0)
		fail_msg("decode: %d %s\n  input: %.300s", r, err.text, s);
}

/* ---- round trips ---- */

static void test_peer_owner_round_trip(void **state)
{
	struct ctl_msg m, back;
	(void)state;

	make_map(&m, 3);
	snprintf(m.u.map.peers[0].user, CTL_USER_MAX, "alice");
	snprintf(m.u.map.peers[1].tags, CTL_PEER_TAGS_MAX, "tag:web,tag:db.prod_1");
	snprintf(m.u.map.peers[1].user, CTL_USER_MAX, "42bob.x_y-z");
	char *s = enc(&m);
	assert_non_null(strstr(s, "\"user\":\"alice\""));
	assert_non_null(strstr(s, "\"tags\":[\"tag:web\",\"tag:db.prod_1\"]"));
	/* peers[2] has neither: no key at all, as from an older server */
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_string_equal(back.u.map.peers[0].user, "alice");
	assert_string_equal(back.u.map.peers[0].tags, "");
	assert_string_equal(back.u.map.peers[1].user, "42bob.x_y-z");
	assert_string_equal(back.u.map.peers[1].tags, "tag:web,tag:db.prod_1");
	assert_string_equal(back.u.map.peers[2].user, "");
	assert_string_equal(back.u.map.peers[2].tags, "");
	free(s);
	ctl_msg_free(&back);

	/* the longest: 4 tags of 63 bytes joined with 3 commas = 255 bytes */
	char t[64];
	memset(t, 'a', 63);
	memcpy(t, "tag:", 4);
	t[63] = '\0';
	snprintf(m.u.map.peers[2].tags, CTL_PEER_TAGS_MAX, "%s,%s,%s,%.62sb", t, t, t, t);
	assert_int_equal(strlen(m.u.map.peers[2].tags), 255);
	s = enc(&m);
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_string_equal(back.u.map.peers[2].tags, m.u.map.peers[2].tags);
	free(s);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
}

static void test_map_full_filter_round_trip(void **state)
{
	struct ctl_msg m, back;
	(void)state;

	make_map(&m, 2);
	make_filter(&m.u.map.filter);
	m.u.map.has_filter = true;
	make_reach(&m.u.map.reach, &m.u.map.n_reach);
	char *s = enc(&m);
	assert_non_null(strstr(
	    s, "\"filter\":{\"tcp\":[[\"100.64.0.1\",\"100.64.0.9\",\"22,80-90\"],"
	       "[\"fd7a:115c:a1e0::1\",\"fd7a:115c:a1e0::ff\",\"443\"]],"
	       "\"udp\":[[\"100.64.0.0\",\"100.127.255.255\",\"*\"]],"
	       "\"icmp\":[[\"100.64.0.7\",\"100.64.0.7\",\"*\"]]}"));
	assert_non_null(strstr(s, "\"reach\":[{\"id\":1001,\"tcp\":\"22\",\"icmp\":true},"
	                          "{\"id\":1000,\"tcp\":\"*\",\"udp\":\"53,5000-5010\"}]"));
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_true(back.u.map.has_filter);
	assert_filters_equal(&m.u.map.filter, &back.u.map.filter);
	assert_int_equal(back.u.map.n_reach, 2);
	assert_reach_equal(m.u.map.reach, back.u.map.reach, 2);
	free(s);
	ctl_msg_free(&back);

	/* a filter with no blocks: a policy that lets nothing in */
	ctl_filter_clear(&m.u.map.filter);
	ctl_reach_free(m.u.map.reach, m.u.map.n_reach);
	m.u.map.reach = NULL;
	m.u.map.n_reach = 0;
	s = enc(&m);
	assert_non_null(strstr(s, "\"filter\":{\"tcp\":[],\"udp\":[],\"icmp\":[]}"));
	assert_null(strstr(s, "\"reach\""));
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_true(back.u.map.has_filter);
	for (int p = 0; p < CTL_FILTER_NPROTO; p++)
		assert_int_equal(back.u.map.filter.n_blocks[p], 0);
	free(s);
	ctl_msg_free(&back);

	/* no policy: neither key, as before */
	m.u.map.has_filter = false;
	s = enc(&m);
	assert_null(strstr(s, "\"filter\""));
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_false(back.u.map.has_filter);
	assert_int_equal(back.u.map.n_reach, 0);
	free(s);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
}

static void test_map_delta_filter_ops(void **state)
{
	struct ctl_msg m, back;
	(void)state;

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.version = 5;
	m.u.delta.base_version = 4;
	m.u.delta.filter_op = CTL_FILTER_SET;
	make_filter(&m.u.delta.filter);
	make_reach(&m.u.delta.reach, &m.u.delta.n_reach);
	char *s = enc(&m);
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_int_equal(back.u.delta.filter_op, CTL_FILTER_SET);
	assert_filters_equal(&m.u.delta.filter, &back.u.delta.filter);
	assert_int_equal(back.u.delta.n_reach, 2);
	assert_reach_equal(m.u.delta.reach, back.u.delta.reach, 2);
	free(s);
	ctl_msg_free(&back);

	/* KEEP with reach only: no filter key */
	ctl_filter_clear(&m.u.delta.filter);
	m.u.delta.filter_op = CTL_FILTER_KEEP;
	s = enc(&m);
	assert_null(strstr(s, "\"filter\""));
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_int_equal(back.u.delta.filter_op, CTL_FILTER_KEEP);
	assert_int_equal(back.u.delta.n_reach, 2);
	free(s);
	ctl_msg_free(&back);

	/* CLEAR: "filter":null, and no reach with it */
	ctl_reach_free(m.u.delta.reach, m.u.delta.n_reach);
	m.u.delta.reach = NULL;
	m.u.delta.n_reach = 0;
	m.u.delta.filter_op = CTL_FILTER_CLEAR;
	s = enc(&m);
	assert_non_null(strstr(s, "\"filter\":null"));
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_int_equal(back.u.delta.filter_op, CTL_FILTER_CLEAR);
	free(s);
	ctl_msg_free(&back);

	/* an older server's delta: KEEP, nothing else */
	dec(CTL_MSG_MAP_DELTA, "{\"version\":2,\"base_version\":1}", &back);
	assert_int_equal(back.u.delta.filter_op, CTL_FILTER_KEEP);
	assert_int_equal(back.u.delta.n_reach, 0);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
}

/* The server's path: peers encoded once, wrapped per node; the map-level
 * policy fields come from the template. */
static void test_pre_encoded_peers(void **state)
{
	struct ctl_msg m, full, back;
	struct ctl_msg_text texts[2];
	char *pt[2];
	size_t pl[2];
	uint8_t *out;
	size_t len;
	struct ctl_msg_err err;
	(void)state;

	make_map(&full, 2);
	snprintf(full.u.map.peers[0].user, CTL_USER_MAX, "alice");
	snprintf(full.u.map.peers[1].tags, CTL_PEER_TAGS_MAX, "tag:srv");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ctl_msg_encode_peer(&full.u.map.peers[i], &pt[i], &pl[i], &err),
		                 0);
		texts[i] = (struct ctl_msg_text){pt[i], pl[i]};
	}
	/* MAP_FULL */
	make_map(&m, 0);
	make_filter(&m.u.map.filter);
	m.u.map.has_filter = true;
	make_reach(&m.u.map.reach, &m.u.map.n_reach);
	assert_int_equal(ctl_msg_encode_map_texts(&m, texts, 2, &out, &len, &err), 0);
	dec(CTL_MSG_MAP_FULL, (const char *)out, &back);
	assert_true(back.u.map.has_filter);
	assert_filters_equal(&m.u.map.filter, &back.u.map.filter);
	assert_reach_equal(m.u.map.reach, back.u.map.reach, 2);
	assert_int_equal(back.u.map.n_peers, 2);
	assert_string_equal(back.u.map.peers[0].user, "alice");
	assert_string_equal(back.u.map.peers[1].tags, "tag:srv");
	free(out);
	ctl_msg_free(&back);
	ctl_msg_free(&m);
	/* MAP_DELTA with CLEAR */
	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.version = 3;
	m.u.delta.base_version = 2;
	m.u.delta.filter_op = CTL_FILTER_CLEAR;
	assert_int_equal(ctl_msg_encode_map_texts(&m, texts, 2, &out, &len, &err), 0);
	dec(CTL_MSG_MAP_DELTA, (const char *)out, &back);
	assert_int_equal(back.u.delta.filter_op, CTL_FILTER_CLEAR);
	assert_int_equal(back.u.delta.n_peers, 2);
	free(out);
	ctl_msg_free(&back);
	free(pt[0]);
	free(pt[1]);
	ctl_msg_free(&full);
}

/* What the encoder sends for ranges core/policy makes: "*" is 0-65535
 * there, sent as "*" (1-65535 for TCP/UDP); adjacent ranges merged; a
 * range 0-0 and a block without ports left out. */
static void test_port_text_normalized(void **state)
{
	struct ctl_msg m, back;
	(void)state;

	make_map(&m, 0);
	m.u.map.has_filter = true;
	struct ctl_filter *f = &m.u.map.filter;
	block(f, CTL_FILTER_TCP, "100.64.0.1", "100.64.0.1", ranges(1, 0, 65535), 1);
	block(f, CTL_FILTER_TCP, "100.64.0.2", "100.64.0.2", ranges(0), 0);
	block(f, CTL_FILTER_TCP, "100.64.0.3", "100.64.0.3",
	      ranges(4, 0, 0, 10, 20, 21, 30, 32, 32), 4);
	block(f, CTL_FILTER_TCP, "100.64.0.4", "100.64.0.4", ranges(1, 0, 0), 1);
	block(f, CTL_FILTER_UDP, "100.64.0.1", "100.64.0.1", ranges(2, 0, 99, 100, 65535), 2);
	char *s = enc(&m);
	assert_non_null(strstr(s, "\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"*\"],"
	                          "[\"100.64.0.3\",\"100.64.0.3\",\"10-30,32\"]]"));
	assert_non_null(strstr(s, "\"udp\":[[\"100.64.0.1\",\"100.64.0.1\",\"*\"]]"));
	dec(CTL_MSG_MAP_FULL, s, &back);
	const struct ctl_filter *g = &back.u.map.filter;
	assert_int_equal(g->n_blocks[CTL_FILTER_TCP], 2);
	assert_int_equal(g->blocks[CTL_FILTER_TCP][0].ports[0].lo, 1);
	assert_int_equal(g->blocks[CTL_FILTER_TCP][0].ports[0].hi, 65535);
	assert_int_equal(g->blocks[CTL_FILTER_TCP][1].n_ports, 2);
	free(s);
	ctl_msg_free(&back);
	ctl_msg_free(&m);

	/* the decoder merges adjacent ranges too */
	dec(CTL_MSG_MAP_FULL,
	    "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[]},"
	    "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
	    "\"peers\":[],\"filter\":{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\","
	    "\"1-9,10,11-20,22,65535\"]]},\"reach\":[{\"id\":2,\"udp\":\"5,6\"}]}",
	    &back);
	const struct ctl_filter_block *b = &back.u.map.filter.blocks[CTL_FILTER_TCP][0];
	assert_int_equal(b->n_ports, 3);
	assert_int_equal(b->ports[0].lo, 1);
	assert_int_equal(b->ports[0].hi, 20);
	assert_int_equal(b->ports[1].lo, 22);
	assert_int_equal(b->ports[2].lo, 65535);
	assert_int_equal(back.u.map.reach[0].n_udp, 1);
	assert_int_equal(back.u.map.reach[0].udp[0].hi, 6);
	ctl_msg_free(&back);
}

/* ---- decoder refusals ---- */

static const char *full_with(const char *extra)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf),
	         "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":["
	         "\"100.64.0.1\"]},\"dns\":{\"domain\":\"mesh.example\",\"magic_dns\":"
	         "\"100.100.100.100\"},\"peers\":[],%s}",
	         extra);
	return buf;
}

static void expect_bad(unsigned type, const char *s, enum ctl_msg_errcode code,
                       const char *want)
{
	struct ctl_msg m;
	struct ctl_msg_err err;
	int r = ctl_msg_decode(type, (const uint8_t *)s, strlen(s), &m, &err);

	if (r == 0)
		fail_msg("accepted: %.300s", s);
	if (r != -EBADMSG || err.code != code || !strstr(err.text, want))
		fail_msg("got %d code %d \"%s\", want code %d containing \"%s\"\n  input: %.300s",
		         r, err.code, err.text, code, want, s);
	ctl_msg_free(&m); /* harmless after a failure */
}

static void test_filter_refused(void **state)
{
	static const struct {
		const char *filter;
		enum ctl_msg_errcode code;
		const char *want;
	} cases[] = {
	    /* block order and shape */
	    {"{\"tcp\":[[\"100.64.0.5\",\"100.64.0.9\",\"22\"],[\"100.64.0.1\",\"100.64.0.2\","
	     "\"22\"]]}",
	     CTL_MSG_E_VALUE, "filter.tcp[1]: not after the block before it"},
	    {"{\"udp\":[[\"100.64.0.1\",\"100.64.0.5\",\"22\"],[\"100.64.0.5\",\"100.64.0.9\","
	     "\"22\"]]}",
	     CTL_MSG_E_VALUE, "filter.udp[1]: not after the block before it"},
	    /* a v6 block below ::ffff:0:0 after a v4 one is out of order */
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"22\"],[\"::1\",\"::1\",\"22\"]]}",
	     CTL_MSG_E_VALUE, "filter.tcp[1]: not after"},
	    {"{\"tcp\":[[\"100.64.0.9\",\"100.64.0.1\",\"22\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0]: first address after the last"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"fd7a::1\",\"22\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0]: first and last address are not the same family"},
	    {"{\"tcp\":[[\"::ffff:100.64.0.1\",\"::ffff:100.64.0.2\",\"22\"]]}",
	     CTL_MSG_E_VALUE, "filter.tcp[0]: an IPv4-mapped IPv6 address"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"nope\",\"22\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0]: first or last is not an IP address"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\"]]}", CTL_MSG_E_FIELD_TYPE,
	     "filter.tcp[0]: not [first address, last address, ports]"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",22]]}", CTL_MSG_E_FIELD_TYPE,
	     "filter.tcp[0][2]: not a string"},
	    {"{\"tcp\":[\"100.64.0.1\"]}", CTL_MSG_E_FIELD_TYPE, "filter.tcp[0]: not ["},
	    {"{\"tcp\":{}}", CTL_MSG_E_FIELD_TYPE, "filter.tcp: not an array"},
	    {"[]", CTL_MSG_E_FIELD_TYPE, "filter: not an object"},
	    {"null", CTL_MSG_E_FIELD_TYPE, "filter: not an object"},
	    /* ports */
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"0\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0][2]: entry 1 (\"0\"): not a port 1-65535"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"0-22\"]]}", CTL_MSG_E_VALUE,
	     "entry 1 (\"0-22\"): not a port"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"65536\"]]}", CTL_MSG_E_VALUE,
	     "not a port"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"022\"]]}", CTL_MSG_E_VALUE,
	     "not a port"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"22,\"]]}", CTL_MSG_E_VALUE,
	     "entry 2 (\"\"): not a port"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"*,22\"]]}", CTL_MSG_E_VALUE,
	     "entry 1 (\"*\"): not a port"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"90-80\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0][2]: entry 1 (\"90-80\"): a range ends before it starts"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"80,22\"]]}", CTL_MSG_E_VALUE,
	     "entry 2 (\"22\"): not ascending and disjoint"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"20-30,25\"]]}", CTL_MSG_E_VALUE,
	     "entry 2 (\"25\"): not ascending and disjoint"},
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"\"]]}", CTL_MSG_E_VALUE,
	     "filter.tcp[0][2]: no ports"},
	    /* what the error echoes of an entry is printable ASCII, cut short */
	    {"{\"tcp\":[[\"100.64.0.1\",\"100.64.0.1\",\"1\\u001b[2J\\\"\\u00e9xxxxxxxxxxxxxxxxxx\"]]}",
	     CTL_MSG_E_VALUE, "entry 1 (\"1?[2J???xxxxxxxx\"): not a port"},
	    {"{\"icmp\":[[\"100.64.0.1\",\"100.64.0.1\",\"22\"]]}", CTL_MSG_E_VALUE,
	     "filter.icmp[0][2]: an ICMP block's ports are \"*\""},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char extra[1024];
		snprintf(extra, sizeof(extra), "\"filter\":%s", cases[i].filter);
		expect_bad(CTL_MSG_MAP_FULL, full_with(extra), cases[i].code, cases[i].want);
		/* the same in a delta (null there is CLEAR, not an error) */
		if (strcmp(cases[i].filter, "null") == 0)
			continue;
		char d[1200];
		snprintf(d, sizeof(d), "{\"version\":2,\"base_version\":1,\"filter\":%s}",
		         cases[i].filter);
		expect_bad(CTL_MSG_MAP_DELTA, d, cases[i].code, cases[i].want);
	}
}

static void test_reach_refused(void **state)
{
	static const char *const F = "\"filter\":{},";
	static const struct {
		const char *reach;
		enum ctl_msg_errcode code;
		const char *want;
	} cases[] = {
	    {"[{\"id\":7,\"tcp\":\"22\"},{\"id\":8},{\"id\":7}]", CTL_MSG_E_VALUE,
	     "reach: id 7 appears twice"},
	    {"[{\"tcp\":\"22\"}]", CTL_MSG_E_MISSING, "reach[0].id: missing"},
	    {"[{\"id\":-1}]", CTL_MSG_E_VALUE, "reach[0].id: out of range"},
	    {"[{\"id\":1,\"tcp\":22}]", CTL_MSG_E_FIELD_TYPE, "reach[0].tcp: not a string"},
	    {"[{\"id\":1,\"udp\":\"0\"}]", CTL_MSG_E_VALUE, "reach[0].udp: entry 1"},
	    {"[{\"id\":1,\"udp\":\"9-8\"}]", CTL_MSG_E_VALUE, "ends before it starts"},
	    {"[{\"id\":1,\"icmp\":1}]", CTL_MSG_E_FIELD_TYPE, "reach[0].icmp: not a boolean"},
	    {"[5]", CTL_MSG_E_FIELD_TYPE, "reach[0]: not an object"},
	    {"{}", CTL_MSG_E_FIELD_TYPE, "reach: not an array"},
	};
	char buf[1024];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s\"reach\":%s", F, cases[i].reach);
		expect_bad(CTL_MSG_MAP_FULL, full_with(buf), cases[i].code, cases[i].want);
		snprintf(buf, sizeof(buf), "{\"version\":2,\"base_version\":1,\"reach\":%s}",
		         cases[i].reach);
		expect_bad(CTL_MSG_MAP_DELTA, buf, cases[i].code, cases[i].want);
	}
	/* reach without a policy, and with the policy cleared in the same delta */
	expect_bad(CTL_MSG_MAP_FULL, full_with("\"reach\":[{\"id\":2,\"tcp\":\"22\"}]"),
	           CTL_MSG_E_VALUE, "reach: without a filter");
	expect_bad(CTL_MSG_MAP_DELTA,
	           "{\"version\":2,\"base_version\":1,\"filter\":null,\"reach\":[{\"id\":2}]}",
	           CTL_MSG_E_VALUE, "reach: with filter null");
}

/* A MAP_FULL body (malloc'ed) with extra after "peers":[]. */
static char *full_big(const char *extra)
{
	size_t cap = strlen(extra) + 512;
	char *b = malloc(cap);
	assert_non_null(b);
	snprintf(b, cap,
	         "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[]},"
	         "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
	         "\"peers\":[],%s}",
	         extra);
	return b;
}

static void expect_big(const char *extra, enum ctl_msg_errcode code, const char *want)
{
	char *b = full_big(extra);
	expect_bad(CTL_MSG_MAP_FULL, b, code, want);
	free(b);
}

static void expect_big_ok(const char *extra)
{
	struct ctl_msg m;
	char *b = full_big(extra);
	dec(CTL_MSG_MAP_FULL, b, &m);
	ctl_msg_free(&m);
	free(b);
}

/* A string of n ranges "1,3,5,..." (odd ports from first, wrapping to
 * keep them ascending within one list: n <= 32767). */
static char *port_list(size_t n, unsigned first)
{
	char *s = malloc(n * 7 + 1), *w = s;
	assert_non_null(s);
	*w = '\0';
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "%s%u", i ? "," : "", first + (unsigned)i * 2);
	return s;
}

static void test_caps(void **state)
{
	(void)state;
	/* port ranges in one reach entry: the cap, then one more */
	char *pl = port_list(CTL_REACH_RANGES_MAX, 1);
	char *x = malloc(strlen(pl) + 256);
	assert_non_null(x);
	sprintf(x, "\"filter\":{},\"reach\":[{\"id\":2,\"tcp\":\"%s\"}]", pl);
	expect_big_ok(x);
	free(pl);
	pl = port_list(CTL_REACH_RANGES_MAX + 1, 1);
	x = realloc(x, strlen(pl) + 256);
	sprintf(x, "\"filter\":{},\"reach\":[{\"id\":2,\"udp\":\"%s\"}]", pl);
	expect_big(x, CTL_MSG_E_TOO_MANY, "reach[0].udp: more than 4096 port ranges");
	free(pl);
	free(x);

	/* port ranges in one filter: 9 blocks of 32767 ranges > 262144 */
	pl = port_list(32767, 1);
	size_t bl = strlen(pl) + 64;
	x = malloc(bl * 9 + 64);
	assert_non_null(x);
	char *w = x + sprintf(x, "\"filter\":{\"tcp\":[");
	for (int i = 0; i < 9; i++)
		w += sprintf(w, "%s[\"100.64.0.%d\",\"100.64.0.%d\",\"%s\"]", i ? "," : "",
		             i + 1, i + 1, pl);
	sprintf(w, "]}");
	expect_big(x, CTL_MSG_E_TOO_MANY,
	           "filter.tcp[8][2]: more than 262144 port ranges in the filter");
	free(pl);
	free(x);

	/* blocks in one filter, over all protocols */
	size_t nb = CTL_FILTER_BLOCKS_MAX / 2 + 1;
	x = malloc(nb * 2 * 48 + 64);
	assert_non_null(x);
	w = x + sprintf(x, "\"filter\":{\"tcp\":[");
	for (size_t i = 0; i < nb; i++)
		w += sprintf(w, "%s[\"100.%zu.%zu.1\",\"100.%zu.%zu.1\",\"*\"]", i ? "," : "",
		             64 + i / 256, i % 256, 64 + i / 256, i % 256);
	w += sprintf(w, "],\"udp\":[");
	for (size_t i = 0; i < nb; i++)
		w += sprintf(w, "%s[\"100.%zu.%zu.1\",\"100.%zu.%zu.1\",\"*\"]", i ? "," : "",
		             64 + i / 256, i % 256, 64 + i / 256, i % 256);
	sprintf(w, "]}");
	expect_big(x, CTL_MSG_E_TOO_MANY, "filter.udp: more than 65536 blocks in the filter");
	free(x);
}

static void test_owner_refused(void **state)
{
	static const struct {
		const char *field;
		enum ctl_msg_errcode code;
		const char *want;
	} cases[] = {
	    {"\"user\":\"Alice\"", CTL_MSG_E_VALUE, "peers[0].user: not a user name"},
	    {"\"user\":\"-bob\"", CTL_MSG_E_VALUE, "peers[0].user: not a user name"},
	    {"\"user\":\"\"", CTL_MSG_E_VALUE, "peers[0].user: not a user name"},
	    {"\"user\":\"al ice\"", CTL_MSG_E_VALUE, "peers[0].user: not a user name"},
	    {"\"user\":\"alice@example.com\"", CTL_MSG_E_VALUE, "not a user name"},
	    {"\"user\":7", CTL_MSG_E_FIELD_TYPE, "peers[0].user: not a string"},
	    {"\"tags\":[\"web\"]", CTL_MSG_E_VALUE, "peers[0].tags[0]: not a tag"},
	    {"\"tags\":[\"tag:\"]", CTL_MSG_E_VALUE, "peers[0].tags[0]: not a tag"},
	    {"\"tags\":[\"tag:ok\",\"tag:a:b\"]", CTL_MSG_E_VALUE,
	     "peers[0].tags[1]: not a tag"},
	    {"\"tags\":[\"tag:a b\"]", CTL_MSG_E_VALUE, "not a tag"},
	    {"\"tags\":[\"tag:a,b\"]", CTL_MSG_E_VALUE, "not a tag"},
	    {"\"tags\":[1]", CTL_MSG_E_FIELD_TYPE, "peers[0].tags[0]: not a string"},
	    {"\"tags\":\"tag:a\"", CTL_MSG_E_FIELD_TYPE, "peers[0].tags: not an array"},
	    {"\"tags\":[\"tag:1\",\"tag:2\",\"tag:3\",\"tag:4\",\"tag:5\",\"tag:6\","
	     "\"tag:7\",\"tag:8\",\"tag:9\",\"tag:10\",\"tag:11\",\"tag:12\",\"tag:13\","
	     "\"tag:14\",\"tag:15\",\"tag:16\",\"tag:17\"]",
	     CTL_MSG_E_TOO_MANY, "peers[0].tags: more than 16 entries"},
	};
	char peer[2048], body[4096], t[64];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(peer, sizeof(peer),
		         "{\"id\":5,\"name\":\"n\",\"node_key\":\"%s\",\"disco_key\":\"%s\","
		         "\"addresses\":[],\"allowed_ips\":[],%s}",
		         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", cases[i].field);
		snprintf(body, sizeof(body), "{\"version\":2,\"base_version\":1,\"peers\":[%s]}",
		         peer);
		expect_bad(CTL_MSG_MAP_DELTA, body, cases[i].code, cases[i].want);
	}
	/* 64 bytes of user, and tags over 255 bytes joined */
	snprintf(peer, sizeof(peer),
	         "{\"id\":5,\"name\":\"n\",\"node_key\":\"%s\",\"disco_key\":\"%s\","
	         "\"addresses\":[],\"allowed_ips\":[],\"user\":\"%064d\"}",
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0);
	snprintf(body, sizeof(body), "{\"version\":2,\"base_version\":1,\"peers\":[%s]}", peer);
	expect_bad(CTL_MSG_MAP_DELTA, body, CTL_MSG_E_VALUE, "peers[0].user: not a user name");
	memset(t, 'a', 63);
	memcpy(t, "tag:", 4);
	t[63] = '\0';
	snprintf(peer, sizeof(peer),
	         "{\"id\":5,\"name\":\"n\",\"node_key\":\"%s\",\"disco_key\":\"%s\","
	         "\"addresses\":[],\"allowed_ips\":[],\"tags\":[\"%s\",\"%s\",\"%s\",\"%s\","
	         "\"%.62sb\"]}",
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", t, t, t, t, t);
	snprintf(body, sizeof(body), "{\"version\":2,\"base_version\":1,\"peers\":[%s]}", peer);
	expect_bad(CTL_MSG_MAP_DELTA, body, CTL_MSG_E_VALUE,
	           "peers[0].tags: more than 255 bytes in all");
}

/* ---- encoder refusals: what the decoder would refuse, named ---- */

static void expect_enc_bad(const struct ctl_msg *m, enum ctl_msg_errcode code,
                           const char *want)
{
	struct ctl_msg_err err;
	uint8_t *out = (uint8_t *)"x";
	size_t len = 1;

	int r = ctl_msg_encode(m, &out, &len, &err);
	if (r != -EINVAL || err.code != code || !strstr(err.text, want))
		fail_msg("encode gave %d code %d \"%s\", want -EINVAL code %d naming \"%s\"",
		         r, err.code, err.text, code, want);
	assert_null(out);
}

static void enc_filter_case(void (*edit)(struct ctl_filter *), enum ctl_msg_errcode code,
                            const char *want)
{
	struct ctl_msg m;
	make_map(&m, 1);
	make_filter(&m.u.map.filter);
	m.u.map.has_filter = true;
	edit(&m.u.map.filter);
	expect_enc_bad(&m, code, want);
	ctl_msg_free(&m);
	/* the same filter in a delta */
	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.filter_op = CTL_FILTER_SET;
	make_filter(&m.u.delta.filter);
	edit(&m.u.delta.filter);
	expect_enc_bad(&m, code, want);
	ctl_msg_free(&m);
}

static void swap_blocks(struct ctl_filter *f)
{
	struct ctl_filter_block t = f->blocks[CTL_FILTER_TCP][0];
	f->blocks[CTL_FILTER_TCP][0] = f->blocks[CTL_FILTER_TCP][1];
	f->blocks[CTL_FILTER_TCP][1] = t;
}
static void overlap_blocks(struct ctl_filter *f)
{
	block(f, CTL_FILTER_UDP, "100.127.255.255", "100.128.0.0", ranges(1, 1, 1), 1);
}
static void reversed_block(struct ctl_filter *f)
{
	struct ctl_ip t = f->blocks[CTL_FILTER_TCP][0].lo;
	f->blocks[CTL_FILTER_TCP][0].lo = f->blocks[CTL_FILTER_TCP][0].hi;
	f->blocks[CTL_FILTER_TCP][0].hi = t;
}
static void mixed_block(struct ctl_filter *f)
{
	assert_true(ctl_ip_parse("fd7a::1", &f->blocks[CTL_FILTER_ICMP][0].hi));
}
static void mapped_block(struct ctl_filter *f)
{
	assert_true(ctl_ip_parse("::ffff:100.64.0.1", &f->blocks[CTL_FILTER_TCP][1].lo));
}
static void reversed_ports(struct ctl_filter *f)
{
	f->blocks[CTL_FILTER_TCP][0].ports[1] = (struct ctl_port_range){90, 80};
}
static void unsorted_ports(struct ctl_filter *f)
{
	f->blocks[CTL_FILTER_TCP][0].ports[0] = (struct ctl_port_range){100, 100};
}
static void icmp_ports(struct ctl_filter *f)
{
	f->blocks[CTL_FILTER_ICMP][0].ports[0] = (struct ctl_port_range){1, 65535};
}
static void no_family(struct ctl_filter *f)
{
	f->blocks[CTL_FILTER_UDP][0].lo.family = 0;
}

static void test_encode_refuses(void **state)
{
	struct ctl_msg m;
	(void)state;

	enc_filter_case(swap_blocks, CTL_MSG_E_VALUE,
	                "filter.tcp[1]: not after the block before it");
	enc_filter_case(overlap_blocks, CTL_MSG_E_VALUE,
	                "filter.udp[1]: not after the block before it");
	enc_filter_case(reversed_block, CTL_MSG_E_VALUE,
	                "filter.tcp[0]: first address after the last");
	enc_filter_case(mixed_block, CTL_MSG_E_VALUE,
	                "filter.icmp[0]: first and last address are not the same family");
	enc_filter_case(mapped_block, CTL_MSG_E_VALUE,
	                "filter.tcp[1]: an IPv4-mapped IPv6 address");
	enc_filter_case(reversed_ports, CTL_MSG_E_VALUE,
	                "filter.tcp[0]: a port range ends before it starts");
	enc_filter_case(unsorted_ports, CTL_MSG_E_VALUE,
	                "filter.tcp[0]: port ranges are not ascending and disjoint");
	enc_filter_case(icmp_ports, CTL_MSG_E_VALUE,
	                "filter.icmp[0]: an ICMP block is the one range 0-65535");
	enc_filter_case(no_family, CTL_MSG_E_VALUE,
	                "filter.udp[0]: first and last address are not the same family");

	/* reach: duplicate id, bad ranges, no filter, with CLEAR */
	make_map(&m, 1);
	m.u.map.has_filter = true;
	make_reach(&m.u.map.reach, &m.u.map.n_reach);
	m.u.map.reach[1].id = m.u.map.reach[0].id;
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "reach: id 1001 appears twice");
	m.u.map.reach[1].id = 1000;
	m.u.map.reach[1].udp[1] = (struct ctl_port_range){40, 50};
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "reach[1].udp: port ranges are not ascending");
	m.u.map.reach[1].udp[1] = (struct ctl_port_range){5000, 5010};
	m.u.map.has_filter = false;
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "reach: without a filter");
	m.u.map.has_filter = true;
	/* owners */
	snprintf(m.u.map.peers[0].user, CTL_USER_MAX, "Bob");
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "peers[0].user: not a user name");
	m.u.map.peers[0].user[0] = '\0';
	memset(m.u.map.peers[0].user, 'a', CTL_USER_MAX);
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "peers[0].user: not terminated");
	m.u.map.peers[0].user[0] = '\0';
	static const char *const bad_tags[] = {"web", "tag:a,", ",tag:a", "tag:a,,tag:b",
	                                       "tag:", "tag:a:b", "tag:a b"};
	for (size_t i = 0; i < sizeof(bad_tags) / sizeof(bad_tags[0]); i++) {
		snprintf(m.u.map.peers[0].tags, CTL_PEER_TAGS_MAX, "%s", bad_tags[i]);
		expect_enc_bad(&m, CTL_MSG_E_VALUE,
		               "peers[0].tags: not a comma-joined list of tag:NAME");
	}
	snprintf(m.u.map.peers[0].tags, CTL_PEER_TAGS_MAX,
	         "tag:1,tag:2,tag:3,tag:4,tag:5,tag:6,tag:7,tag:8,tag:9,tag:10,tag:11,"
	         "tag:12,tag:13,tag:14,tag:15,tag:16,tag:17");
	expect_enc_bad(&m, CTL_MSG_E_TOO_MANY, "peers[0].tags: more than 16 tags");
	/* the pre-encoded peer path checks owners too */
	char *out;
	size_t len;
	struct ctl_msg_err err;
	assert_int_equal(ctl_msg_encode_peer(&m.u.map.peers[0], &out, &len, &err), -EINVAL);
	assert_non_null(strstr(err.text, "tags: more than 16 tags"));
	ctl_msg_free(&m);

	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.filter_op = CTL_FILTER_CLEAR;
	make_reach(&m.u.delta.reach, &m.u.delta.n_reach);
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "reach: with filter null");
	m.u.delta.filter_op = 7;
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "filter: unknown filter_op");
	m.u.delta.filter_op = CTL_FILTER_KEEP;
	m.u.delta.reach[0].tcp[0] = (struct ctl_port_range){30, 20};
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "reach[0].tcp: a port range ends before it starts");
	ctl_msg_free(&m);
}

/* ---- the node's own owner: MAP_FULL self.user/tags, MAP_DELTA self ---- */

static void test_self_owner_round_trip(void **state)
{
	struct ctl_msg m, back;
	uint8_t *out;
	size_t len;
	struct ctl_msg_err err;
	(void)state;

	/* none: no key in self, as from an older server */
	make_map(&m, 1);
	char *s = enc(&m);
	assert_null(strstr(s, "\"user\""));
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_string_equal(back.u.map.self_user, "");
	assert_string_equal(back.u.map.self_tags, "");
	free(s);
	ctl_msg_free(&back);

	snprintf(m.u.map.self_user, CTL_USER_MAX, "ops");
	snprintf(m.u.map.self_tags, CTL_PEER_TAGS_MAX, "tag:web,tag:db");
	s = enc(&m);
	assert_non_null(strstr(s, "\"user\":\"ops\""));
	assert_non_null(strstr(s, "\"tags\":[\"tag:web\",\"tag:db\"]"));
	dec(CTL_MSG_MAP_FULL, s, &back);
	assert_string_equal(back.u.map.self_user, "ops");
	assert_string_equal(back.u.map.self_tags, "tag:web,tag:db");
	free(s);
	ctl_msg_free(&back);

	/* the server's path: the header around pre-encoded peers */
	size_t np = m.u.map.n_peers;
	m.u.map.n_peers = 0;
	assert_int_equal(ctl_msg_encode_map_texts(&m, NULL, 0, &out, &len, &err), 0);
	m.u.map.n_peers = np;
	dec(CTL_MSG_MAP_FULL, (const char *)out, &back);
	assert_string_equal(back.u.map.self_user, "ops");
	assert_string_equal(back.u.map.self_tags, "tag:web,tag:db");
	free(out);
	ctl_msg_free(&back);
	ctl_msg_free(&m);

	/* MAP_DELTA: no self = unchanged; self {} = none now; self with both */
	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.version = 5;
	m.u.delta.base_version = 4;
	s = enc(&m);
	assert_null(strstr(s, "\"self\""));
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_false(back.u.delta.has_self);
	free(s);
	ctl_msg_free(&back);
	m.u.delta.has_self = true;
	s = enc(&m);
	assert_non_null(strstr(s, "\"self\":{}"));
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_true(back.u.delta.has_self);
	assert_string_equal(back.u.delta.self_user, "");
	assert_string_equal(back.u.delta.self_tags, "");
	free(s);
	ctl_msg_free(&back);
	snprintf(m.u.delta.self_user, CTL_USER_MAX, "ops");
	snprintf(m.u.delta.self_tags, CTL_PEER_TAGS_MAX, "tag:web");
	s = enc(&m);
	assert_non_null(strstr(s, "\"self\":{\"user\":\"ops\",\"tags\":[\"tag:web\"]}"));
	dec(CTL_MSG_MAP_DELTA, s, &back);
	assert_true(back.u.delta.has_self);
	assert_string_equal(back.u.delta.self_user, "ops");
	assert_string_equal(back.u.delta.self_tags, "tag:web");
	free(s);
	ctl_msg_free(&back);
	assert_int_equal(ctl_msg_encode_map_texts(&m, NULL, 0, &out, &len, &err), 0);
	dec(CTL_MSG_MAP_DELTA, (const char *)out, &back);
	assert_string_equal(back.u.delta.self_tags, "tag:web");
	free(out);
	ctl_msg_free(&back);
}

static void test_self_owner_refused(void **state)
{
	static const struct {
		const char *field;
		enum ctl_msg_errcode code;
		const char *want;
	} cases[] = {
	    {"\"user\":\"Ops\"", CTL_MSG_E_VALUE, "self.user: not a user name"},
	    {"\"user\":\"\"", CTL_MSG_E_VALUE, "self.user: not a user name"},
	    {"\"user\":1", CTL_MSG_E_FIELD_TYPE, "self.user: not a string"},
	    {"\"tags\":[\"web\"]", CTL_MSG_E_VALUE, "self.tags[0]: not a tag"},
	    {"\"tags\":[\"tag:a,b\"]", CTL_MSG_E_VALUE, "self.tags[0]: not a tag"},
	    {"\"tags\":\"tag:web\"", CTL_MSG_E_FIELD_TYPE, "self.tags: not an array"},
	};
	char body[1024];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(body, sizeof(body),
		         "{\"version\":1,\"self\":{\"id\":1,\"name\":\"me\",\"addresses\":[],%s},"
		         "\"dns\":{\"domain\":\"m.example\",\"magic_dns\":\"100.100.100.100\"},"
		         "\"peers\":[]}",
		         cases[i].field);
		expect_bad(CTL_MSG_MAP_FULL, body, cases[i].code, cases[i].want);
		snprintf(body, sizeof(body),
		         "{\"version\":2,\"base_version\":1,\"self\":{%s}}", cases[i].field);
		expect_bad(CTL_MSG_MAP_DELTA, body, cases[i].code, cases[i].want);
	}
	expect_bad(CTL_MSG_MAP_DELTA, "{\"version\":2,\"base_version\":1,\"self\":[]}",
	           CTL_MSG_E_FIELD_TYPE, "self: not an object");

	/* the encoder refuses the same */
	struct ctl_msg m;
	make_map(&m, 0);
	snprintf(m.u.map.self_user, CTL_USER_MAX, "Ops");
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "self.user: not a user name");
	m.u.map.self_user[0] = '\0';
	snprintf(m.u.map.self_tags, CTL_PEER_TAGS_MAX, "tag:web,web");
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "self.tags: not a comma-joined list");
	ctl_msg_free(&m);
	memset(&m, 0, sizeof(m));
	m.type = CTL_MSG_MAP_DELTA;
	m.u.delta.has_self = true;
	snprintf(m.u.delta.self_tags, CTL_PEER_TAGS_MAX, "tag:");
	expect_enc_bad(&m, CTL_MSG_E_VALUE, "self.tags: not a comma-joined list");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_peer_owner_round_trip),
	    cmocka_unit_test(test_map_full_filter_round_trip),
	    cmocka_unit_test(test_map_delta_filter_ops),
	    cmocka_unit_test(test_pre_encoded_peers),
	    cmocka_unit_test(test_port_text_normalized),
	    cmocka_unit_test(test_filter_refused),
	    cmocka_unit_test(test_reach_refused),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_owner_refused),
	    cmocka_unit_test(test_encode_refuses),
	    cmocka_unit_test(test_self_owner_round_trip),
	    cmocka_unit_test(test_self_owner_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
