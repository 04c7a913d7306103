/* node/state: the state directory of a joined node.
 *  - the directory is created 0700 (an existing looser one is tightened);
 *  - keys are generated once, saved 0600 as base64, and the same keys load
 *    again; corrupt key files give an error naming the file;
 *  - control.json, self.json and netmap.json round-trip; missing files give
 *    -ENOENT, corrupt ones -EINVAL with a readable message;
 *  - a directory joined to one mesh refuses another server key, naming the
 *    mesh it belongs to, and follows a moved host/port of the same mesh;
 *  - writes are atomic: no temporary file is left behind. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "node/state.h"
#include "tests/unit/tmpdir_fixture.h"

TMPDIR_FIXTURE("test_node_state")

static void sub(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", root, name);
}

static unsigned mode_of(const char *dir, const char *name)
{
	char p[600];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_int_equal(stat(p, &st), 0);
	return st.st_mode & 0777;
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_open_modes(void **state)
{
	(void)state;
	char d[300], err[256];
	sub(d, sizeof(d), "s1");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(mode_of(d, "."), 0700);
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(mode_of(d, "."), 0700);
	/* a file where the directory should be */
	sub(d, sizeof(d), "plainfile");
	put(root, "plainfile", "x");
	assert_int_equal(node_state_open(d, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, "not a directory"));
	/* parent missing */
	sub(d, sizeof(d), "no/such/dir");
	assert_int_equal(node_state_open(d, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot create"));
}

/* As root, --state naming another user's directory: refused, and left as
 * it was (before, it was chmod 0700 and used). */
static void test_open_refuses_another_users_dir(void **state)
{
	(void)state;
	char d[300], err[256];

	if (geteuid() != 0)
		skip();
	sub(d, sizeof(d), "theirs");
	assert_int_equal(mkdir(d, 0755), 0);
	assert_int_equal(chown(d, 65534, 65534), 0);
	assert_int_equal(node_state_open(d, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "belongs to uid 65534"));
	assert_int_equal(mode_of(d, "."), 0755);
}

static void test_keys(void **state)
{
	(void)state;
	char d[300], err[256];
	struct node_keys a, b;
	bool created = false;
	sub(d, sizeof(d), "keys");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(node_state_keys(d, &a, &created, err, sizeof(err)), 0);
	assert_true(created);
	assert_int_equal(mode_of(d, "machine.key"), 0600);
	assert_int_equal(mode_of(d, "node.key"), 0600);
	assert_int_equal(mode_of(d, "disco.key"), 0600);
	assert_memory_not_equal(a.machine, a.node, 32);
	assert_memory_not_equal(a.node, a.disco, 32);
	assert_int_equal(a.node[0] & 7, 0); /* clamped */
	assert_int_equal(node_state_keys(d, &b, &created, err, sizeof(err)), 0);
	assert_false(created);
	assert_memory_equal(&a, &b, sizeof(a));
	/* a corrupt key file names itself */
	put(d, "disco.key", "not base64 at all\n");
	assert_int_equal(node_state_keys(d, &b, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "disco.key"));
	put(d, "disco.key", "AAAA\n"); /* base64, wrong length */
	assert_int_equal(node_state_keys(d, &b, NULL, err, sizeof(err)), -EINVAL);
	node_keys_wipe(&a);
	node_keys_wipe(&b);
	/* no temporary files left */
	char p[600];
	snprintf(p, sizeof(p), "%s/node.key.tmp", d);
	assert_int_not_equal(access(p, F_OK), 0);
}

static void test_control(void **state)
{
	(void)state;
	char d[300], err[256];
	struct node_server c = {.port = 17443}, back;
	snprintf(c.host, sizeof(c.host), "ctl.example.org");
	for (int i = 0; i < 32; i++)
		c.server_key[i] = (uint8_t)(i * 3 + 1);
	sub(d, sizeof(d), "ctl");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(node_state_bind_control(d, &c, err, sizeof(err)), 0);
	assert_int_equal(mode_of(d, "control.json"), 0600);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), 0);
	assert_string_equal(back.host, c.host);
	assert_int_equal(back.port, c.port);
	assert_memory_equal(back.server_key, c.server_key, 32);
	/* same mesh, moved: follows */
	struct node_server moved = c;
	moved.port = 17444;
	assert_int_equal(node_state_bind_control(d, &moved, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), 0);
	assert_int_equal(back.port, 17444);
	/* another mesh: refused, naming the one it belongs to */
	struct node_server other = c;
	other.server_key[0] ^= 1;
	assert_int_equal(node_state_bind_control(d, &other, err, sizeof(err)), -EEXIST);
	assert_non_null(
	    strstr(err, "already belongs to the mesh at ctl.example.org:17444"));
	assert_non_null(strstr(err, "use another --state directory"));
	/* corrupt */
	put(d, "control.json", "{\"host\": \"h\", \"port\": 0, \"server_key\": \"x\"}");
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"port\""));
	put(d, "control.json", "{ truncated");
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "control.json"));
	/* the file never holds an auth key */
	char *data;
	size_t len;
	assert_int_equal(node_state_save_control(d, &c, err, sizeof(err)), 0);
	assert_int_equal(
	    node_state_read(d, "control.json", 4096, &data, &len, err, sizeof(err)), 0);
	assert_null(strstr(data, "auth"));
	free(data);
}

