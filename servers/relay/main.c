/* mesh-relay: the relay server's command line (up, status) and its wiring
 * to mesh-control (see relay.h for the server itself). */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/control/client.h"
#include "core/control/token.h"
#include "core/util/harden.h"
#include "core/util/log.h"
#include "core/util/sockaddr.h"
#include "core/util/version.h"
#include "servers/relay/api.h"
#include "servers/relay/health.h"
#include "servers/relay/relay.h"

static const char usage[] =
    "usage: mesh-relay up --join TOKEN --state DIR --listen ADDR:PORT [--stun "
    "ADDR:PORT]\n"
    "                     [--region NAME] [--advertise HOST:PORT]\n"
    "                     [--tls-cert FILE --tls-key FILE] [--health-listen ADDR:PORT]\n"
    "                     [LIMITS] [-v]\n"
    "       mesh-relay up --state DIR [same options to change them]\n"
    "       mesh-relay status --state DIR [--json]\n"
    "       mesh-relay --help | --version\n"
    "\n"
    "A relay for a meshproxy mesh: nodes that cannot reach each other directly\n"
    "send their WireGuard packets through it over TCP (HTTP/1.1 upgrade, TLS\n"
    "optional), addressed by node key; it reads none of them. Only nodes of the\n"
    "mesh may connect: the relay joins mesh-control with a relay token and learns\n"
    "the admitted node keys from it as they change. Relays of one region forward\n"
    "to each other. It also answers STUN on UDP. Runs unprivileged.\n"
    "\n"
    "commands:\n"
    "  up          register (with --join) or resume, then serve until SIGINT/SIGTERM\n"
    "  status      the running relay's counters (clients, packets, drops)\n"
    "\n"
    "options:\n"
    "  --join TOKEN          a relay join token: `mesh-control token --relay`\n"
    "                        (visible to every user in the process list: prefer\n"
    "                        --join-file or MESH_RELAY_JOIN)\n"
    "  --join-file FILE      read the join token from FILE (first line)\n"
    "  MESH_RELAY_JOIN       environment: the join token, when neither is given\n"
    "  --state DIR           the relay's key and settings (made 0700)\n"
    "  --listen ADDR:PORT    the TCP address to serve (e.g. 0.0.0.0:8443)\n"
    "  --advertise HOST:PORT what nodes dial (default: the --listen address,\n"
    "                        which must then not be 0.0.0.0)\n"
    "  --stun ADDR:PORT      also answer STUN binding requests on this UDP address\n"
    "  --region NAME         the relay's region (default \"default\"); relays of one\n"
    "                        region mesh with each other\n"
    "  --tls-cert FILE, --tls-key FILE\n"
    "                        serve TLS with this PEM certificate chain and key\n"
    "  --health-listen ADDR:PORT  HTTP for probes and Prometheus: /livez, /readyz\n"
    "                        (200 once mesh-control sent the admitted keys),\n"
    "                        /metrics; any address (it serves no secrets)\n"
    "  --json                status: JSON for scripts\n"
    "  -v                    debug logging\n"
    "\n"
    "LIMITS:\n"
    "  --max-clients N       connections in all (default 10000)\n"
    "  --queue N             packets queued per client before the oldest is\n"
    "                        dropped (default 64, at most 4096; also at most\n"
    "                        512 KiB)\n"
    "  --write-timeout MS    a client that reads nothing this long is\n"
    "                        disconnected (default 5000)\n"
    "\n"
    "example:\n"
    "  mesh-control --data /var/lib/mesh-control token --relay   # prints TOKEN\n"
    "  mesh-relay up --join TOKEN --state /var/lib/mesh-relay \\\n"
    "      --listen 0.0.0.0:8443 --advertise relay1.example.net:8443 \\\n"
    "      --stun 0.0.0.0:3478 --region eu\n"
    "  mesh-relay status --state /var/lib/mesh-relay\n";

struct opts {
	const char *join, *join_file, *state, *listen, *advertise, *stun, *region, *cert,
	    *key, *health;
	unsigned max_clients, queue, write_timeout;
	bool json, verbose;
};

static int die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-relay: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun `mesh-relay --help` for usage\n");
	return 2;
}

/* --- state directory ---------------------------------------------------- */

struct rly_state {
	char control_host[CTL_TOKEN_HOST_MAX + 1]; /* the first control address */
	uint16_t control_port;
	/* the token's further control addresses, in order (relay.json's
	 * control_more; absent with one) */
	struct ctl_token_addr control_more[CTL_TOKEN_ADDRS_MAX - 1];
	uint8_t n_control_more;
	uint8_t control_key[32];
	char listen[300], advertise[300], stun[300], region[64], cert[1024], key[1024];
};

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

