/* mesh-control's store on SQLite: persistence across reopen, file modes,
 * auth key kinds and their refusals, stable registration, unique names and
 * addresses (3,000 nodes, timed), the map version, rollback on a fault and on
 * a crash mid-transaction, and schema migration. Each test gets a fresh
 * directory under /tmp, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util/hostname.h"
#include "servers/control/alloc.h"
#include "servers/control/store.h"

#define NOW 1700000000

struct t {
	char tmp[64];
	char dir[96];
	struct ctl_store *st;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static struct ctl_store *open_store(struct t *t)
{
	char err[256] = "";
	struct ctl_store *st = ctl_store_open_sqlite(t->dir, err, sizeof err);
	if (!st)
		fail_msg("open: %s", err);
	return st;
}

static void init_store(struct t *t)
{
	struct ctl_init_params p = {.now = NOW};
	memset(p.server_public, 0x5a, sizeof p.server_public);
	assert_int_equal(ctl_store_init(t->st, &p), 0);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof *t);
	strcpy(t->tmp, "/tmp/ctlstore-XXXXXX");
	assert_non_null(mkdtemp(t->tmp));
	snprintf(t->dir, sizeof t->dir, "%s/data", t->tmp);
	*state = t;
	return 0;
}

static int setup_init(void **state)
{
	setup(state);
	struct t *t = *state;
	t->st = open_store(t);
	init_store(t);
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	ctl_store_close(t->st);
	nftw(t->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}

/* A registration request for machine i (keys derived from i). */
static struct ctl_store_reg req(uint32_t i, const char *host, const char *secret)
{
	struct ctl_store_reg r = {.hostname = host, .auth_secret = secret, .now = NOW};
	memset(r.machine_key, 0x11, CTL_KEY_LEN);
	memset(r.node_key, 0x22, CTL_KEY_LEN);
	memset(r.disco_key, 0x33, CTL_KEY_LEN);
	memcpy(r.machine_key, &i, sizeof i);
	memcpy(r.node_key, &i, sizeof i);
	memcpy(r.disco_key, &i, sizeof i);
	return r;
}

static void new_key(struct t *t, bool reusable, int64_t expiry, char *secret)
{
	struct ctl_authkey_params p = {
	    .reusable = reusable, .expiry = expiry, .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &p, secret, CTL_SECRET_MAX, NULL),
	                 0);
}

static int64_t version(struct t *t)
{
	int64_t v = -1;
	assert_int_equal(ctl_store_map_version(t->st, &v), 0);
	return v;
}

static void init_and_reopen_keep_everything(void **state)
{
	struct t *t = *state;
	struct ctl_meta m1, m2;
	struct ctl_node *n1 = malloc(sizeof *n1), *n2 = malloc(sizeof *n2);
	char sec[CTL_SECRET_MAX];

	t->st = open_store(t);
	assert_int_equal(ctl_store_get_meta(t->st, &m1), CTL_STORE_ENOTFOUND);
	init_store(t);
	struct ctl_init_params again = {.now = NOW};
	assert_int_equal(ctl_store_init(t->st, &again), CTL_STORE_EEXISTS);
	assert_int_equal(ctl_store_get_meta(t->st, &m1), 0);
	assert_string_equal(m1.domain, "mesh.internal");
	assert_int_equal(m1.ula[0], 0xfd);
	assert_int_equal(m1.ula_bits, 48);
	assert_int_equal(m1.v4_prefix, 0x64400000u);
	assert_int_equal(m1.v4_bits, 10);
	assert_int_equal(strlen(m1.mesh_id), 32);

	new_key(t, true, 0, sec);
	struct ctl_store_reg r = req(1, "alpha", sec);
	assert_int_equal(ctl_store_node_register(t->st, &r, n1, NULL), 0);
	struct ctl_node_update u = {.mask = CTL_UPD_ENDPOINTS | CTL_UPD_HOSTINFO,
	                            .endpoints = "198.18.0.1:41641",
	                            .hostinfo = "{\"os\":\"linux\"}"};
	assert_int_equal(ctl_store_node_update(t->st, n1->id, &u), 0);
	assert_int_equal(ctl_store_node_by_id(t->st, n1->id, n1), 0);
	int64_t v = version(t);

	ctl_store_close(t->st);
	t->st = open_store(t);
	assert_int_equal(ctl_store_get_meta(t->st, &m2), 0);
	assert_memory_equal(&m1, &m2, sizeof m1);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, r.machine_key, n2), 0);
	assert_memory_equal(n1, n2, sizeof *n1);
	assert_string_equal(n2->endpoints, "198.18.0.1:41641");
	assert_int_equal(version(t), v);
	/* The key still works after reopen. */
	struct ctl_store_reg r2 = req(2, "beta", sec);
	assert_int_equal(ctl_store_node_register(t->st, &r2, n2, NULL), 0);
	free(n1);
	free(n2);
}

