/* Relays in mesh-control (issue 13): the RELAY_REGISTER / RELAY_STATE
 * messages and the relay fields of MAP_FULL (backward compatible both
 * ways), and the store's relays and relay keys (single use, apart from node
 * auth keys, resume by key, remove by name, map version bumped). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/control/msg.h"
#include "servers/control/store.h"
#include "store_fixture.h"

static void relay_messages_round_trip(void **state)
{
	struct ctl_msg m = {.type = CTL_MSG_RELAY_STATE}, d;
	struct ctl_relay rl[2] = {
	    {.id = 1,
	     .port = 8443,
	     .stun_port = 3478,
	     .tls = true,
	     .has_key = true,
	     .name = "eu-1",
	     .region = "eu",
	     .host = "relay1.example.net"},
	    {.id = 2, .port = 8444, .region = "eu", .host = "198.18.0.2"},
	};
	memset(rl[0].key, 7, 32);
	uint8_t keys[3][32];
	randombytes_buf(keys, sizeof keys);
	m.u.relay_state.version = 42;
	m.u.relay_state.self = rl[0];
	m.u.relay_state.keys = keys;
	m.u.relay_state.n_keys = 3;
	m.u.relay_state.relays = rl;
	m.u.relay_state.n_relays = 2;
	uint8_t *body;
	size_t len;
	struct ctl_msg_err err;
	assert_int_equal(ctl_msg_encode(&m, &body, &len, &err), 0);
	assert_int_equal(ctl_msg_decode(CTL_MSG_RELAY_STATE, body, len, &d, &err), 0);
	free(body);
	assert_int_equal(d.u.relay_state.version, 42);
	assert_int_equal(d.u.relay_state.n_keys, 3);
	assert_memory_equal(d.u.relay_state.keys, keys, sizeof keys);
	assert_int_equal(d.u.relay_state.n_relays, 2);
	const struct ctl_relay *a = &d.u.relay_state.relays[0],
	                       *b = &d.u.relay_state.relays[1];
	assert_string_equal(a->name, "eu-1");
	assert_int_equal(a->stun_port, 3478);
	assert_true(a->tls && a->has_key);
	assert_memory_equal(a->key, rl[0].key, 32);
	assert_false(b->tls || b->has_key || b->stun_port || b->name[0]);
	assert_string_equal(d.u.relay_state.self.host, "relay1.example.net");
	ctl_msg_free(&d);

	struct ctl_msg r = {.type = CTL_MSG_RELAY_REGISTER};
	snprintf(r.u.relay_reg.auth_key, sizeof r.u.relay_reg.auth_key, "rkey-1-%048d",
	         0);
	r.u.relay_reg.relay = rl[0];
	assert_int_equal(ctl_msg_encode(&r, &body, &len, &err), 0);
	assert_int_equal(ctl_msg_decode(CTL_MSG_RELAY_REGISTER, body, len, &d, &err), 0);
	sodium_memzero(body, len);
	free(body);
	assert_string_equal(d.u.relay_reg.auth_key, r.u.relay_reg.auth_key);
	assert_int_equal(d.u.relay_reg.relay.port, 8443);
	ctl_msg_free(&d);
	assert_string_equal(ctl_msg_type_name(CTL_MSG_RELAY_STATE), "RELAY_STATE");
}

static void relay_messages_hostile(void **state)
{
	struct ctl_msg d;
	struct ctl_msg_err err;
	const char *bad[] = {
	    "{\"version\":1,\"self\":{\"id\":1,\"region\":\"eu\",\"host\":\"h\",\"port\":"
	    "1},"
	    "\"keys\":[\"AAAA\"]}",        /* short key */
	    "{\"version\":1,\"keys\":[]}", /* no self */
	    "{\"version\":1,\"self\":{\"id\":1,\"region\":\"e "
	    "u\",\"host\":\"h\",\"port\":1},"
	    "\"keys\":[]}", /* bad region */
	    "{\"version\":1,\"self\":{\"id\":1,\"region\":\"eu\",\"host\":\"h\",\"port\":"
	    "0},"
	    "\"keys\":[]}", /* port 0 */
	    "{\"version\":1,\"self\":{\"id\":1,\"region\":\"eu\",\"host\":\"h\",\"port\":"
	    "1,"
	    "\"tls\":1},\"keys\":[]}", /* tls not bool */
	    "{\"version\":1,\"self\":{\"id\":1,\"region\":\"eu\",\"host\":\"h\",\"port\":"
	    "1,"
	    "\"stun_port\":70000},\"keys\":[]}", /* stun port */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(ctl_msg_decode(CTL_MSG_RELAY_STATE,
		                                (const uint8_t *)bad[i], strlen(bad[i]),
		                                &d, &err),
		                 -EBADMSG);
	/* A map from an older server: relay entries without the new fields. */
	const char *old =
	    "{\"version\":3,\"self\":{\"id\":1,\"name\":\"a\",\"addresses\":"
	    "[\"100.64.0.1\"]},\"dns\":{\"domain\":\"mesh.internal\","
	    "\"magic_dns\":\"100.100.100.100\"},\"relays\":[{\"id\":1,"
	    "\"region\":\"eu\",\"host\":\"r.example\",\"port\":443}],"
	    "\"peers\":[]}";
	assert_int_equal(
	    ctl_msg_decode(CTL_MSG_MAP_FULL, (const uint8_t *)old, strlen(old), &d, &err),
	    0);
	assert_int_equal(d.u.map.n_relays, 1);
	assert_int_equal(d.u.map.relays[0].port, 443);
	assert_false(d.u.map.relays[0].has_key);
	ctl_msg_free(&d);
}