/* Replaces path atomically: a fresh temp file (never through a link left
 * there), synced, renamed over it, and the directory synced so the rename
 * survives a crash. */
static int write_file(const char *path, const void *p, size_t n)
{
	char tmp[4200], dir[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	bool ok = write(fd, p, n) == (ssize_t)n && fsync(fd) == 0;
	close(fd);
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -EIO;
	}
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* The relay key: DIR/relay.key (32 raw bytes, 0600), made on first use. */
static int load_key(const char *dir, uint8_t priv[32], uint8_t pub[32])
{
	char p[4200];
	path_in(p, sizeof p, dir, "relay.key");
	int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		struct stat sb;
		if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size != 32) {
			close(fd);
			fprintf(stderr,
			        "mesh-relay: %s: not a relay key (a file of exactly 32 "
			        "bytes); move it away to make a new key (the relay then "
			        "needs a new token)\n",
			        p);
			return -1;
		}
		if (sb.st_mode & 077) {
			close(fd);
			fprintf(stderr,
			        "mesh-relay: %s: the relay's private key is readable by "
			        "others (mode %04o); chmod 600 %s\n",
			        p, (unsigned)(sb.st_mode & 07777), p);
			return -1;
		}
		ssize_t n = read(fd, priv, 32);
		close(fd);
		if (n != 32) {
			fprintf(stderr, "mesh-relay: %s: not a relay key (32 bytes)\n",
			        p);
			return -1;
		}
	} else if (errno == ELOOP) {
		fprintf(stderr,
		        "mesh-relay: %s: is a symbolic link; the key must be a "
		        "plain file\n",
		        p);
		return -1;
	} else if (errno == ENOENT) {
		randombytes_buf(priv, 32);
		if (write_file(p, priv, 32) < 0) {
			fprintf(stderr, "mesh-relay: %s: %s\n", p, strerror(errno));
			return -1;
		}
	} else {
		fprintf(stderr, "mesh-relay: %s: %s\n", p, strerror(errno));
		return -1;
	}
	crypto_scalarmult_base(pub, priv);
	return 0;
}

static void jstr(json_t *o, const char *k, char *out, size_t cap)
{
	const char *v = json_string_value(json_object_get(o, k));
	snprintf(out, cap, "%s", v ? v : "");
}

/* relay.json's control_more: absent (one control address, or a file from
 * before several), or 1..CTL_TOKEN_ADDRS_MAX - 1 objects {host, port}. */
static bool load_more(json_t *more, struct rly_state *st)
{
	size_t i;
	json_t *a;

	if (!more)
		return true;
	if (!json_is_array(more) || json_array_size(more) == 0 ||
	    json_array_size(more) > CTL_TOKEN_ADDRS_MAX - 1)
		return false;
	json_array_foreach(more, i, a)
	{
		struct ctl_token_addr *m = &st->control_more[i];
		const char *h = json_string_value(json_object_get(a, "host"));
		json_int_t port = json_integer_value(json_object_get(a, "port"));
		if (!h || !h[0] || strlen(h) > CTL_TOKEN_HOST_MAX || port < 1 ||
		    port > 65535)
			return false;
		snprintf(m->host, sizeof m->host, "%s", h);
		m->port = (uint16_t)port;
	}
	st->n_control_more = (uint8_t)json_array_size(more);
	return true;
}

static int load_state(const char *dir, struct rly_state *st)
{
	char p[4200];
	path_in(p, sizeof p, dir, "relay.json");
	json_error_t je;
	json_t *o = json_load_file(p, 0, &je);
	if (!o)
		return -ENOENT;
	jstr(o, "control_host", st->control_host, sizeof st->control_host);
	st->control_port =
	    (uint16_t)json_integer_value(json_object_get(o, "control_port"));
	char k[64];
	size_t bl = 0;
	jstr(o, "control_key", k, sizeof k);
	int r = sodium_base642bin(st->control_key, 32, k, strlen(k), NULL, &bl, NULL,
	                          sodium_base64_VARIANT_ORIGINAL);
	jstr(o, "listen", st->listen, sizeof st->listen);
	jstr(o, "advertise", st->advertise, sizeof st->advertise);
	jstr(o, "stun", st->stun, sizeof st->stun);
	jstr(o, "region", st->region, sizeof st->region);
	jstr(o, "tls_cert", st->cert, sizeof st->cert);
	jstr(o, "tls_key", st->key, sizeof st->key);
	bool more_ok = load_more(json_object_get(o, "control_more"), st);
	json_decref(o);
	if (r != 0 || bl != 32 || !st->control_host[0] || !st->control_port || !more_ok) {
		fprintf(stderr, "mesh-relay: %s: damaged; register again with --join\n",
		        p);
		return -EINVAL;
	}
	return 0;
}

