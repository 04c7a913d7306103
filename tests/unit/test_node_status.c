/* node/status: `status --json` is built with jansson, so a value holding
 * quotes, backslashes, control characters or bytes that are not UTF-8
 * (a peer name, a control server's refusal text) still gives one valid
 * JSON document whose strings read back as written (non-UTF-8 bytes as
 * '?'). The document keeps its members and their order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include "config/config.h"
#include "core/wg/device.h"
#include "node/format.h"
#include "node/status.h"

/* A node with one configured peer named name, as the status code sees it. */
struct fixture {
	struct event_base *base;
	struct wg_device *wg;
	struct config cfg;
	struct cfg_peer peer;
	struct cfg_prefix addr, allowed;
};

static void fixture_init(struct fixture *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(sodium_init() >= 0, 1);
	f->base = event_base_new();
	assert_non_null(f->base);
	randombytes_buf(f->cfg.private_key, sizeof(f->cfg.private_key));
	f->addr.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "100.64.0.1", f->addr.addr), 1);
	f->addr.cidr = 32;
	f->cfg.addresses = &f->addr;
	f->cfg.n_addresses = 1;

	uint8_t priv[32];
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(f->peer.public_key, priv);
	f->allowed.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "100.64.0.2", f->allowed.addr), 1);
	f->allowed.cidr = 32;
	f->peer.allowed_ips = &f->allowed;
	f->peer.n_allowed_ips = 1;
	f->peer.name = (char *)name;
	f->cfg.peers = &f->peer;
	f->cfg.n_peers = 1;

	f->wg = wg_device_new(f->base, f->cfg.private_key);
	assert_non_null(f->wg);
	struct wg_allowed_ip aip = {.family = AF_INET, .cidr = 32};
	memcpy(aip.addr, f->allowed.addr, 4);
	struct wg_peer_config pc = {.allowed_ips = &aip, .n_allowed_ips = 1};
	memcpy(pc.public_key, f->peer.public_key, 32);
	assert_non_null(wg_device_add_peer(f->wg, &pc, NULL));
}

static void fixture_fini(struct fixture *f)
{
	wg_device_free(f->wg);
	event_base_free(f->base);
}

struct buf {
	char *p;
	size_t n;
};

static int buf_write(void *ctx, const char *p, size_t n)
{
	struct buf *b = ctx;
	char *q = realloc(b->p, b->n + n + 1);
	if (!q)
		return -1;
	memcpy(q + b->n, p, n);
	b->n += n;
	q[b->n] = 0;
	b->p = q;
	return 0;
}

/* The document of f, as the API sends it, parsed back. */
static json_t *status_roundtrip(struct fixture *f)
{
	struct status_view v = {.cfg = &f->cfg, .wg = f->wg, .started = 1};
	struct buf b = {0};
	struct fmt_jw w = {.write = buf_write, .ctx = &b};
	status_json_write(&v, &w);
	assert_false(w.failed);
	assert_non_null(b.p);
	/* One line on the wire, ending in a newline. */
	assert_int_equal(b.p[b.n - 1], '\n');
	assert_ptr_equal(strchr(b.p, '\n'), b.p + b.n - 1);
	json_error_t je;
	json_t *back = json_loads(b.p, JSON_REJECT_DUPLICATES, &je);
	if (!back)
		fail_msg("not JSON (%s): %s", je.text, b.p);
	free(b.p);
	return back;
}

static const char *peer_name(json_t *doc)
{
	json_t *peers = json_object_get(doc, "peers");
	assert_true(json_is_array(peers));
	assert_int_equal(json_array_size(peers), 1);
	json_t *name = json_object_get(json_array_get(peers, 0), "name");
	assert_true(json_is_string(name));
	return json_string_value(name);
}

static void test_hostile_peer_name_stays_one_string(void **state)
{
	(void)state;
	static const char name[] = "we\"ird\\name\n\t\x01,\"x\":1}]";
	struct fixture f;
	fixture_init(&f, name);
	json_t *doc = status_roundtrip(&f);
	assert_string_equal(peer_name(doc), name);
	assert_null(json_object_get(doc, "x")); /* nothing injected */
	json_decref(doc);
	fixture_fini(&f);
}

static void test_non_utf8_bytes_become_replacement_characters(void **state)
{
	(void)state;
	struct fixture f;
	/* A valid "é" stays; each bad byte becomes U+FFFD. */
	fixture_init(&f, "caf\xc3\xa9-\xff\xfe");
	json_t *doc = status_roundtrip(&f);
	assert_string_equal(peer_name(doc), "caf\xc3\xa9-\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(doc);
	fixture_fini(&f);
}

static void test_members_in_order(void **state)
{
	(void)state;
	static const char *const want[] = {"self", "peers", "wireguard", "frontends",
	                                   "netstack"};
	struct fixture f;
	fixture_init(&f, "web");
	json_t *doc = status_roundtrip(&f);
	size_t i = 0;
	const char *key;
	json_t *val;
	json_object_foreach(doc, key, val)
	{
		assert_true(i < sizeof(want) / sizeof(want[0]));
		assert_string_equal(key, want[i]);
		i++;
	}
	assert_int_equal(i, sizeof(want) / sizeof(want[0]));
	json_t *self = json_object_get(doc, "self");
	json_t *addrs = json_object_get(self, "addresses");
	assert_string_equal(json_string_value(json_array_get(addrs, 0)), "100.64.0.1/32");
	json_t *p = json_array_get(json_object_get(doc, "peers"), 0);
	assert_true(json_is_null(json_object_get(p, "endpoint")));
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(p, "allowed_ips"), 0)),
	    "100.64.0.2/32");
	assert_true(json_is_integer(
	    json_object_get(json_object_get(doc, "wireguard"), "rx_packets")));
	/* The batching and sticky-source counters are visible too. */
	static const char *const wg_keys[] = {"rx_gro_buffers", "tx_gso_refused",
	                                      "tx_src_refused"};
	for (size_t k = 0; k < sizeof(wg_keys) / sizeof(wg_keys[0]); k++)
		if (!json_is_integer(
		        json_object_get(json_object_get(doc, "wireguard"), wg_keys[k])))
			fail_msg("wireguard.%s missing from status --json", wg_keys[k]);
	json_decref(doc);
	fixture_fini(&f);
}