static void files_are_0600_in_a_0700_dir(void **state)
{
	struct t *t = *state;
	char p[160];
	struct stat sb;
	mode_t old = umask(0); /* the modes must not depend on the umask */

	t->st = open_store(t);
	umask(old);
	init_store(t);
	assert_int_equal(stat(t->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	snprintf(p, sizeof p, "%s/control.db", t->dir);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof p, "%s/control.db-wal", t->dir);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

/* True if the bytes of s appear in the file (the secret must not). */
static bool file_has(const char *path, const char *s)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t cap = 1 << 20, n;
	char *buf = malloc(cap);
	bool found = false;
	while ((n = fread(buf, 1, cap, f)) > 0)
		if (memmem(buf, n, s, strlen(s)))
			found = true;
	free(buf);
	fclose(f);
	return found;
}

static void auth_key_kinds_and_refusals(void **state)
{
	struct t *t = *state;
	char reuse[CTL_SECRET_MAX], once[CTL_SECRET_MAX], old[CTL_SECRET_MAX],
	    later[CTL_SECRET_MAX], rev[CTL_SECRET_MAX], bad[CTL_SECRET_MAX];
	struct ctl_authkey k;
	struct ctl_node n;

	new_key(t, true, 0, reuse);
	new_key(t, false, 0, once);
	new_key(t, true, NOW - 1, old);
	new_key(t, false, NOW + 100, later);
	new_key(t, true, 0, rev);
	assert_memory_equal(reuse, "mkey-1-", 7);
	assert_int_equal(strlen(reuse), 7 + 48);

	/* Reusable: any number of uses. */
	assert_int_equal(ctl_store_key_use(t->st, reuse, NOW, &k), 0);
	assert_int_equal(ctl_store_key_use(t->st, reuse, NOW, &k), 0);
	assert_int_equal(k.uses, 2);

	/* Single-use: a failed registration (node key owned by another node)
	 * does not spend it; the first success does. */
	struct ctl_store_reg a = req(1, "a", reuse);
	assert_int_equal(ctl_store_node_register(t->st, &a, &n, NULL), 0);
	struct ctl_store_reg b = req(2, "b", once);
	memcpy(b.node_key, a.node_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &b, &n, NULL),
	                 CTL_STORE_ECONFLICT);
	struct ctl_authkey *keys;
	size_t nk;
	assert_int_equal(ctl_store_key_list(t->st, &keys, &nk), 0);
	assert_int_equal(nk, 5);
	assert_int_equal(keys[1].uses, 0);
	free(keys);
	b = req(2, "b", once);
	assert_int_equal(ctl_store_node_register(t->st, &b, &n, NULL), 0);
	assert_true(n.approved);
	assert_int_equal(n.auth_key_id, 2);
	/* The same machine retrying with its own spent key resumes. */
	int64_t bid = n.id;
	assert_int_equal(ctl_store_node_register(t->st, &b, &n, NULL), 0);
	assert_int_equal(n.id, bid);
	struct ctl_store_reg c = req(3, "c", once);
	assert_int_equal(ctl_store_node_register(t->st, &c, &n, NULL),
	                 CTL_STORE_EKEY_USED);
	assert_int_equal(ctl_store_node_by_machine_key(t->st, c.machine_key, &n),
	                 CTL_STORE_ENOTFOUND);

	/* Expiry. */
	assert_int_equal(ctl_store_key_use(t->st, old, NOW, &k), CTL_STORE_EKEY_EXPIRED);
	assert_int_equal(ctl_store_key_use(t->st, later, NOW, &k), 0);
	assert_int_equal(ctl_store_key_use(t->st, later, NOW, &k), CTL_STORE_EKEY_USED);

	/* Revoked; revoking an unknown key. */
	assert_int_equal(ctl_store_key_revoke(t->st, 5), 0);
	assert_int_equal(ctl_store_key_use(t->st, rev, NOW, &k), CTL_STORE_EKEY_REVOKED);
	assert_int_equal(ctl_store_key_revoke(t->st, 99), CTL_STORE_ENOTFOUND);

	/* Unknown id, garbage, and a wrong secret for a real id. */
	snprintf(bad, sizeof bad, "mkey-99-%.48s", reuse + 7);
	assert_int_equal(ctl_store_key_use(t->st, bad, NOW, &k), CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_key_use(t->st, "hello", NOW, &k),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_int_equal(ctl_store_key_use(t->st, "", NOW, &k), CTL_STORE_EKEY_UNKNOWN);
	snprintf(bad, sizeof bad, "%s", reuse);
	bad[10] = bad[10] == '0' ? '1' : '0';
	assert_int_equal(ctl_store_key_use(t->st, bad, NOW, &k), CTL_STORE_EKEY_UNKNOWN);
	struct ctl_store_reg d = req(4, "d", bad);
	assert_int_equal(ctl_store_node_register(t->st, &d, &n, NULL),
	                 CTL_STORE_EKEY_UNKNOWN);
	assert_non_null(strstr(ctl_store_errmsg(t->st), "unknown"));

	/* Ephemeral and tags pass from the key to the node. */
	char eph[CTL_SECRET_MAX];
	struct ctl_authkey_params ep = {
	    .reusable = true, .ephemeral = true, .tags = "tag:ci,tag:web", .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &ep, eph, sizeof eph, &k), 0);
	struct ctl_authkey_params badtags = {.tags = "a b", .now = NOW};
	assert_int_equal(ctl_store_key_create(t->st, &badtags, bad, sizeof bad, NULL),
	                 CTL_STORE_EINVAL);
	struct ctl_store_reg e = req(5, "e", eph);
	assert_int_equal(ctl_store_node_register(t->st, &e, &n, NULL), 0);
	assert_true(n.ephemeral);
	assert_string_equal(n.tags, "tag:ci,tag:web");

	/* Only hashes are stored: no secret in the database files. */
	char p[160];
	ctl_store_close(t->st);
	t->st = NULL;
	snprintf(p, sizeof p, "%s/control.db", t->dir);
	assert_false(file_has(p, reuse + 7));
	assert_false(file_has(p, once + 7));
	snprintf(p, sizeof p, "%s/control.db-wal", t->dir);
	assert_false(file_has(p, reuse + 7));
}