static int save_state(const char *dir, const struct rly_state *st)
{
	char p[4200], k[64];
	sodium_bin2base64(k, sizeof k, st->control_key, 32,
	                  sodium_base64_VARIANT_ORIGINAL);
	json_t *o = json_pack(
	    "{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "control_host",
	    st->control_host, "control_port", (int)st->control_port, "control_key", k,
	    "listen", st->listen, "advertise", st->advertise, "stun", st->stun, "region",
	    st->region, "tls_cert", st->cert, "tls_key", st->key);
	if (o && st->n_control_more) {
		json_t *more = json_array();
		for (size_t i = 0; more && i < st->n_control_more; i++)
			json_array_append_new(more,
			                      json_pack("{s:s, s:i}", "host",
			                                st->control_more[i].host, "port",
			                                (int)st->control_more[i].port));
		if (!more || json_object_set_new(o, "control_more", more) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
	json_decref(o);
	if (!s)
		return -ENOMEM;
	path_in(p, sizeof p, dir, "relay.json");
	int r = write_file(p, s, strlen(s));
	free(s);
	if (r < 0)
		fprintf(stderr, "mesh-relay: %s: %s\n", p, strerror(-r));
	return r;
}

/* "HOST:PORT" or "[V6]:PORT" -> host, port. */
static bool split_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *c = strrchr(s, ':');
	if (!c || c == s)
		return false;
	size_t hl = (size_t)(c - s);
	const char *h = s;
	if (*s == '[' && hl >= 2 && s[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	char *end;
	long p = strtol(c + 1, &end, 10);
	if (*end || p < 1 || p > 65535 || hl == 0 || hl >= cap)
		return false;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (uint16_t)p;
	return true;
}

/* --- running ------------------------------------------------------------ */

struct relay_app {
	struct event_base *base;
	struct rly_server *srv;
	struct ctl_client *ctl;
	struct rly_api *api;
	char region[64];
	uint8_t pub[32];
	int exit_code;
	uint64_t started;
	char ctl_state[64];
};

static void on_state(void *ctx, enum ctl_client_state st, const char *detail,
                     const struct ctl_register_resp *resp)
{
	struct relay_app *a = ctx;
	snprintf(a->ctl_state, sizeof a->ctl_state, "%s", ctl_client_state_name(st));
	if (st == CTL_CLIENT_ONLINE) {
		log_info("mesh-relay: registered with mesh-control");
		rly_server_set_health(a->srv, "");
	} else if (st == CTL_CLIENT_BACKOFF) {
		struct ctl_client_status cs;
		ctl_client_get_status(a->ctl, &cs);
		log_info("mesh-relay: mesh-control unreachable (%s); retrying", detail);
		/* moving to another control address at once: not yet degraded */
		if (!(cs.n_addrs > 1 && cs.next_attempt_ms == 0))
			rly_server_set_health(a->srv,
			                      "mesh-control unreachable: the admission "
			                      "list may be stale");
	} else if (st == CTL_CLIENT_REFUSED) {
		log_error("mesh-relay: mesh-control refused this relay: %s. Make a new "
		          "token with `mesh-control token --relay` and run mesh-relay up "
		          "--join TOKEN again",
		          detail);
		a->exit_code = 1;
		event_base_loopexit(a->base, NULL);
	}
}

static void on_relay_state(void *ctx, const struct ctl_relay_state *st)
{
	struct relay_app *a = ctx;
	rly_server_set_admitted(a->srv, (const uint8_t(*)[32])st->keys, st->n_keys);
	struct rly_sibling *sib = calloc(st->n_relays ? st->n_relays : 1, sizeof *sib);
	size_t n = 0;
	for (size_t i = 0; sib && i < st->n_relays; i++) {
		const struct ctl_relay *r = &st->relays[i];
		if (r->id == st->self.id || strcmp(r->region, st->self.region) != 0 ||
		    !r->has_key)
			continue;
		snprintf(sib[n].host, sizeof sib[n].host, "%s", r->host);
		sib[n].port = r->port;
		sib[n].tls = r->tls;
		memcpy(sib[n].key, r->key, 32);
		n++;
	}
	if (sib)
		rly_server_set_siblings(a->srv, sib, n);
	free(sib);
	log_info("mesh-relay: %s (region %s): %zu admitted node keys, %zu sibling relays",
	         st->self.name, st->self.region, st->n_keys, n);
}

static json_t *stats_json(const struct rly_stats *s)
{
	json_t *o = json_object();
#define F(name) json_object_set_new(o, #name, json_integer((json_int_t)s->name))
	F(clients);
	F(clients_total);
	F(mesh_in);
	F(mesh_links_up);
	F(admitted_keys);
	F(mesh_routes);
	F(queued_bytes);
	F(mesh_resyncs);
	F(packets_relayed);
	F(bytes_relayed);
	F(packets_forwarded);
	F(bytes_forwarded);
	F(packets_from_mesh);
	F(bytes_from_mesh);
	F(pings);
	F(dup_clients);
	F(clients_dead);
	F(clients_stale);
	F(accept_errors);
	F(stun_requests);
	F(stun_responses);
	F(stun_bad);
	F(stun_limited);
#undef F
	json_t *d = json_object();
#define D(name, field) json_object_set_new(d, name, json_integer((json_int_t)s->field))
	D("unknown_dest", drop_unknown_dest);
	D("queue_full", drop_queue_full);
	D("write_timeout", drop_write_timeout);
	D("bad_frame", drop_bad_frame);
	D("oversize", drop_oversize);
	D("nomem", drop_nomem);
	D("bad_seal", drop_bad_seal);
	D("budget", drop_budget);
	json_object_set_new(o, "drops", d);
	json_t *r = json_object();
#undef D
#define R(name, field) json_object_set_new(r, name, json_integer((json_int_t)s->field))
	R("not_admitted", refused_not_admitted);
	R("bad_auth", refused_bad_auth);
	R("full", refused_full);
	R("version", refused_version);
	R("not_ready", refused_not_ready);
	R("http", refused_http);
	R("handshake_timeout", handshake_timeouts);
	R("removed", removed_cut);
	R("pending", refused_pending);
#undef R
	json_object_set_new(o, "refused", r);
	json_object_set_new(o, "ready", json_boolean(s->ready));
	return o;
}

static char *status_cb(void *ctx, bool json)
{
	struct relay_app *a = ctx;
	struct rly_stats s;
	struct ctl_client_status cs = {0}; /* the control address it is on */
	rly_server_get_stats(a->srv, &s);
	if (a->ctl)
		ctl_client_get_status(a->ctl, &cs);
	if (json) {
		json_t *o = stats_json(&s);
		json_object_set_new(o, "region", json_string(a->region));
		json_object_set_new(o, "control", json_string(a->ctl_state));
		json_object_set_new(o, "control_address",
		                    cs.addr[0] ? json_string(cs.addr) : json_null());
		char *t = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		json_decref(o);
		if (!t)
			return NULL;
		size_t n = strlen(t);
		char *r = realloc(t, n + 2);
		if (!r) {
			free(t);
			return NULL;
		}
		r[n] = '\n';
		r[n + 1] = 0;
		return r;
	}
	char *t = NULL;
	size_t tn = 0;
	FILE *f = open_memstream(&t, &tn);
	if (!f)
		return NULL;
	fprintf(f, "mesh-relay: region %s, control %s%s%s, %s\n", a->region, a->ctl_state,
	        cs.addr[0] ? " at " : "", cs.addr,
	        s.ready ? "admitting" : "waiting for the admission list");
	fprintf(f,
	        "clients      %llu now, %llu in all; %llu admitted keys; mesh: %llu in, "
	        "%llu links up\n",
	        (unsigned long long)s.clients, (unsigned long long)s.clients_total,
	        (unsigned long long)s.admitted_keys, (unsigned long long)s.mesh_in,
	        (unsigned long long)s.mesh_links_up);
	fprintf(f,
	        "closed       %llu dead (no frame for 2.5 keepalives), %llu stale "
	        "(the node is on a sibling relay and did not answer a PING)\n",
	        (unsigned long long)s.clients_dead, (unsigned long long)s.clients_stale);
	fprintf(f, "relayed      %llu packets, %llu bytes\n",
	        (unsigned long long)s.packets_relayed,
	        (unsigned long long)s.bytes_relayed);
	fprintf(
	    f, "mesh         %llu packets (%llu bytes) forwarded, %llu (%llu) received\n",
	    (unsigned long long)s.packets_forwarded,
	    (unsigned long long)s.bytes_forwarded,
	    (unsigned long long)s.packets_from_mesh,
	    (unsigned long long)s.bytes_from_mesh);
	fprintf(f,
	        "drops        unknown_dest %llu, queue_full %llu, write_timeout %llu, "
	        "bad_frame %llu, oversize %llu, nomem %llu, bad_seal %llu\n",
	        (unsigned long long)s.drop_unknown_dest,
	        (unsigned long long)s.drop_queue_full,
	        (unsigned long long)s.drop_write_timeout,
	        (unsigned long long)s.drop_bad_frame, (unsigned long long)s.drop_oversize,
	        (unsigned long long)s.drop_nomem, (unsigned long long)s.drop_bad_seal);
	fprintf(f,
	        "refused      not_admitted %llu, bad_auth %llu, full %llu, http %llu, "
	        "handshake_timeout %llu, removed %llu, pending %llu\n",
	        (unsigned long long)s.refused_not_admitted,
	        (unsigned long long)s.refused_bad_auth,
	        (unsigned long long)s.refused_full, (unsigned long long)s.refused_http,
	        (unsigned long long)s.handshake_timeouts,
	        (unsigned long long)s.removed_cut, (unsigned long long)s.refused_pending);
	fprintf(
	    f,
	    "stun         %llu requests, %llu responses, %llu bad, %llu rate-limited\n",
	    (unsigned long long)s.stun_requests, (unsigned long long)s.stun_responses,
	    (unsigned long long)s.stun_bad, (unsigned long long)s.stun_limited);
	fclose(f);
	return t;
}

/* Clients hear RESTARTING (come back in 1 s, keep trying for 30 s), then
 * the loop runs a moment more so it is written. */
static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct relay_app *a = arg;
	log_info("mesh-relay: %s; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	rly_server_announce_restart(a->srv, 1000, 30000);
	struct timeval flush = {0, 200000};
	event_base_loopexit(a->base, &flush);
}

static int parse_addr(const char *what, const char *s, struct sockaddr_storage *ss,
                      socklen_t *len)
{
	int l = (int)sizeof *ss;
	memset(ss, 0, sizeof *ss);
	if (evutil_parse_sockaddr_port(s, (struct sockaddr *)ss, &l) < 0 ||
	    ((struct sockaddr_in *)ss)->sin_port == 0) {
		fprintf(stderr,
		        "mesh-relay: %s %s: expected an IP address and a port such as "
		        "0.0.0.0:8443 or [::]:8443\n",
		        what, s);
		return -1;
	}
	*len = (socklen_t)l;
	return 0;
}

static SSL_CTX *tls_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fprintf(stderr,
		        "mesh-relay: --tls-cert %s: cannot load a PEM certificate "
		        "chain from it\n",
		        cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr,
		        "mesh-relay: --tls-key %s: cannot load a PEM private key "
		        "matching --tls-cert\n",
		        key);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Each client is a socket: raise the soft open-file limit to the hard one
 * (often 1024 -> 524288), and say so when --max-clients cannot fit. */
static void raise_nofile(unsigned max_clients)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	unsigned want = (max_clients ? max_clients : 10000) + 64;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		log_warn(
		    "mesh-relay: the open-file limit is %llu, fewer than --max-clients "
		    "needs (%u); raise it (ulimit -n, LimitNOFILE=) or lower "
		    "--max-clients",
		    (unsigned long long)rl.rlim_cur, want);
}

/* The join token from --join-file FILE (its first line) or MESH_RELAY_JOIN,
 * so it stays out of the process list. NULL when neither (or an error,
 * printed; *bad set). */
static const char *join_from_file_or_env(const struct opts *o, char *buf, size_t cap,
                                         bool *bad)
{
	*bad = false;
	if (o->join_file) {
		FILE *f = fopen(o->join_file, "r");
		if (!f || !fgets(buf, (int)cap, f)) {
			fprintf(stderr, "mesh-relay: --join-file %s: %s\n", o->join_file,
			        f ? "empty" : strerror(errno));
			if (f)
				fclose(f);
			*bad = true;
			return NULL;
		}
		fclose(f);
		buf[strcspn(buf, "\r\n")] = 0;
		return buf;
	}
	char *e = getenv("MESH_RELAY_JOIN");
	if (e && *e) {
		snprintf(buf, cap, "%s", e);
		/* the token leaves the environment: wiped where
		 * /proc/PID/environ reads it, then dropped */
		sodium_memzero(e, strlen(e));
		unsetenv("MESH_RELAY_JOIN");
		return buf;
	}
	return NULL;
}

/* The state directory, ours alone: one process per state directory (it
 * holds the key and the status socket another would unlink), and no one
 * else reads it. The lock is held until exit. 0, or the exit code (said). */
static int up_lock_state(const char *state)
{
	if (!state)
		return die_usage("%s", "up needs --state DIR");
	if (mkdir(state, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mesh-relay: --state %s: %s\n", state, strerror(errno));
		return 1;
	}
	int dfd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat dsb;
	if (dfd < 0 || fstat(dfd, &dsb) < 0) {
		fprintf(stderr, "mesh-relay: --state %s: %s\n", state, strerror(errno));
		return 1;
	}
	if (flock(dfd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr,
		        "mesh-relay: --state %s is in use by another mesh-relay; stop "
		        "it first, or give this one its own --state\n",
		        state);
		close(dfd);
		return 1;
	}
	if (dsb.st_uid != geteuid()) {
		fprintf(stderr,
		        "mesh-relay: --state %s belongs to another user (uid %u); run "
		        "as that user or use a directory of your own\n",
		        state, (unsigned)dsb.st_uid);
		return 1;
	}
	if (dsb.st_mode & 077) {
		log_warn("mesh-relay: --state %s was open to others (mode %04o); now "
		         "0700",
		         state, (unsigned)(dsb.st_mode & 07777));
		if (fchmod(dfd, 0700) < 0) {
			fprintf(stderr, "mesh-relay: --state %s: chmod 700: %s\n", state,
			        strerror(errno));
			return 1;
		}
	}
	return 0;
}

/* The control server from a relay join token (tok keeps its auth key for
 * the registration). 0, or the exit code (said). */
static int up_take_token(const char *join, struct ctl_token *tok, struct rly_state *st)
{
	int r = ctl_token_decode(join, strlen(join), tok);
	if (r < 0) {
		fprintf(stderr, "mesh-relay: --join: %s\n", ctl_token_strerror(r));
		return 2;
	}
	if (strncmp(tok->auth_key, "rkey-", 5) != 0) {
		ctl_token_wipe(tok);
		fprintf(stderr,
		        "mesh-relay: --join: this is a node's join token; a relay "
		        "needs one from `mesh-control token --relay`\n");
		return 2;
	}
	snprintf(st->control_host, sizeof st->control_host, "%s", tok->host);
	st->control_port = tok->port;
	st->n_control_more = tok->n_more;
	memcpy(st->control_more, tok->more, sizeof st->control_more);
	memcpy(st->control_key, tok->server_key, 32);
	return 0;
}

static int cmd_up(const struct opts *o_in)
{
	struct rly_state st = {0};
	struct ctl_token tok = {0};
	struct opts oo = *o_in;
	const struct opts *o = &oo;
	/* the token from --join-file or MESH_RELAY_JOIN: wiped on every path
	 * out of here (one label), once decoded or not */
	char join_buf[CTL_TOKEN_STR_MAX + 2] = "";
	int rc = 0;
	bool have = false;
	if (!oo.join) {
		bool bad;
		oo.join = join_from_file_or_env(o_in, join_buf, sizeof join_buf, &bad);
		if (bad) {
			rc = 2;
			goto wipe;
		}
	}
	rc = up_lock_state(o->state);
	if (rc != 0)
		goto wipe;
	have = load_state(o->state, &st) == 0;
	if (o->join) {
		rc = up_take_token(o->join, &tok, &st);
	} else if (!have) {
		fprintf(stderr,
		        "mesh-relay: no relay registered in %s; register one with "
		        "mesh-relay up --join TOKEN --state DIR --listen ADDR:PORT "
		        "(TOKEN from `mesh-control token --relay`)\n",
		        o->state);
		rc = 1;
	}
wipe:
	sodium_memzero(join_buf, sizeof join_buf);
	if (rc != 0)
		return rc;
	if (o->listen)
		snprintf(st.listen, sizeof st.listen, "%s", o->listen);
	if (o->advertise)
		snprintf(st.advertise, sizeof st.advertise, "%s", o->advertise);
	if (o->stun)
		snprintf(st.stun, sizeof st.stun, "%s", o->stun);
	if (o->region)
		snprintf(st.region, sizeof st.region, "%s", o->region);
	if (o->cert)
		snprintf(st.cert, sizeof st.cert, "%s", o->cert);
	if (o->key)
		snprintf(st.key, sizeof st.key, "%s", o->key);
	if (!st.region[0])
		snprintf(st.region, sizeof st.region, "default");
	if (!st.listen[0]) {
		ctl_token_wipe(&tok);
		return die_usage("%s", "up needs --listen ADDR:PORT");
	}
	if (!st.cert[0] != !st.key[0]) {
		ctl_token_wipe(&tok);
		return die_usage("%s", "--tls-cert and --tls-key go together");
	}
	struct sockaddr_storage lss, sss;
	socklen_t llen, slen = 0;
	if (parse_addr("--listen", st.listen, &lss, &llen) < 0 ||
	    (st.stun[0] && parse_addr("--stun", st.stun, &sss, &slen) < 0)) {
		ctl_token_wipe(&tok);
		return 2;
	}
	const char *adv = st.advertise[0] ? st.advertise : st.listen;
	char adv_host[CTL_DNSNAME_MAX];
	uint16_t adv_port;
	if (!split_hostport(adv, adv_host, sizeof adv_host, &adv_port) ||
	    !strcmp(adv_host, "0.0.0.0") || !strcmp(adv_host, "::") ||
	    strchr(adv_host, ':')) {
		ctl_token_wipe(&tok);
		fprintf(stderr,
		        "mesh-relay: nodes need an address to dial: pass --advertise "
		        "HOST:PORT (a name or IPv4 address; %s is not one)\n",
		        adv);
		return 2;
	}
	uint8_t priv[32], pub[32];
	if (load_key(o->state, priv, pub) < 0 || save_state(o->state, &st) < 0) {
		ctl_token_wipe(&tok);
		return 1;
	}
	SSL_CTX *tls = NULL;
	if (st.cert[0] && !(tls = tls_ctx(st.cert, st.key))) {
		ctl_token_wipe(&tok);
		return 1;
	}

	raise_nofile(o->max_clients);
	struct relay_app a = {.started = (uint64_t)time(NULL)};
	snprintf(a.region, sizeof a.region, "%s", st.region);
	snprintf(a.ctl_state, sizeof a.ctl_state, "connecting");
	memcpy(a.pub, pub, 32);
	a.base = event_base_new();
	char err[512];
	struct rly_config cfg = {
	    .base = a.base,
	    .listen = lss,
	    .listen_len = llen,
	    .tls = tls,
	    .max_clients = o->max_clients,
	    .queue_packets = o->queue,
	    .write_timeout_ms = o->write_timeout,
	    .region = st.region,
	};
	memcpy(cfg.priv, priv, 32);
	memcpy(cfg.pub, pub, 32);
	a.srv = a.base ? rly_server_new(&cfg, err, sizeof err) : NULL;
	sodium_memzero(cfg.priv, sizeof cfg.priv);
	if (!a.srv) {
		fprintf(stderr, "mesh-relay: %s\n", a.base ? err : "out of memory");
		ctl_token_wipe(&tok);
		return 1;
	}
	if (slen && rly_server_stun_listen(a.srv, (struct sockaddr *)&sss, slen, err,
	                                   sizeof err) < 0) {
		fprintf(stderr, "mesh-relay: %s %s\n", st.stun, err);
		ctl_token_wipe(&tok);
		return 1;
	}
	char apip[4200];
	path_in(apip, sizeof apip, o->state, "relay.sock");
	a.api = rly_api_new(a.base, apip, status_cb, &a, err, sizeof err);
	if (!a.api)
		fprintf(stderr, "mesh-relay: status socket %s (status will not work)\n",
		        err);

	struct ctl_relay self = {.port = adv_port, .tls = tls != NULL, .has_key = true};
	snprintf(self.host, sizeof self.host, "%s", adv_host);
	snprintf(self.region, sizeof self.region, "%s", st.region);
	if (slen)
		self.stun_port = ntohs(((struct sockaddr_in *)&sss)->sin_port);
	memcpy(self.key, pub, 32);
	static const struct ctl_client_callbacks cb = {.on_state = on_state,
	                                               .on_relay_state = on_relay_state};
	/* mesh-control may be a name (the join token's host): resolved by
	 * evdns at every connect, so a server moved behind its name is found
	 * at the next reconnect. */
	struct evdns_base *dns = evdns_base_new(
	    a.base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		dns = evdns_base_new(a.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	struct ctl_client_addr more[CTL_TOKEN_ADDRS_MAX - 1];
	for (size_t i = 0; i < st.n_control_more; i++)
		more[i] = (struct ctl_client_addr){st.control_more[i].host,
		                                   st.control_more[i].port};
	struct ctl_client_config cc = {
	    .base = a.base,
	    .dns = dns,
	    .host = st.control_host,
	    .port = st.control_port,
	    .more = more,
	    .n_more = st.n_control_more,
	    .hostname = "mesh-relay",
	    .auth_key = tok.auth_key,
	    .cb = &cb,
	    .ctx = &a,
	    .relay = &self,
	};
	memcpy(cc.server_key, st.control_key, 32);
	memcpy(cc.machine_priv, priv, 32);
	sodium_memzero(priv, sizeof priv);
	a.ctl = ctl_client_new(&cc, err, sizeof err);
	ctl_token_wipe(&tok);
	sodium_memzero(cc.machine_priv, sizeof cc.machine_priv);
	if (!a.ctl) {
		fprintf(stderr, "mesh-relay: %s\n", err);
		if (dns)
			evdns_base_free(dns, 0);
		return 1;
	}
	struct rly_health *health = NULL;
	if (o->health && !(health = rly_health_new(a.base, o->health, a.srv, a.ctl_state,
	                                           err, sizeof err))) {
		fprintf(stderr, "mesh-relay: %s\n", err);
		ctl_client_free(a.ctl);
		if (dns) /* after the client that resolves through it */
			evdns_base_free(dns, 0);
		rly_api_free(a.api);
		rly_server_free(a.srv);
		event_base_free(a.base);
		if (tls)
			SSL_CTX_free(tls);
		return 1;
	}
	struct event *sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
	struct event *sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
	evsignal_add(sigint, NULL);
	evsignal_add(sigterm, NULL);
	signal(SIGPIPE, SIG_IGN);
	char la[64];
	struct sockaddr_storage bound;
	socklen_t bl;
	rly_server_local(a.srv, &bound, &bl);
	sockaddr_format(&bound, la, sizeof la);
	log_info("mesh-relay: serving on %s%s (nodes dial %s:%u), region %s%s%s", la,
	         tls ? " with TLS" : "", adv_host, adv_port, st.region,
	         slen ? ", STUN on " : "", slen ? st.stun : "");
	event_base_dispatch(a.base);

	char *sum = status_cb(&a, false);
	if (sum) {
		fprintf(stderr, "%s", sum);
		free(sum);
	}
	event_free(sigint);
	event_free(sigterm);
	rly_health_free(health);
	ctl_client_free(a.ctl);
	if (dns)
		evdns_base_free(dns, 0);
	rly_api_free(a.api);
	rly_server_free(a.srv);
	event_base_free(a.base);
	if (tls)
		SSL_CTX_free(tls);
	return a.exit_code;
}

static int cmd_status(const struct opts *o)
{
	if (!o->state)
		return die_usage("%s", "status needs --state DIR");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(o->state) + 12 >= sizeof sun.sun_path)
		return die_usage("--state %s: path too long", o->state);
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/relay.sock", o->state);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		fprintf(
		    stderr,
		    "mesh-relay: %s: %s (is mesh-relay up running with --state %s?)\n",
		    sun.sun_path, strerror(errno), o->state);
		if (fd >= 0)
			close(fd);
		return 1;
	}
	const char *req = o->json ? "status json\n" : "status\n";
	if (write(fd, req, strlen(req)) < 0) {
		close(fd);
		return 1;
	}
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	harden_process(); /* before any secret is read */
	struct opts o = {0};
	const char *cmd = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **sv = NULL;
		unsigned *uv = NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("mesh-relay %s\n", MESH_VERSION);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "-v")) {
			o.verbose = true;
		} else if (!strcmp(a, "--join")) {
			sv = &o.join;
		} else if (!strcmp(a, "--join-file")) {
			sv = &o.join_file;
		} else if (!strcmp(a, "--state")) {
			sv = &o.state;
		} else if (!strcmp(a, "--listen")) {
			sv = &o.listen;
		} else if (!strcmp(a, "--advertise")) {
			sv = &o.advertise;
		} else if (!strcmp(a, "--stun")) {
			sv = &o.stun;
		} else if (!strcmp(a, "--region")) {
			sv = &o.region;
		} else if (!strcmp(a, "--health-listen")) {
			sv = &o.health;
		} else if (!strcmp(a, "--tls-cert")) {
			sv = &o.cert;
		} else if (!strcmp(a, "--tls-key")) {
			sv = &o.key;
		} else if (!strcmp(a, "--max-clients")) {
			uv = &o.max_clients;
		} else if (!strcmp(a, "--queue")) {
			uv = &o.queue;
		} else if (!strcmp(a, "--write-timeout")) {
			uv = &o.write_timeout;
		} else if (a[0] == '-') {
			return die_usage("unknown option %s", a);
		} else if (!cmd) {
			cmd = a;
		} else {
			return die_usage("unexpected argument %s", a);
		}
		if (sv || uv) {
			if (i + 1 >= argc)
				return die_usage("%s needs a value", a);
			if (sv) {
				*sv = argv[++i];
			} else {
				char *end;
				unsigned long v = strtoul(argv[++i], &end, 10);
				if (*end || v == 0 || v > 1000000)
					return die_usage("%s: expected a positive number",
					                 a);
				if (uv == &o.queue && v > RLY_QUEUE_PACKETS_MAX)
					return die_usage(
					    "%s",
					    "--queue: at most 4096 packets (each "
					    "client's queue is also capped at 512 KiB)");
				*uv = (unsigned)v;
			}
		}
	}
	if (!cmd)
		return die_usage("%s", "no command given (up or status)");
	if (sodium_init() < 0) {
		fprintf(stderr, "mesh-relay: libsodium failed to initialise\n");
		return 1;
	}
	log_set_level(o.verbose ? LOG_DEBUG : LOG_INFO);
	umask(077);
	if (!strcmp(cmd, "up"))
		return cmd_up(&o);
	if (!strcmp(cmd, "status"))
		return cmd_status(&o);
	return die_usage("unknown command %s (up or status)", cmd);
}