/* control.json with several control addresses ("more"): saved and loaded
 * in order; a file without it (older, or one address) loads; a bad list
 * is corruption; a --join with a changed list is saved. */
static void test_control_more(void **state)
{
	(void)state;
	char d[300], err[256];
	struct node_server c = {.port = 7443}, back;
	snprintf(c.host, sizeof(c.host), "198.18.0.1");
	for (int i = 0; i < 32; i++)
		c.server_key[i] = (uint8_t)(i + 1);
	c.n_more = CTL_TOKEN_ADDRS_MAX - 1;
	for (int i = 0; i < c.n_more; i++) {
		snprintf(c.more[i].host, sizeof(c.more[i].host), "ctl%d.example", i + 2);
		c.more[i].port = (uint16_t)(7444 + i);
	}
	sub(d, sizeof(d), "ctlmore");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(node_state_bind_control(d, &c, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), 0);
	assert_true(node_server_same_addrs(&back, &c));
	assert_int_equal(back.n_more, CTL_TOKEN_ADDRS_MAX - 1);
	assert_string_equal(back.more[6].host, "ctl8.example");
	assert_int_equal(back.more[6].port, 7450);
	/* the same mesh with a shorter list: follows */
	struct node_server two = c;
	two.n_more = 1;
	assert_int_equal(node_state_bind_control(d, &two, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n_more, 1);
	assert_false(node_server_same_addrs(&back, &c));
	/* one address: no "more" in the file (an older node reads it) */
	struct node_server one = c;
	one.n_more = 0;
	assert_int_equal(node_state_save_control(d, &one, err, sizeof(err)), 0);
	char *data;
	size_t len;
	assert_int_equal(
	    node_state_read(d, "control.json", 4096, &data, &len, err, sizeof(err)), 0);
	assert_null(strstr(data, "more"));
	free(data);
	/* a file from before several addresses */
	put(d, "control.json",
	    "{\"host\": \"h\", \"port\": 1, \"server_key\": "
	    "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\"}");
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n_more, 0);
	assert_int_equal(back.port, 1);
	/* bad lists: corruption, nothing half-loaded */
	static const char *const bad[] = {
	    "\"more\": []",
	    "\"more\": {}",
	    "\"more\": [{\"host\": \"\", \"port\": 1}]",
	    "\"more\": [{\"host\": \"a\", \"port\": 0}]",
	    "\"more\": [{\"host\": \"a\", \"port\": 65536}]",
	    "\"more\": [{\"host\": \"a\"}]",
	    "\"more\": [{\"host\": 5, \"port\": 1}]",
	    "\"more\": [1,2,3,4,5,6,7,8]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char f[512];
		snprintf(f, sizeof(f),
		         "{\"host\": \"h\", \"port\": 1, \"server_key\": "
		         "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\", %s}",
		         bad[i]);
		put(d, "control.json", f);
		assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)),
		                 -EINVAL);
		assert_non_null(strstr(err, "\"more\""));
		assert_int_equal(back.port, 0);
	}
	/* a host longer than any: 254 characters */
	char f[800], h[255];
	memset(h, 'h', 254);
	h[254] = 0;
	snprintf(f, sizeof(f),
	         "{\"host\": \"h\", \"port\": 1, \"server_key\": "
	         "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\", \"more\": "
	         "[{\"host\": \"%s\", \"port\": 1}]}",
	         h);
	put(d, "control.json", f);
	assert_int_equal(node_state_load_control(d, &back, err, sizeof(err)), -EINVAL);
}

