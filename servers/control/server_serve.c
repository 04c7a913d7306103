/* `mesh-control [--data DIR] serve ...`: runs the node protocol server
 * (server.h) and, with --admin-listen, the HTTP admin API (admin.h) on one
 * event loop until SIGINT / SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ini.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/control/noise_ik.h"
#include "core/util/healthd.h"
#include "core/util/log.h"
#include "servers/control/admin.h"
#include "servers/control/cli_store.h"
#include "servers/control/cli_util.h"
#include "servers/control/health.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

static const char serve_usage[] =
    "usage: mesh-control [--data DIR] serve [--listen HOST:PORT]\n"
    "                    [--admin-listen HOST:PORT [--admin-insecure]]\n"
    "                    [--ephemeral-timeout DUR] [--dead-after DUR]\n"
    "                    [--allow-pending [--max-pending N]\n"
    "                    [--max-pending-per-source N]]\n"
    "                    [--max-unregistered-per-source N] [--max-conns N]\n"
    "                    [--handshakes-per-source N] [--handshakes-total N]\n"
    "                    [--no-seen-ip] [--health-listen ADDR:PORT]\n"
    "                    [--log-level LEVEL]\n"
    "\n"
    "Runs the node protocol: nodes connect (Noise IK, the server key in their\n"
    "join token), register with an auth key or wait for approval, and receive\n"
    "the network map and its changes. Runs as any user; stop with Ctrl-C or\n"
    "SIGTERM. Admin commands (keys, nodes) work while it runs.\n"
    "\n"
    "options:\n"
    "  --data DIR               data directory made by `mesh-control init`\n"
    "                           (default $MESH_CONTROL_DATA); its store is\n"
    "                           control.db (SQLite) or the PostgreSQL database\n"
    "                           that its store.url names (init --store): several\n"
    "                           serve processes may share one of those\n"
    "  --listen HOST:PORT       where to accept nodes (default: the first of\n"
    "                           control.conf's listen addresses, those in join\n"
    "                           tokens; give each further server on the same\n"
    "                           store its own address from that list)\n"
    "  --admin-listen HOST:PORT also serve the HTTP admin API there (API keys:\n"
    "                           `mesh-control apikeys create`); a loopback\n"
    "                           address unless --admin-insecure\n"
    "  --admin-insecure         allow --admin-listen on a non-loopback address\n"
    "                           (the API is plain HTTP: its bearer keys cross\n"
    "                           the network in clear; prefer SSH or a TLS proxy)\n"
    "  --ephemeral-timeout DUR  remove ephemeral nodes DUR after they go offline\n"
    "                           (default 5m)\n"
    "  --dead-after DUR         with several servers on one store: take a\n"
    "                           server silent for DUR for stopped and mark its\n"
    "                           nodes offline (default 10s; at least 9s, more\n"
    "                           than a 2s lock wait, a 4s statement and a 2s\n"
    "                           beat); give every server of a store the same\n"
    "                           value\n"
    "  --allow-pending          hold nodes that join without an auth key (tokens\n"
    "                           made with --no-key) for `mesh-control nodes\n"
    "                           approve`; without it (the default, also\n"
    "                           --no-pending) they are refused\n"
    "  --max-pending N          with --allow-pending: at most N nodes wait for\n"
    "                           approval (default 100); more are told to retry\n"
    "                           later, nobody waiting is dropped\n"
    "  --max-pending-per-source N  with --allow-pending: at most N of them from\n"
    "                           one IPv4 address or IPv6 /64 (default 8)\n"
    "  --max-unregistered-per-source N  connections from one IPv4 address or\n"
    "                           IPv6 /64 that have not registered yet (default\n"
    "                           256; more are closed and retry): raise it for\n"
    "                           many nodes behind one NAT\n"
    "  --handshakes-per-source N  Noise handshakes answered per second from one\n"
    "                           IPv4 address or IPv6 /64, after a burst of\n"
    "                           2N (default 32; more are closed unanswered and\n"
    "                           retry): raise it for many nodes behind one NAT\n"
    "                           (they share it with anyone else there)\n"
    "  --handshakes-total N     the same from all sources together, after a\n"
    "                           burst of 2N (default 2000): a ceiling on what\n"
    "                           handshakes cost the server; raise it with\n"
    "                           --handshakes-per-source above it\n"
    "  --no-seen-ip             publish no node's address as its seen_ip (so no\n"
    "                           birthday probing in this mesh): for a server\n"
    "                           behind a TCP proxy that hides the nodes'\n"
    "                           addresses (an address more than 32 online\n"
    "                           nodes share is never published anyway)\n"
    "  --max-conns N            at most N connections at once (default 10000;\n"
    "                           each takes a file descriptor: raise `ulimit -n`\n"
    "                           to match)\n"
    "  --health-listen ADDR:PORT  HTTP for probes and Prometheus: /livez,\n"
    "                           /readyz (200 while the store answers) and\n"
    "                           /metrics; any address (it serves no secrets)\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n";

/* The beat interval serve runs with (ctl_server_config.beat_ms's default). */
#define SERVE_BEAT_S 2
/* The PostgreSQL store's lock_timeout and statement_timeout (store_pg.c):
 * how late a beat may be on top of its period. */