static void test_json_str_helpers(void **state)
{
	(void)state;
	json_t *s = fmt_json_str(NULL);
	assert_string_equal(json_string_value(s), "");
	json_decref(s);
	s = fmt_json_str("\x80");
	assert_string_equal(json_string_value(s), "\xef\xbf\xbd");
	json_decref(s);
	/* Overlong, surrogate, beyond U+10FFFF and cut-off sequences. */
	s = fmt_json_str("a\xc0\xaf"
	                 "b\xed\xa0\x80"
	                 "c\xf4\x90\x80\x80"
	                 "d\xe2\x82");
	assert_non_null(s);
	assert_string_equal(json_string_value(s),
	                    "a\xef\xbf\xbd\xef\xbf\xbd"
	                    "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	                    "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	                    "d\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(s);
	json_t *n = fmt_json_u64(UINT64_MAX);
	assert_int_equal(json_integer_value(n), INT64_MAX);
	json_decref(n);
}

/* Every allocation jansson makes while the document is built fails in
 * turn: the output is still one valid JSON document, and says
 * "incomplete" whenever something was lost. */
static long alloc_fail_at, alloc_count;

static void *failing_malloc(size_t n)
{
	if (++alloc_count == alloc_fail_at)
		return NULL;
	return malloc(n);
}

static void test_out_of_memory_still_valid_json(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "web");
	struct status_view v = {.cfg = &f.cfg, .wg = f.wg, .started = 1};
	/* How many allocations a whole document takes. */
	alloc_fail_at = 0, alloc_count = 0;
	json_set_alloc_funcs(failing_malloc, free);
	struct buf b = {0};
	struct fmt_jw w = {.write = buf_write, .ctx = &b};
	status_json_write(&v, &w);
	json_set_alloc_funcs(malloc, free);
	long total = alloc_count;
	free(b.p);
	assert_true(total > 50);
	for (long n = 1; n <= total; n++) {
		alloc_fail_at = n, alloc_count = 0;
		b = (struct buf){0};
		w = (struct fmt_jw){.write = buf_write, .ctx = &b};
		json_set_alloc_funcs(failing_malloc, free);
		status_json_write(&v, &w);
		json_set_alloc_funcs(malloc, free);
		json_error_t je;
		json_t *doc = json_loads(b.p, JSON_REJECT_DUPLICATES, &je);
		if (!doc)
			fail_msg("allocation %ld of %ld failed: not JSON (%s): %s", n,
			         total, je.text, b.p);
		if (!w.failed)
			fail_msg("allocation %ld of %ld failed unnoticed: %s", n, total,
			         b.p);
		assert_true(json_is_true(json_object_get(doc, "incomplete")));
		json_decref(doc);
		free(b.p);
	}
	fixture_fini(&f);
}

/* Endpoints read as host:port, [v6]:port, or "(none)" before any. */
static void test_sockaddr_format(void **state)
{
	(void)state;
	struct sockaddr_storage ss = {0};
	char buf[64];
	fmt_sockaddr(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "(none)");
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(51820);
	inet_pton(AF_INET, "198.18.0.1", &s4->sin_addr);
	fmt_sockaddr(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "198.18.0.1:51820");
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	memset(&ss, 0, sizeof(ss));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(7);
	inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
	fmt_sockaddr(&ss, buf, sizeof(buf));
	assert_string_equal(buf, "[2001:db8::1]:7");
}

/* A server's text printed in `status`: controls, bidirectional overrides
 * and bad bytes are shown as '?', the rest as written, cut at a
 * character boundary. */
static void test_text_safe(void **state)
{
	(void)state;
	char out[32];
	fmt_text_safe("refused\x1b[2J \xe2\x80\xae"
	              "evil\xc2\x9b \xff ok \xc3\xa9",
	              out, sizeof(out));
	assert_string_equal(out, "refused?[2J ?evil? ? ok \xc3\xa9");
	fmt_text_safe("\xc3\xa9\xc3\xa9", out, 4); /* room for one only */
	assert_string_equal(out, "\xc3\xa9");
	fmt_text_safe("a\xe2\x80\x8b"
	              "b\xe2\x80\xa8"
	              "c\xef\xbb\xbf"
	              "d",
	              out, sizeof(out));
	assert_string_equal(out, "a?b?c?d"); /* zero-width, line separator, BOM */
	fmt_text_safe("x", out, 0);          /* no room at all: nothing written */
	fmt_text_safe(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hostile_peer_name_stays_one_string),
	    cmocka_unit_test(test_non_utf8_bytes_become_replacement_characters),
	    cmocka_unit_test(test_members_in_order),
	    cmocka_unit_test(test_json_str_helpers),
	    cmocka_unit_test(test_sockaddr_format),
	    cmocka_unit_test(test_text_safe),
	    cmocka_unit_test(test_out_of_memory_still_valid_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