static void same_machine_key_gets_same_node(void **state)
{
	struct t *t = *state;
	char sec[CTL_SECRET_MAX];
	struct ctl_node a, b, c;
	bool created;

	new_key(t, true, 0, sec);
	struct ctl_store_reg r = req(7, "box", sec);
	assert_int_equal(ctl_store_node_register(t->st, &r, &a, &created), 0);
	assert_true(created);
	assert_int_equal(ctl_store_node_register(t->st, &r, &b, &created), 0);
	assert_false(created);
	assert_int_equal(a.id, b.id);
	assert_int_equal(a.ipv4, b.ipv4);
	assert_memory_equal(a.ipv6, b.ipv6, 16);
	assert_string_equal(a.name, b.name);

	/* Resume without a key, new node key and another hostname: same
	 * node, same name and addresses, new key. */
	r.auth_secret = NULL;
	r.hostname = "renamed-host";
	memset(r.node_key, 0x77, CTL_KEY_LEN);
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_register(t->st, &r, &c, &created), 0);
	assert_false(created);
	assert_int_equal(c.id, a.id);
	assert_int_equal(c.ipv4, a.ipv4);
	assert_string_equal(c.name, "box");
	assert_string_equal(c.hostname, "renamed-host");
	assert_memory_equal(c.node_key, r.node_key, CTL_KEY_LEN);
	assert_true(c.approved);
	assert_int_equal(version(t), v + 1);
	assert_int_equal(ctl_store_node_by_node_key(t->st, r.node_key, &b), 0);
	assert_int_equal(b.id, a.id);

	/* No key: stored pending until approved. */
	struct ctl_store_reg p = req(8, "pending", NULL);
	assert_int_equal(ctl_store_node_register(t->st, &p, &a, &created), 0);
	assert_true(created);
	assert_false(a.approved);
	assert_int_equal(ctl_store_node_approve(t->st, a.id), 0);
	assert_int_equal(ctl_store_node_by_id(t->st, a.id, &a), 0);
	assert_true(a.approved);
	assert_int_equal(ctl_store_node_approve(t->st, 999), CTL_STORE_ENOTFOUND);

	/* Expire: the (reusable) key made before the expiry does not bring
	 * it back and is not spent; a new key re-authorises the same node. */
	assert_int_equal(ctl_store_node_expire(t->st, a.id, NOW), 0);
	assert_int_equal(ctl_store_node_by_id(t->st, a.id, &b), 0);
	assert_int_equal(b.expiry, NOW);
	p.auth_secret = sec;
	assert_int_equal(ctl_store_node_register(t->st, &p, &c, &created),
	                 CTL_STORE_EEXPIRED);
	char fresh[CTL_SECRET_MAX];
	new_key(t, false, 0, fresh);
	p.auth_secret = fresh;
	assert_int_equal(ctl_store_node_register(t->st, &p, &c, &created), 0);
	assert_false(created);
	assert_int_equal(c.expiry, 0);
	assert_int_equal(c.ipv4, a.ipv4);

	/* Zero keys and long host names are refused. */
	struct ctl_store_reg z = req(9, "z", sec);
	memset(z.machine_key, 0, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_register(t->st, &z, &c, NULL), CTL_STORE_EINVAL);
	char longhost[300];
	memset(longhost, 'h', sizeof longhost - 1);
	longhost[sizeof longhost - 1] = 0;
	z = req(9, longhost, sec);
	assert_int_equal(ctl_store_node_register(t->st, &z, &c, NULL), CTL_STORE_EINVAL);
}