#define SERVE_LOCK_S 2
#define SERVE_STMT_S 4

static int serve_die(const char *msg, const char *arg)
{
	fprintf(stderr, "mesh-control: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\nrun `mesh-control serve --help` for usage\n");
	return 2;
}

/* The admin API's token addresses: control.conf's list, else (none, or
 * not valid) the address this server listens on. */
static void admin_control_addrs(struct ctl_admin_config *ac, const char *conf_listen,
                                const char *host, uint16_t port)
{
	struct ctl_token t = {0};
	char err[600];

	if (!*conf_listen ||
	    !ctl_cli_parse_addrs(conf_listen, "listen", &t, err, sizeof err)) {
		memset(&t, 0, sizeof t);
		snprintf(t.host, sizeof t.host, "%.253s", host);
		t.port = port;
	}
	snprintf(ac->control_host, sizeof ac->control_host, "%s", t.host);
	ac->control_port = t.port;
	memcpy(ac->control_more, t.more, sizeof ac->control_more);
	ac->n_control_more = t.n_more;
}

static int conf_cb(void *u, const char *section, const char *name, const char *value)
{
	(void)section;
	if (!strcmp(name, "listen")) /* several lines append */
		return ctl_cli_conf_listen_add(u, CTL_CLI_ADDRS_TEXT_MAX, value);
	return 1;
}

/* HOST:PORT -> socket address (an IP literal, or a name resolved once at
 * startup). */