static void test_self(void **state)
{
	(void)state;
	char d[300], err[256];
	struct ctl_register_resp r = {.status = CTL_REG_OK, .node_id = 42};
	snprintf(r.name, sizeof(r.name), "web");
	snprintf(r.fqdn, sizeof(r.fqdn), "web.mesh.internal");
	snprintf(r.domain, sizeof(r.domain), "mesh.internal");
	uint8_t v4[4] = {100, 64, 0, 7};
	memcpy(r.ipv4, v4, 4);
	r.ipv6[0] = 0xfd;
	r.ipv6[15] = 7;
	struct node_self s, back;
	node_self_from_resp(&s, &r);
	s.listen_port = 41641;
	sub(d, sizeof(d), "self");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_self(d, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(node_state_save_self(d, &s, err, sizeof(err)), 0);
	assert_int_equal(mode_of(d, "self.json"), 0600);
	assert_int_equal(node_state_load_self(d, &back, err, sizeof(err)), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	put(d, "self.json",
	    "{\"node_id\":1,\"name\":\"a\",\"fqdn\":\"a.m\",\"domain\":\"m\","
	    "\"ipv4\":\"100.64.0.300\",\"ipv6\":\"fd::1\"}");
	assert_int_equal(node_state_load_self(d, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "\"ipv4\""));
	put(d, "self.json", "[]");
	assert_int_equal(node_state_load_self(d, &back, err, sizeof(err)), -EINVAL);
}

static void test_netmap(void **state)
{
	(void)state;
	char d[300], err[512];
	struct ctl_map_full map = {.version = 9, .self_id = 1};
	snprintf(map.self_name, sizeof(map.self_name), "me");
	assert_true(ctl_ip_parse("100.64.0.1", &map.self_addrs[0]));
	map.n_self_addrs = 1;
	snprintf(map.dns_domain, sizeof(map.dns_domain), "mesh.internal");
	assert_true(ctl_ip_parse("100.100.100.100", &map.magic_dns));
	struct ctl_peer peers[2];
	memset(peers, 0, sizeof(peers));
	for (int i = 0; i < 2; i++) {
		peers[i].id = 10 + (uint64_t)i;
		snprintf(peers[i].name, sizeof(peers[i].name), "peer%d", i);
		peers[i].node_key[0] = (uint8_t)(i + 1);
		peers[i].disco_key[0] = (uint8_t)(i + 9);
		assert_true(
		    ctl_ip_parse(i ? "100.64.0.3" : "100.64.0.2", &peers[i].addrs[0]));
		peers[i].n_addrs = 1;
		assert_true(ctl_prefix_parse(i ? "100.64.0.3/32" : "100.64.0.2/32",
		                             &peers[i].allowed[0]));
		peers[i].n_allowed = 1;
		assert_true(ctl_endpoint_parse("127.0.0.1:5555", &peers[i].eps[0]));
		peers[i].n_eps = 1;
		peers[i].online = i == 0;
	}
	map.peers = peers;
	map.n_peers = 2;
	sub(d, sizeof(d), "map");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	struct ctl_msg m;
	assert_int_equal(node_state_load_map(d, &m, err, sizeof(err)), -ENOENT);
	assert_int_equal(node_state_save_map(d, &map, err, sizeof(err)), 0);
	assert_int_equal(mode_of(d, "netmap.json"), 0600);
	assert_int_equal(node_state_load_map(d, &m, err, sizeof(err)), 0);
	assert_int_equal(m.type, CTL_MSG_MAP_FULL);
	assert_int_equal(m.u.map.version, 9);
	assert_string_equal(m.u.map.dns_domain, "mesh.internal");
	assert_int_equal(m.u.map.n_peers, 2);
	assert_string_equal(m.u.map.peers[1].name, "peer1");
	assert_memory_equal(m.u.map.peers[1].node_key, peers[1].node_key, 32);
	assert_true(m.u.map.peers[0].online);
	ctl_msg_free(&m);
	put(d, "netmap.json", "{\"version\": \"nine\"}");
	assert_int_equal(node_state_load_map(d, &m, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "netmap.json"));
	ctl_msg_free(&m);
}

/* A map of n peers, each with n_eps IPv6 endpoints (calloc'd peers). */
static void big_map(struct ctl_map_full *map, size_t n, int n_eps)
{
	memset(map, 0, sizeof(*map));
	map->version = 7;
	map->self_id = 999999;
	snprintf(map->self_name, sizeof(map->self_name), "me");
	assert_true(ctl_ip_parse("100.64.0.1", &map->self_addrs[0]));
	map->n_self_addrs = 1;
	snprintf(map->dns_domain, sizeof(map->dns_domain), "mesh.internal");
	assert_true(ctl_ip_parse("100.100.100.100", &map->magic_dns));
	map->peers = calloc(n, sizeof(*map->peers));
	assert_non_null(map->peers);
	map->n_peers = n;
	for (size_t i = 0; i < n; i++) {
		struct ctl_peer *p = &map->peers[i];
		char a[64];
		p->id = i + 1;
		snprintf(p->name, sizeof(p->name), "node-%zu", i);
		p->node_key[0] = 1;
		memcpy(p->node_key + 1, &i, sizeof(i));
		p->disco_key[0] = 2;
		memcpy(p->disco_key + 1, &i, sizeof(i));
		snprintf(a, sizeof(a), "100.%zu.%zu.%zu", 64 + (i >> 16), (i >> 8) & 255,
		         i & 255);
		assert_true(ctl_ip_parse(a, &p->addrs[0]));
		p->n_addrs = 1;
		snprintf(a + strlen(a), sizeof(a) - strlen(a), "/32");
		assert_true(ctl_prefix_parse(a, &p->allowed[0]));
		p->n_allowed = 1;
		for (int e = 0; e < n_eps; e++) {
			snprintf(a, sizeof(a), "[2001:db8:%zx:%x::1]:%d", i, e,
			         41641 + e);
			assert_true(ctl_endpoint_parse(a, &p->eps[e]));
		}
		p->n_eps = (size_t)n_eps;
	}
}

/* A map the cache cannot hold (over 10,000 peers, or over the 4 MiB the
 * loader reads) removes the cached one: before, the older, smaller map
 * stayed and was loaded at every start, removed nodes' keys and all; and a
 * 4.6 MB file was written that the loader then refused. */
static void test_netmap_too_big(void **state)
{
	(void)state;
	char d[300], err[512];
	struct ctl_map_full small, many, fat;
	struct ctl_msg m;
	sub(d, sizeof(d), "bigmap");
	assert_int_equal(node_state_open(d, err, sizeof(err)), 0);
	big_map(&small, 3000, 1);
	big_map(&many, 10001, 1);
	big_map(&fat, 6000, 16);
	assert_int_equal(node_state_save_map(d, &small, err, sizeof(err)), 0);
	assert_int_equal(node_state_load_map(d, &m, err, sizeof(err)), 0);
	assert_int_equal(m.u.map.n_peers, 3000);
	ctl_msg_free(&m);

	assert_true(node_state_save_map(d, &many, err, sizeof(err)) < 0);
	print_message("%s\n", err);
	char why[512];
	snprintf(why, sizeof(why), "%s", err);
	assert_int_equal(node_state_load_map(d, &m, err, sizeof(err)), -ENOENT);
	ctl_msg_free(&m);
	assert_non_null(strstr(why, "10001 peers"));

	assert_int_equal(node_state_save_map(d, &small, err, sizeof(err)), 0);
	/* what the saver writes, the loader reads; what it cannot, it does not */
	int r = node_state_save_map(d, &fat, err, sizeof(err));
	print_message("%s\n", r ? err : "saved");
	int l = node_state_load_map(d, &m, err, sizeof(err));
	if (r == 0) {
		assert_int_equal(l, 0);
		assert_int_equal(m.u.map.n_peers, 6000);
	} else {
		assert_int_equal(l, -ENOENT);
	}
	ctl_msg_free(&m);
	free(small.peers);
	free(many.peers);
	free(fat.peers);
}

static bool exists_at(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* A fake ephemeral directory of a run: with a lock file aged age_s. */
static void fake_eph(const char *path, long age_s)
{
	char lock[400];
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(lock, sizeof(lock), "%s/eph.lock", path);
	int fd = open(lock, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct timeval tv[2];
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= age_s;
	tv[1] = tv[0];
	assert_int_equal(utimes(lock, tv), 0);
	char key[400];
	snprintf(key, sizeof(key), "%s/node.key", path);
	fd = open(key, O_CREAT | O_RDWR, 0600);
	close(fd);
}

/* Ephemeral directories: locked while in use; stale ones of killed runs
 * (lock free, older than a minute) removed at the next start, held or
 * young ones kept; removal goes by descriptor, not by the path. */
static void test_ephemeral_dirs(void **state)
{
	(void)state;
	char base[300], stale[400], young[400], held[400], out[512], err[300];
	snprintf(base, sizeof(base), "%s/eph", root);
	assert_int_equal(mkdir(base, 0700), 0);
	unsetenv("XDG_RUNTIME_DIR");
	setenv("TMPDIR", base, 1);
	snprintf(stale, sizeof(stale), "%s/mesh-proxy-eph-stale1", base);
	snprintf(young, sizeof(young), "%s/mesh-proxy-eph-young1", base);
	snprintf(held, sizeof(held), "%s/mesh-proxy-eph-held01", base);
	fake_eph(stale, 3600);
	fake_eph(young, 0);
	fake_eph(held, 3600);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t kid = fork();
	if (kid == 0) { /* a running node holding its lock */
		char lock[450];
		snprintf(lock, sizeof(lock), "%s/eph.lock", held);
		int fd = open(lock, O_RDWR);
		if (fd < 0 || flock(fd, LOCK_EX) != 0)
			_exit(1);
		close(pfd[0]);
		assert_int_equal(write(pfd[1], "x", 1), 1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	char c;
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);

	int made = node_state_make_ephemeral(out, sizeof(out), err, sizeof(err));
	bool stale_gone = !exists_at(stale), young_kept = exists_at(young),
	     held_kept = exists_at(held);
	kill(kid, SIGKILL); /* before any assertion: a failure must not leave it */
	waitpid(kid, NULL, 0);
	assert_int_equal(made, 0);
	assert_true(stale_gone);
	assert_true(young_kept);
	assert_true(held_kept);

	/* ours is locked: another process cannot take it */
	char lock[600];
	snprintf(lock, sizeof(lock), "%s/eph.lock", out);
	int fd = open(lock, O_RDWR);
	assert_true(fd >= 0);
	assert_int_not_equal(flock(fd, LOCK_EX | LOCK_NB), 0); /* own OFD differs */
	close(fd);

	snprintf(lock, sizeof(lock), "%s/node.key", out);
	fd = open(lock, O_CREAT | O_RDWR, 0600);
	close(fd);
	/* the path swapped for another directory: that one is untouched */
	char moved[600], victim[700];
	snprintf(moved, sizeof(moved), "%s.moved", out);
	assert_int_equal(rename(out, moved), 0);
	assert_int_equal(mkdir(out, 0700), 0);
	snprintf(victim, sizeof(victim), "%s/precious", out);
	fd = open(victim, O_CREAT | O_RDWR, 0600);
	close(fd);
	node_state_remove(out);
	assert_true(exists_at(victim));
	char moved_key[700];
	snprintf(moved_key, sizeof(moved_key), "%s/node.key", moved);
	assert_true(exists_at(moved)); /* ours, emptied where it went */
	assert_false(exists_at(moved_key));
	snprintf(moved_key, sizeof(moved_key), "%s/eph.lock", moved);
	assert_false(exists_at(moved_key));

	/* the plain case: made, removed, nothing left */
	assert_int_equal(node_state_make_ephemeral(out, sizeof(out), err, sizeof(err)),
	                 0);
	assert_true(exists_at(out));
	node_state_remove(out);
	assert_false(exists_at(out));
	unsetenv("TMPDIR");
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_modes),
	    cmocka_unit_test(test_open_refuses_another_users_dir),
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_control),
	    cmocka_unit_test(test_control_more),
	    cmocka_unit_test(test_self),
	    cmocka_unit_test(test_netmap),
	    cmocka_unit_test(test_netmap_too_big),
	    cmocka_unit_test(test_ephemeral_dirs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