static const char *reg_name(struct t *t, uint32_t i, const char *host, struct ctl_node *n)
{
	struct ctl_store_reg r = req(i, host, NULL);
	assert_int_equal(ctl_store_node_register(t->st, &r, n, NULL), 0);
	return n->name;
}

static void names_are_unique_labels(void **state)
{
	struct t *t = *state;
	struct ctl_node n, m;
	char h63[80], want[64];

	assert_string_equal(reg_name(t, 1, "laptop", &n), "laptop");
	assert_string_equal(reg_name(t, 2, "laptop", &n), "laptop-2");
	assert_string_equal(reg_name(t, 3, "Laptop", &n), "laptop-3");
	assert_string_equal(reg_name(t, 4, "My Laptop.local", &n), "my-laptop");
	assert_string_equal(reg_name(t, 5, "--\xc3\x9c__x--", &n), "x");
	assert_string_equal(reg_name(t, 6, "", &n), "node");
	assert_string_equal(reg_name(t, 7, "...", &n), "node-2");
	memset(h63, 'a', 70);
	h63[70] = 0;
	assert_int_equal(strlen(reg_name(t, 8, h63, &n)), 63);
	memset(want, 'a', 61);
	strcpy(want + 61, "-2");
	assert_string_equal(reg_name(t, 9, h63, &n), want);

	/* Rename: valid and free only. */
	assert_int_equal(ctl_store_node_by_name(t->st, "laptop-3", &n), 0);
	int64_t v = version(t);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "laptop"), CTL_STORE_EEXISTS);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "Bad_Name"),
	                 CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "-x"), CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, ""), CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_node_rename(t->st, 999, "free"), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), v);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, n.name), 0); /* own name */
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "work"), 0);
	assert_int_equal(ctl_store_node_by_name(t->st, "work", &m), 0);
	assert_int_equal(m.id, n.id);
	assert_int_equal(ctl_store_node_by_name(t->st, "laptop-3", &m),
	                 CTL_STORE_ENOTFOUND);
	assert_string_equal(reg_name(t, 10, "laptop", &n), "laptop-3");

	/* Gaps are filled from the smallest free suffix. */
	assert_int_equal(ctl_store_node_by_name(t->st, "my-laptop", &n), 0);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "laptop-5"), 0);
	assert_string_equal(reg_name(t, 11, "laptop", &n), "laptop-4");
	for (uint32_t i = 12; i < 111; i++)
		reg_name(t, i, "LAPTOP", &n);
	assert_string_equal(n.name, "laptop-104");

	/* Reserved names are never given out, nor taken by a rename. */
	assert_string_equal(reg_name(t, 200, "localhost", &n), "localhost-node");
	assert_string_equal(reg_name(t, 201, "WPAD.corp.example", &n), "wpad-node");
	assert_string_equal(reg_name(t, 202, "dev-localhost", &n), "dev-localhost-node");
	assert_false(hostname_reserved(n.name)); /* what it gets is usable */
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "localhost"),
	                 CTL_STORE_EINVAL);
	assert_int_equal(ctl_store_node_rename(t->st, n.id, "metadata"),
	                 CTL_STORE_EINVAL);
}