static int resolve(const char *hp, struct sockaddr_storage *ss, socklen_t *len,
                   char *host, size_t hostcap, uint16_t *port)
{
	if (!ctl_cli_split_hostport(hp, host, hostcap, port))
		return -EINVAL;
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", *port);
	if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
		return -ENOENT;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int read_key(const char *path, uint8_t priv[32])
{
	char buf[128];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -EINVAL;
	buf[n] = 0;
	size_t bl = 0;
	const char *end = NULL;
	int r = sodium_base642bin(priv, 32, buf, (size_t)n, " \t\r\n", &bl, &end,
	                          sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(buf, sizeof buf);
	return (r == 0 && bl == 32) ? 0 : -EINVAL;
}

/* Descriptors the process needs besides node connections: stdio, the
 * store (database, WAL, shared memory, temporary files), the event loop,
 * the listeners, and slack. */
#define SERVE_FD_RESERVE 64

/* Raises the soft open-file limit to the hard one (each node holds one
 * descriptor; the usual soft limit of 1024 would stop the server near
 * 1,000 nodes) and returns how many node connections fit in it, at most
 * want (--max-conns, default 10,000), saying so when that is fewer. 0: none fit. */
static uint32_t fd_budget(unsigned reserve, uint32_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return want;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			rl.rlim_cur = was;
			log_warn("mesh-control: cannot raise the open-file limit from "
			         "%llu to %llu: %s",
			         (unsigned long long)was, (unsigned long long)rl.rlim_max,
			         strerror(errno));
		} else {
			log_debug("mesh-control: open-file limit raised from %llu to "
			          "%llu",
			          (unsigned long long)was,
			          (unsigned long long)rl.rlim_cur);
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= (rlim_t)want + reserve)
		return want;
	uint32_t fit = rl.rlim_cur > reserve ? (uint32_t)(rl.rlim_cur - reserve) : 0;
	log_warn("mesh-control: the open-file limit is %llu: at most %u node "
	         "connections (%u are kept for the store and the admin API); raise "
	         "it for more (`ulimit -n` before starting, or LimitNOFILE= in the "
	         "systemd unit)",
	         (unsigned long long)rl.rlim_cur, fit, reserve);
	return fit;
}

/* 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) ==
		       127;
	if (ss->ss_family != AF_INET6)
		return false;
	const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a) ||
	       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
	log_info("mesh-control: %s; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	event_base_loopbreak(arg);
}

struct serve_opts {
	const char *data, *listen, *admin, *eph, *dead, *level, *max_pending, *max_src,
	    *max_unreg_src, *max_conns, *hs_src, *hs_total, *health;
	bool no_pending, allow_pending, admin_insecure, no_seen_ip;
};

static int parse(int argc, char **argv, struct serve_opts *o, bool *help)
{
	static const char *const names[] = {"--data",
	                                    "--listen",
	                                    "--admin-listen",
	                                    "--ephemeral-timeout",
	                                    "--log-level",
	                                    "--max-pending",
	                                    "--max-pending-per-source",
	                                    "--max-unregistered-per-source",
	                                    "--max-conns",
	                                    "--handshakes-per-source",
	                                    "--handshakes-total",
	                                    "--health-listen",
	                                    "--dead-after"};
	const char **vals[] = {
	    &o->data,        &o->listen,  &o->admin,         &o->eph,       &o->level,
	    &o->max_pending, &o->max_src, &o->max_unreg_src, &o->max_conns, &o->hs_src,
	    &o->hs_total,    &o->health,  &o->dead};
	bool seen_serve = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			*help = true;
			continue;
		}
		if (!strcmp(a, "--no-pending")) {
			o->no_pending = true;
			continue;
		}
		if (!strcmp(a, "--allow-pending")) {
			o->allow_pending = true;
			continue;
		}
		if (!strcmp(a, "--no-seen-ip")) {
			o->no_seen_ip = true;
			continue;
		}
		if (!strcmp(a, "--admin-insecure")) {
			o->admin_insecure = true;
			continue;
		}
		if (a[0] != '-') {
			if (seen_serve || strcmp(a, "serve"))
				return serve_die("serve: unexpected argument %s", a);
			seen_serve = true;
			continue;
		}
		size_t nl = strcspn(a, "=");
		size_t k;
		for (k = 0; k < sizeof names / sizeof *names; k++)
			if (strlen(names[k]) == nl && !strncmp(a, names[k], nl))
				break;
		if (k == sizeof names / sizeof *names)
			return serve_die("serve does not take %s", a);
		if (a[nl] == '=')
			*vals[k] = a + nl + 1;
		else if (i + 1 < argc)
			*vals[k] = argv[++i];
		else
			return serve_die("%s needs a value", a);
	}
	return 0;
}

int ctl_serve_main(int argc, char **argv)
{
	struct serve_opts o = {0};
	bool help = false;
	int r = parse(argc, argv, &o, &help);
	if (r)
		return r;
	if (help) {
		fputs(serve_usage, stdout);
		return 0;
	}
	if (!o.data || !*o.data)
		o.data = getenv("MESH_CONTROL_DATA");
	if (!o.data || !*o.data)
		return serve_die("%s", "no data directory: pass --data DIR or set "
		                       "MESH_CONTROL_DATA");
	if (strlen(o.data) > 3000)
		return serve_die("--data %s: path too long", o.data);
	if (o.level) {
		int lv = log_level_parse(o.level);
		if (lv < 0)
			return serve_die("--log-level %s: expected error, warn, info or "
			                 "debug",
			                 o.level);
		log_set_level((enum log_level)lv);
	}
	int64_t eph = 300;
	if (o.eph && (eph = ctl_cli_parse_dur(o.eph)) < 0)
		return serve_die("--ephemeral-timeout %s: expected a duration such as "
		                 "30s, 10m, 2h",
		                 o.eph);
	if (eph > UINT32_MAX)
		eph = UINT32_MAX;
	/* A beat may be late by a wait for the write lock (2 s), a slow
	 * statement (cut at 4 s) and one beat period (SERVE_BEAT_S): a
	 * server only that late must not be taken for stopped. */
	int64_t dead = 10;
	if (o.dead && ((dead = ctl_cli_parse_dur(o.dead)) < 0 ||
	               dead <= SERVE_LOCK_S + SERVE_STMT_S + SERVE_BEAT_S || dead > 86400))
		return serve_die("--dead-after %s: expected a duration from 9s (more "
		                 "than a 2s lock wait, a 4s statement and a 2s beat) "
		                 "to 24h, such as 10s",
		                 o.dead);
	long long maxp = 100;
	char *end = NULL;
	if (o.max_pending)
		maxp = strtoll(o.max_pending, &end, 10);
	if (o.max_pending && (!*o.max_pending || *end || maxp < 1 || maxp > 100000))
		return serve_die("--max-pending %s: expected a number from 1 to 100000 "
		                 "(without --allow-pending none wait)",
		                 o.max_pending);
	long long maxs = 8;
	if (o.max_src)
		maxs = strtoll(o.max_src, &end, 10);
	if (o.max_src && (!*o.max_src || *end || maxs < 1 || maxs > 100000))
		return serve_die("--max-pending-per-source %s: expected a number from "
		                 "1 to 100000",
		                 o.max_src);
	if (o.admin_insecure && !o.admin)
		return serve_die("%s", "--admin-insecure only goes with --admin-listen");
	long long maxc = 10000; /* each a file descriptor (fd_budget) */
	if (o.max_conns)
		maxc = strtoll(o.max_conns, &end, 10);
	if (o.max_conns && (!*o.max_conns || *end || maxc < 1 || maxc > 1000000))
		return serve_die("--max-conns %s: expected a number from 1 to 1000000",
		                 o.max_conns);
	if (o.no_pending && o.allow_pending)
		return serve_die("%s",
		                 "--no-pending and --allow-pending exclude each other");
	long long maxu = 256;
	if (o.max_unreg_src)
		maxu = strtoll(o.max_unreg_src, &end, 10);
	if (o.max_unreg_src && (!*o.max_unreg_src || *end || maxu < 1 || maxu > 100000))
		return serve_die("--max-unregistered-per-source %s: expected a number "
		                 "from 1 to 100000",
		                 o.max_unreg_src);
	long long hs_src = 0; /* the server's default (32) */
	if (o.hs_src)
		hs_src = strtoll(o.hs_src, &end, 10);
	if (o.hs_src && (!*o.hs_src || *end || hs_src < 1 || hs_src > 100000))
		return serve_die("--handshakes-per-source %s: expected a number "
		                 "from 1 to 100000",
		                 o.hs_src);
	long long hs_total = 0; /* the server's default (2000) */
	if (o.hs_total)
		hs_total = strtoll(o.hs_total, &end, 10);
	if (o.hs_total && (!*o.hs_total || *end || hs_total < 1 || hs_total > 1000000))
		return serve_die("--handshakes-total %s: expected a number from 1 to "
		                 "1000000",
		                 o.hs_total);
	if ((o.max_pending || o.max_src) && !o.allow_pending)
		return serve_die("%s", "--max-pending and --max-pending-per-source "
		                       "need --allow-pending (without it nodes that "
		                       "join without an auth key are refused)");
	o.no_pending = !o.allow_pending;
	if (sodium_init() < 0)
		return 1;

	char path[3100], err[512], conf_listen[CTL_CLI_ADDRS_TEXT_MAX] = "",
	                           conf_first[CTL_TOKEN_HOST_MAX + 16],
	                           where[CTL_CLI_WHERE_MAX];
	struct ctl_meta meta;
	struct ctl_store *st = ctl_cli_store_open(o.data, &meta, where, sizeof where);
	if (!st)
		return 1;
	struct ctl_server_config cfg = {.ephemeral_timeout_s = (uint32_t)eph,
	                                .dead_after_s = (uint32_t)dead,
	                                .no_pending = o.no_pending,
	                                .max_pending = (uint32_t)maxp,
	                                .max_pending_per_source = (uint32_t)maxs,
	                                .max_unreg_per_source = (uint32_t)maxu,
	                                .hs_per_source = (uint32_t)hs_src,
	                                .hs_total = (uint32_t)hs_total,
	                                .no_seen_ip = o.no_seen_ip,
	                                .max_conns = (uint32_t)maxc};
	struct event_base *base = NULL;
	struct ctl_server *srv = NULL;
	struct ctl_admin *adm = NULL;
	struct ctl_health *health = NULL;
	struct event *sigs[2] = {NULL, NULL};
	int rc = 1;
	snprintf(path, sizeof path, "%s/server.key", o.data);
	uint8_t pub[32];
	if ((r = read_key(path, cfg.server_priv)) < 0) {
		fprintf(stderr, "mesh-control: cannot read the server key %s: %s\n", path,
		        r == -EINVAL ? "not a base64 32-byte key" : strerror(-r));
		goto out;
	}
	ctl_noise_public_key(pub, cfg.server_priv);
	if (sodium_memcmp(pub, meta.server_public, 32)) {
		fprintf(stderr,
		        "mesh-control: %s does not belong to the store in %s (its public "
		        "key differs from the one join tokens carry); refusing to "
		        "start\n",
		        path, o.data);
		goto out;
	}
	snprintf(path, sizeof path, "%s/control.conf", o.data);
	ini_parse(path, conf_cb, conf_listen);
	/* Without --listen: the first of control.conf's addresses (the
	 * others are other servers on the same store). */
	ctl_cli_first_addr(conf_listen, conf_first, sizeof conf_first);
	const char *lis = o.listen ? o.listen : conf_first;
	if (!*lis) {
		fprintf(stderr,
		        "mesh-control: no listen address: pass --listen HOST:PORT "
		        "or set `listen` in control.conf\n");
		goto out;
	}
	char host[256];
	uint16_t port;
	if (resolve(lis, &cfg.listen, &cfg.listen_len, host, sizeof host, &port) < 0) {
		fprintf(stderr,
		        "mesh-control: listen %s: expected HOST:PORT with a local "
		        "address, e.g. 0.0.0.0:7443\n",
		        lis);
		goto out;
	}
	unsigned reserve = SERVE_FD_RESERVE + (o.admin ? CTL_ADMIN_MAX_CONNS : 0) +
	                   (o.health ? HEALTHD_MAX_CONNS : 0);
	cfg.max_conns = fd_budget(reserve, cfg.max_conns);
	if (cfg.max_conns < 16) {
		fprintf(stderr,
		        "mesh-control: the open-file limit leaves room for %u node "
		        "connections; raise it (`ulimit -n 4096` or more) and start "
		        "again\n",
		        cfg.max_conns);
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	if (!base)
		goto out;
	cfg.base = base;
	cfg.store = st;
	srv = ctl_server_new(&cfg, err, sizeof err);
	if (!srv) {
		fprintf(stderr, "mesh-control: %s\n", err);
		goto out;
	}
	log_info("mesh-control: serving mesh %s on %s (at most %u node connections) "
	         "from the %s",
	         meta.domain, lis, cfg.max_conns, where);
	if (o.no_pending)
		log_info("mesh-control: nodes without an auth key are refused "
		         "(--allow-pending holds them for approval)");
	else
		log_info("mesh-control: nodes without an auth key wait for approval "
		         "(at most %lld pending, %lld per source)",
		         maxp, maxs);
	if (o.admin) {
		struct ctl_admin_config ac = {.base = base, .store = st, .server = srv};
		char ahost[256];
		uint16_t aport;
		if (resolve(o.admin, &ac.listen, &ac.listen_len, ahost, sizeof ahost,
		            &aport) < 0) {
			fprintf(stderr,
			        "mesh-control: --admin-listen %s: expected "
			        "HOST:PORT with a local address\n",
			        o.admin);
			goto out;
		}
		if (!is_loopback(&ac.listen) && !o.admin_insecure) {
			fprintf(stderr,
			        "mesh-control: --admin-listen %s is not a loopback "
			        "address: the admin API is plain HTTP, so API keys "
			        "would cross the network in clear. Listen on "
			        "127.0.0.1 (reach it over SSH, or put a TLS proxy in "
			        "front), or pass --admin-insecure to accept that\n",
			        o.admin);
			goto out;
		}
		if (!is_loopback(&ac.listen))
			log_warn("mesh-control: admin API on %s without TLS "
			         "(--admin-insecure): API keys cross the network in "
			         "clear",
			         o.admin);
		/* Tokens name what control.conf says nodes connect to: every
		 * address, in its order. */
		admin_control_addrs(&ac, conf_listen, host, port);
		memcpy(ac.server_public, meta.server_public, 32);
		adm = ctl_admin_new(&ac, err, sizeof err);
		if (!adm) {
			fprintf(stderr, "mesh-control: admin API: %s\n", err);
			goto out;
		}
		log_info("mesh-control: admin API on %s", o.admin);
	}
	if (o.health) {
		health = ctl_health_new(base, o.health, srv, st, err, sizeof err);
		if (!health) {
			fprintf(stderr, "mesh-control: %s\n", err);
			goto out;
		}
	}
	sigs[0] = evsignal_new(base, SIGINT, on_signal, base);
	sigs[1] = evsignal_new(base, SIGTERM, on_signal, base);
	if (!sigs[0] || !sigs[1] || event_add(sigs[0], NULL) || event_add(sigs[1], NULL))
		goto out;
	event_base_dispatch(base);
	struct ctl_server_stats s;
	ctl_server_get_stats(srv, &s);
	log_info(
	    "mesh-control: stopped: %llu connections, %llu registrations, %llu "
	    "online at exit, %llu full maps, %llu deltas, %llu bad frames, "
	    "%llu bad messages, %llu handshake failures",
	    (unsigned long long)s.conns_total, (unsigned long long)s.registrations_ok,
	    (unsigned long long)s.nodes_online, (unsigned long long)s.maps_full,
	    (unsigned long long)s.maps_delta, (unsigned long long)s.bad_frames,
	    (unsigned long long)s.bad_messages, (unsigned long long)s.handshakes_failed);
	/* key=value words for bench/control_scale.sh */
	log_info(
	    "mesh-control: timings last_full_ms=%.2f last_full_bytes=%zu "
	    "last_broadcast_ms=%.2f slow_closed=%llu idle_closed=%llu "
	    "conns_evicted=%llu conns_refused_busy=%llu conns_refused_source=%llu "
	    "conns_refused_limit=%llu accept_paused=%llu "
	    "handshakes_limited=%llu registrations_throttled=%llu "
	    "delta_nodes_visited=%llu conns_walked=%llu zmaps_sent=%llu "
	    "zbytes_raw=%llu zbytes_sent=%llu zchunks_built=%llu "
	    "zchunks_reused=%llu deltas_reused=%llu",
	    s.last_full_ms, s.last_full_bytes, s.last_broadcast_ms,
	    (unsigned long long)s.slow_closed, (unsigned long long)s.idle_closed,
	    (unsigned long long)s.conns_evicted, (unsigned long long)s.conns_refused_busy,
	    (unsigned long long)s.conns_refused_source,
	    (unsigned long long)s.conns_refused_limit,
	    (unsigned long long)s.accept_paused,
	    (unsigned long long)s.handshakes_limited,
	    (unsigned long long)s.registrations_throttled,
	    (unsigned long long)s.delta_nodes_visited, (unsigned long long)s.conns_walked,
	    (unsigned long long)s.zmaps_sent, (unsigned long long)s.zbytes_raw,
	    (unsigned long long)s.zbytes_sent, (unsigned long long)s.zchunks_built,
	    (unsigned long long)s.zchunks_reused, (unsigned long long)s.deltas_reused);
	rc = 0;
out:
	for (int i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	ctl_health_free(health);
	ctl_admin_free(adm);
	ctl_server_free(srv);
	if (base)
		event_base_free(base);
	sodium_memzero(cfg.server_priv, sizeof cfg.server_priv);
	ctl_store_close(st);
	return rc;
}