struct t {
	char tmp[64];
	struct test_store ts; /* SQLite, or PostgreSQL under MESH_TEST_PG_URL */
	struct ctl_store *st;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	snprintf(t->tmp, sizeof t->tmp, "/tmp/test-relay-store.XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	t->st = test_store_open_fresh(&t->ts, t->tmp);
	struct ctl_init_params p = {.now = 1000};
	assert_int_equal(ctl_store_init(t->st, &p), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_store_close(t->st);
	test_store_drop(&t->ts);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", t->tmp);
	assert_int_equal(system(cmd), 0);
	free(t);
	return 0;
}

static void store_relays(void **state)
{
	struct t *t = *state;
	char sec[CTL_SECRET_MAX], sec2[CTL_SECRET_MAX];
	int64_t id;
	assert_int_equal(ctl_store_relay_key_create(t->st, 1000, sec, sizeof sec, &id),
	                 0);
	assert_int_equal(strncmp(sec, "rkey-", 5), 0);
	/* A relay key is no node auth key. */
	assert_int_equal(ctl_store_key_use(t->st, sec, 1000, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	int64_t v0, v1;
	assert_int_equal(ctl_store_map_version(t->st, &v0), 0);
	struct ctl_relay_reg r = {.secret = sec,
	                          .region = "eu",
	                          .host = "198.18.0.1",
	                          .port = 8443,
	                          .stun_port = 3478,
	                          .now = 1000};
	randombytes_buf(r.key, 32);
	struct ctl_relay_rec rec;
	assert_int_equal(ctl_store_relay_register(t->st, &r, &rec), 0);
	assert_string_equal(rec.name, "eu-1");
	assert_int_equal(rec.stun_port, 3478);
	assert_int_equal(ctl_store_map_version(t->st, &v1), 0);
	assert_true(v1 > v0);
	/* Resume by key without a secret; the same secret for another key is spent. */
	r.secret = NULL;
	r.port = 9443;
	assert_int_equal(ctl_store_relay_register(t->st, &r, &rec), 0);
	assert_int_equal(rec.port, 9443);
	struct ctl_relay_reg r2 = r;
	randombytes_buf(r2.key, 32);
	r2.secret = sec;
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), CTL_STORE_EKEY_USED);
	r2.secret = NULL;
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);
	/* A node auth key does not register a relay. */
	struct ctl_authkey_params kp = {.reusable = true, .now = 1000};
	assert_int_equal(ctl_store_key_create(t->st, &kp, sec2, sizeof sec2, NULL), 0);
	r2.secret = sec2;
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);
	/* Bad region / host. */
	assert_int_equal(ctl_store_relay_key_create(t->st, 1000, sec2, sizeof sec2, &id),
	                 0);
	r2.secret = sec2;
	r2.region = "e u";
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), CTL_STORE_EINVAL);
	r2.region = "eu";
	assert_int_equal(ctl_store_relay_register(t->st, &r2, &rec), 0);
	assert_string_equal(rec.name, "eu-2");
	struct ctl_relay_rec *list;
	size_t n;
	assert_int_equal(ctl_store_relay_list(t->st, &list, &n), 0);
	assert_int_equal(n, 2);
	free(list);
	assert_int_equal(ctl_store_relay_remove(t->st, "eu-1"), 0);
	assert_int_equal(ctl_store_relay_remove(t->st, "eu-1"), CTL_STORE_ENOTFOUND);
	/* The removed relay cannot resume. */
	assert_int_equal(ctl_store_relay_register(t->st, &r, &rec),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_relay_list(t->st, &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(relay_messages_round_trip),
	    cmocka_unit_test(relay_messages_hostile),
	    cmocka_unit_test_setup_teardown(store_relays, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