static void alloc_skips_reserved_addresses(void **state)
{
	(void)state;
	assert_true(ctl_alloc_v4_reserved(0));
	assert_false(ctl_alloc_v4_reserved(1));
	assert_true(ctl_alloc_v4_reserved(255));                       /* 100.64.0.255 */
	assert_true(ctl_alloc_v4_reserved(256));                       /* 100.64.1.0 */
	assert_true(ctl_alloc_v4_reserved(0x64646464u - 0x64400000u)); /* MagicDNS */
	assert_true(ctl_alloc_v4_reserved(CTL_ALLOC_V4_SIZE - 1));
	assert_int_equal(ctl_alloc_v4_next(254), 257);
	assert_int_equal(ctl_alloc_v4_next(CTL_ALLOC_V4_SIZE - 2), 1);
	uint8_t ula[16] = {0xfd, 1, 2, 3, 4, 5}, v6[16];
	ctl_alloc_v6(ula, 0x64400001u, v6);
	const uint8_t want[16] = {0xfd, 1, 2, 3, 4,    5,    0, 0,
	                          0,    0, 0, 0, 0x64, 0x40, 0, 1};
	assert_memory_equal(v6, want, 16);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void addresses_unique_over_3000_nodes(void **state)
{
	struct t *t = *state;
	enum { N = 3000 };
	char sec[CTL_SECRET_MAX], host[32];
	struct ctl_node *n = malloc(sizeof *n);
	struct ctl_meta m;
	struct timespec t0, t1;

	new_key(t, true, 0, sec);
	assert_int_equal(ctl_store_get_meta(t->st, &m), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 1; i <= N; i++) {
		snprintf(host, sizeof host, "host%u", i);
		struct ctl_store_reg r = req(i, host, sec);
		assert_int_equal(ctl_store_node_register(t->st, &r, n, NULL), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("registered %d nodes in %.3f s (%.0f us each)\n", N, s,
	              s * 1e6 / N);

	struct ctl_node *all;
	size_t cnt;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ctl_store_node_list(t->st, 0, &all, &cnt), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("listed %zu nodes in %.3f s\n", cnt, s);
	assert_int_equal(cnt, N);
	uint32_t *v4 = malloc(N * sizeof *v4);
	for (size_t i = 0; i < cnt; i++) {
		v4[i] = all[i].ipv4;
		assert_int_equal(all[i].ipv4 >> 22, 0x64400000u >> 22);
		assert_false(ctl_alloc_v4_reserved(all[i].ipv4 - 0x64400000u));
		assert_memory_equal(all[i].ipv6, m.ula, 6);
		uint32_t low = (uint32_t)all[i].ipv6[12] << 24 | all[i].ipv6[13] << 16 |
		               all[i].ipv6[14] << 8 | all[i].ipv6[15];
		assert_int_equal(low, all[i].ipv4); /* v6 unique iff v4 is */
	}
	qsort(v4, N, sizeof *v4, cmp_u32);
	for (size_t i = 1; i < N; i++)
		assert_true(v4[i] != v4[i - 1]);
	free(v4);
	free(all);
	free(n);
}

static void map_version_counts_map_changes(void **state)
{
	struct t *t = *state;
	struct ctl_node a, b;
	struct ctl_node *list;
	size_t cnt;

	assert_int_equal(version(t), 0);
	assert_string_equal(reg_name(t, 1, "a", &a), "a");
	assert_int_equal(version(t), 1);
	assert_int_equal(a.version, 1);
	reg_name(t, 2, "b", &b);
	assert_int_equal(version(t), 2);

	struct ctl_node_update u = {.mask = CTL_UPD_LAST_SEEN, .last_seen = NOW + 5};
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), 0);
	assert_int_equal(version(t), 2); /* last_seen alone: no map change */
	u = (struct ctl_node_update){.mask = CTL_UPD_ENDPOINTS | CTL_UPD_HOME_RELAY |
	                                     CTL_UPD_ONLINE | CTL_UPD_DISCO,
	                             .endpoints = "198.18.0.9:1",
	                             .home_relay = 3,
	                             .online = true};
	memset(u.disco_key, 0x44, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), 0);
	assert_int_equal(version(t), 3);
	assert_int_equal(ctl_store_node_by_id(t->st, a.id, &a), 0);
	assert_int_equal(a.version, 3);
	assert_int_equal(a.home_relay, 3);
	assert_true(a.online);
	assert_int_equal(a.last_seen, NOW + 5);
	assert_int_equal(a.disco_key[0], 0x44);

	/* Deltas: only a changed since version 2. */
	assert_int_equal(ctl_store_node_list(t->st, 2, &list, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(list[0].id, a.id);
	free(list);

	/* Refused changes leave the version alone. */
	u = (struct ctl_node_update){.mask = CTL_UPD_NODE_KEY};
	memcpy(u.node_key, b.node_key, CTL_KEY_LEN);
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), CTL_STORE_ECONFLICT);
	char big[CTL_HOSTINFO_MAX + 2];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	u = (struct ctl_node_update){.mask = CTL_UPD_HOSTINFO, .hostinfo = big};
	assert_int_equal(ctl_store_node_update(t->st, a.id, &u), CTL_STORE_EINVAL);
	u = (struct ctl_node_update){.mask = CTL_UPD_ONLINE};
	assert_int_equal(ctl_store_node_update(t->st, 999, &u), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_node_remove(t->st, 999), CTL_STORE_ENOTFOUND);
	assert_int_equal(version(t), 3);

	/* A pending node was in no map: its removal leaves no tombstone. */
	int64_t *gone;
	assert_int_equal(ctl_store_node_remove(t->st, b.id), 0);
	assert_int_equal(version(t), 4);
	assert_int_equal(ctl_store_node_removed(t->st, 0, &gone, &cnt), 0);
	assert_int_equal(cnt, 0);
	free(gone);
	reg_name(t, 2, "b", &b);
	assert_int_equal(version(t), 5);

	assert_int_equal(ctl_store_node_approve(t->st, a.id), 0);
	assert_int_equal(ctl_store_node_approve(t->st, b.id), 0);
	assert_int_equal(ctl_store_node_rename(t->st, a.id, "aa"), 0);
	assert_int_equal(ctl_store_node_expire(t->st, a.id, NOW), 0);
	assert_int_equal(ctl_store_node_remove(t->st, b.id), 0);
	assert_int_equal(version(t), 10);
	int64_t bid = b.id;
	assert_int_equal(ctl_store_node_by_id(t->st, bid, &b), CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_node_list(t->st, 0, &list, &cnt), 0);
	assert_int_equal(cnt, 1);
	free(list);

	/* The removal is in the delta since 9, not since 10. */
	assert_int_equal(ctl_store_node_removed(t->st, 9, &gone, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(gone[0], bid);
	free(gone);
	assert_int_equal(ctl_store_node_removed(t->st, 10, &gone, &cnt), 0);
	assert_int_equal(cnt, 0);
	free(gone);
}

static int fault_fail(const char *point, void *arg)
{
	return strcmp(point, (const char *)arg) == 0;
}

static int fault_crash(const char *point, void *arg)
{
	(void)arg;
	if (strcmp(point, "register:before-commit") == 0)
		_exit(42);
	return 0;
}

/* Nothing of the failed registration r is left: no node, key unspent,
 * version and the next address unchanged. */
static void assert_untouched(struct t *t, const struct ctl_store_reg *r, int64_t v)
{
	struct ctl_node n;
	struct ctl_authkey *keys;
	size_t nk;
	assert_int_equal(ctl_store_node_by_machine_key(t->st, r->machine_key, &n),
	                 CTL_STORE_ENOTFOUND);
	assert_int_equal(ctl_store_key_list(t->st, &keys, &nk), 0);
	assert_int_equal(nk, 1);
	assert_int_equal(keys[0].uses, 0);
	free(keys);
	assert_int_equal(version(t), v);
}

static void crash_or_fault_mid_register_leaves_nothing(void **state)
{
	struct t *t = *state;
	char sec[CTL_SECRET_MAX];
	struct ctl_node first, n;

	new_key(t, false, 0, sec);
	reg_name(t, 1, "first", &first);
	int64_t v = version(t);
	struct ctl_store_reg r = req(2, "second", sec);

	/* An error at the last step rolls everything back. */
	ctl_store_set_fault(t->st, fault_fail, (void *)"register:before-commit");
	assert_int_equal(ctl_store_node_register(t->st, &r, &n, NULL), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_untouched(t, &r, v);

	/* A process that dies before COMMIT. (Our handle is closed across the
	 * fork: an SQLite connection must not be shared with a child.) */
	ctl_store_close(t->st);
	t->st = NULL;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];
		struct ctl_store *c = ctl_store_open_sqlite(t->dir, err, sizeof err);
		if (!c)
			_exit(1);
		ctl_store_set_fault(c, fault_crash, NULL);
		ctl_store_node_register(c, &r, &n, NULL);
		_exit(2); /* not reached if the hook ran */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 42);
	t->st = open_store(t);
	assert_untouched(t, &r, v);

	/* And the registration then succeeds, with the next address. */
	assert_int_equal(ctl_store_node_register(t->st, &r, &n, NULL), 0);
	assert_int_equal(n.ipv4, first.ipv4 + 1);
	assert_int_equal(version(t), v + 1);

	/* A faulted admin change is rolled back too. */
	ctl_store_set_fault(t->st, fault_fail, (void *)"remove");
	assert_int_equal(ctl_store_node_remove(t->st, n.id), CTL_STORE_EIO);
	ctl_store_set_fault(t->st, NULL, NULL);
	assert_int_equal(ctl_store_node_by_id(t->st, n.id, &n), 0);
	assert_int_equal(version(t), v + 1);
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void migrates_from_version_0_and_refuses_newer(void **state)
{
	struct t *t = *state;
	char p[160], err[256];

	assert_int_equal(mkdir(t->dir, 0700), 0);
	snprintf(p, sizeof p, "%s/control.db", t->dir);
	raw_exec(p, "CREATE TABLE unrelated (x); PRAGMA user_version = 0");
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 0);
	t->st = open_store(t);
	assert_int_equal(raw_int(p, "PRAGMA user_version"), 8);
	assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_master WHERE name IN "
	                            "('meta', 'auth_keys', 'nodes')"),
	                 3);
	init_store(t);
	ctl_store_close(t->st);
	t->st = open_store(t); /* already at v5: nothing to do */
	ctl_store_close(t->st);
	t->st = NULL;

	raw_exec(p, "PRAGMA user_version = 99");
	assert_null(ctl_store_open_sqlite(t->dir, err, sizeof err));
	assert_non_null(strstr(err, "newer"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(init_and_reopen_keep_everything, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(files_are_0600_in_a_0700_dir, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(auth_key_kinds_and_refusals, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(same_machine_key_gets_same_node, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(names_are_unique_labels, setup_init,
	                                    teardown),
	    cmocka_unit_test(alloc_skips_reserved_addresses),
	    cmocka_unit_test_setup_teardown(addresses_unique_over_3000_nodes, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(map_version_counts_map_changes, setup_init,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(crash_or_fault_mid_register_leaves_nothing,
	                                    setup_init, teardown),
	    cmocka_unit_test_setup_teardown(migrates_from_version_0_and_refuses_newer,
	                                    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
