/* mesh-proxy: the node and its command-line client. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/api_client.h"
#include "cli/nc_client.h"
#include "config/config.h"
#include "core/control/token.h"
#include "core/util/log.h"
#include "node/api_server.h"
#include "node/control.h"
#include "node/node.h"

#define MESH_VERSION "0.1.0"

static const char usage[] =
    "usage: mesh-proxy up --join TOKEN --state DIR [--hostname NAME] [--socks5 "
    "ADDR:PORT]\n"
    "                     [--http-proxy ADDR:PORT] [--direct public|all|no]\n"
    "                     [--expose SPEC] [--config FILE]\n"
    "                     [--api PATH] [--log-level LEVEL]\n"
    "       mesh-proxy up --state DIR [options as above]      (resume a joined node)\n"
    "       mesh-proxy [run] --config FILE [--api PATH] [--log-level LEVEL]\n"
    "       mesh-proxy status [--state DIR | --api PATH] [--json]\n"
    "       mesh-proxy ip [-4 | -6] [--state DIR | --api PATH]\n"
    "       mesh-proxy ping [--state DIR | --api PATH] [-c COUNT] [-i SECONDS]\n"
    "                       [-W SECONDS] ADDRESS\n"
    "       mesh-proxy nc [--state DIR | --api PATH] HOST PORT\n"
    "       mesh-proxy genkey | pubkey | genpsk\n"
    "       mesh-proxy --help | --version\n"
    "\n"
    "A WireGuard node in user space: no root, no TUN. Traffic from peers ends in\n"
    "an embedded TCP/IP stack and is bridged to local sockets (SOCKS5, HTTP\n"
    "CONNECT, TCP tunnels). Peers come from mesh-control (up --join) or from a\n"
    "wireproxy-style INI file (run --config), or both.\n"
    "\n"
    "up options (a node joined to mesh-control):\n"
    "  --join TOKEN          the join token from `mesh-control token` (first start;\n"
    "                        - reads it from stdin, out of sight of ps)\n"
    "  --state DIR           keys, registration and last network map (mode 0700);\n"
    "                        the local API is DIR/api.sock\n"
    "  --hostname NAME       the name to ask for (default: this host's name)\n"
    "  --socks5 ADDR:PORT    a SOCKS5 proxy into the mesh (e.g. 127.0.0.1:1080)\n"
    "  --http-proxy ADDR:PORT  an HTTP CONNECT proxy into the mesh\n"
    "  --direct MODE         where the proxies may connect from this host when no\n"
    "                        peer routes the destination: all (default: public\n"
    "                        and private ranges), public, or no. Never loopback,\n"
    "                        link-local, cloud metadata or the mesh itself\n"
    "  --expose SPEC         which local services mesh peers may reach: none\n"
    "                        (default), a list 22,8000-8100,80=8080 (a mesh port\n"
    "                        goes to that port on 127.0.0.1; :pp2 after an item\n"
    "                        sends a PROXY v2 header naming the peer), or all\n"
    "                        (warned). This node's own proxy ports never\n"
    "  --config FILE         extra [Peer]s and front-ends (no [Interface])\n"
    "  Settings stick: a later `up --state DIR` without them keeps them; a flag\n"
    "  changes one for good; --socks5 off, --http-proxy off, --config off remove one.\n"
    "\n"
    "run options:\n"
    "  -c, --config FILE     node configuration (see config/example.ini)\n"
    "  --api PATH            local API socket (default $XDG_RUNTIME_DIR/mesh-proxy.sock\n"
    "                        or /tmp/mesh-proxy-UID.sock)\n"
    "  --log-level LEVEL     error, warn, info (default) or debug\n"
    "\n"
    "commands:\n"
    "  status                self, peers (name, addresses, endpoint, last handshake,\n"
    "                        bytes), control connection; --json for scripts\n"
    "  ip                    our mesh addresses (-4 or -6: only one family)\n"
    "  ping ADDRESS          ICMP echo through the mesh from the node's own address\n"
    "                        (-c probes, up to 1000; -i seconds between them,\n"
    "                        0.001-60, default 1; time= is measured inside the\n"
    "                        node from send to reply)\n"
    "  nc HOST PORT          connect stdin/stdout to HOST:PORT through the node\n"
    "                        (mesh names work; e.g. ssh -o ProxyCommand=...)\n"
    "  genkey                print a new private key (base64, as `wg genkey`)\n"
    "  pubkey                read a private key on stdin, print its public key\n"
    "  genpsk                print a new preshared key\n"
    "\n"
    "examples:\n"
    "  T=$(mesh-control --data /var/lib/mesh token --reusable)\n"
    "  mesh-proxy up --join \"$T\" --state ~/.mesh --socks5 127.0.0.1:1080\n"
    "  mesh-proxy up --state ~/.mesh --expose 22,8080:pp2   (offer ssh and a web app)\n"
    "  mesh-proxy up --state ~/.mesh        (later runs: the same settings, kept in "
    "DIR)\n"
    "  mesh-proxy status --state ~/.mesh\n"
    "  mesh-proxy ip -4 --state ~/.mesh\n"
    "  curl --socks5-hostname 127.0.0.1:1080 http://web:8080/\n"
    "  mesh-proxy genkey > node.key && mesh-proxy pubkey < node.key\n"
    "  mesh-proxy --config node.ini --api /tmp/node.sock\n"
    "  mesh-proxy status --api /tmp/node.sock\n"
    "  ssh -o ProxyCommand='mesh-proxy nc --state ~/.mesh %h %p' user@web\n";

static int die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-proxy: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun `mesh-proxy --help` for usage\n");
	return 2;
}

static void print_key(const uint8_t key[32])
{
	char b[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b, sizeof(b), key, 32, sodium_base64_VARIANT_ORIGINAL);
	printf("%s\n", b);
	sodium_memzero(b, sizeof(b));
}

static int cmd_genkey(bool clamp)
{
	uint8_t k[32];
	randombytes_buf(k, sizeof(k));
	if (clamp) { /* as `wg genkey`: a clamped Curve25519 scalar */
		k[0] &= 248;
		k[31] = (k[31] & 127) | 64;
	}
	print_key(k);
	sodium_memzero(k, sizeof(k));
	return 0;
}

static int cmd_pubkey(void)
{
	char line[256];
	if (!fgets(line, sizeof(line), stdin)) {
		fprintf(stderr, "mesh-proxy pubkey: expected a private key on stdin "
		                "(e.g. mesh-proxy genkey | mesh-proxy pubkey)\n");
		return 1;
	}
	line[strcspn(line, "\r\n")] = 0;
	uint8_t k[32], pub[32];
	if (!config_parse_key(line, k)) {
		fprintf(stderr, "mesh-proxy pubkey: stdin is not a base64 WireGuard key "
		                "(44 characters)\n");
		sodium_memzero(line, sizeof(line));
		return 1;
	}
	sodium_memzero(line, sizeof(line));
	crypto_scalarmult_base(pub, k);
	sodium_memzero(k, sizeof(k));
	print_key(pub);
	return 0;
}

struct cli {
	const char *config;
	const char *api;
	const char *state, *join, *hostname, *socks5, *http_proxy, *expose, *direct;
	int family; /* ip -4 / -6 */
	const char *log_level;
	bool json;
	unsigned count;
	double wait_s, interval_s;
	const char *target;
};

/* Parses the options every subcommand shares; positional args go to target. */
static int parse_opts(int argc, char **argv, int i, struct cli *c)
{
	for (; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		bool takes = !strcmp(a, "-c") || !strcmp(a, "--config") ||
		             !strcmp(a, "--api") || !strcmp(a, "--log-level") ||
		             !strcmp(a, "--count") || !strcmp(a, "-W") ||
		             !strcmp(a, "--timeout") || !strcmp(a, "-i") ||
		             !strcmp(a, "--interval") || !strcmp(a, "--state") ||
		             !strcmp(a, "--join") || !strcmp(a, "--hostname") ||
		             !strcmp(a, "--socks5") || !strcmp(a, "--http-proxy") ||
		             !strcmp(a, "--expose") || !strcmp(a, "--direct");
		if (takes) {
			if (i + 1 >= argc)
				return die_usage("%s needs a value", a);
			val = argv[++i];
		} else if (!strncmp(a, "--config=", 9)) {
			a = "--config", val = argv[i] + 9;
		} else if (!strncmp(a, "--api=", 6)) {
			a = "--api", val = argv[i] + 6;
		} else if (!strncmp(a, "--state=", 8)) {
			a = "--state", val = argv[i] + 8;
		} else if (!strncmp(a, "--join=", 7)) {
			a = "--join", val = argv[i] + 7;
		}
		if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			c->config = val;
		} else if (!strcmp(a, "--api")) {
			c->api = val;
		} else if (!strcmp(a, "--log-level")) {
			c->log_level = val;
		} else if (!strcmp(a, "--count")) {
			c->count = (unsigned)strtoul(val, NULL, 10);
		} else if (!strcmp(a, "-W") || !strcmp(a, "--timeout")) {
			c->wait_s = strtod(val, NULL);
		} else if (!strcmp(a, "-i") || !strcmp(a, "--interval")) {
			char *end;
			c->interval_s = strtod(val, &end);
			if (*end || end == val || !(c->interval_s >= 0.001) ||
			    c->interval_s > 60)
				return die_usage("ping -i %s: not a number of seconds "
				                 "(0.001-60)",
				                 val);
		} else if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "--state")) {
			c->state = val;
		} else if (!strcmp(a, "--join")) {
			c->join = val;
		} else if (!strcmp(a, "--hostname")) {
			c->hostname = val;
		} else if (!strcmp(a, "--socks5")) {
			c->socks5 = val;
		} else if (!strcmp(a, "--http-proxy")) {
			c->http_proxy = val;
		} else if (!strcmp(a, "--expose")) {
			c->expose = val;
		} else if (!strcmp(a, "--direct")) {
			enum cfg_direct d;
			if (!cfg_direct_parse(val, &d))
				return die_usage("--direct %s: want public, all or no",
				                 val);
			c->direct = val;
		} else if (!strcmp(a, "-4") || !strcmp(a, "-6")) {
			c->family = a[1] - '0';
		} else if (a[0] == '-' && a[1]) {
			return die_usage("unknown option %s", a);
		} else if (!c->target) {
			c->target = a;
		} else {
			return die_usage("unexpected argument %s", a);
		}
	}
	return 0;
}

/* The API socket: --api, else DIR/api.sock for --state, else the default. */
static void api_path(const char *api, const char *state, char *path, size_t len)
{
	if (api)
		snprintf(path, len, "%s", api);
	else if (state)
		snprintf(path, len, "%s/api.sock", state);
	else
		api_default_path(path, len);
}

static int cmd_client(const struct cli *c, const char *req)
{
	char path[256], err[512], last[256] = "";
	api_path(c->api, c->state, path, sizeof(path));
	if (api_client_request(path, req, STDOUT_FILENO, last, sizeof(last), err,
	                       sizeof(err)) != 0) {
		fprintf(stderr, "mesh-proxy: %s\n", err);
		return 1;
	}
	if (!strncmp(last, "error", 5) || !strcmp(last, "fail"))
		return 1;
	return 0;
}

/* mesh-proxy nc [--api PATH] HOST PORT */
static int cmd_nc(int argc, char **argv)
{
	const char *api = NULL, *state = NULL, *pos[2];
	int npos = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--api")) {
			if (i + 1 >= argc)
				return die_usage("%s needs a value", a);
			api = argv[++i];
		} else if (!strncmp(a, "--api=", 6)) {
			api = a + 6;
		} else if (!strcmp(a, "--state")) {
			if (i + 1 >= argc)
				return die_usage("%s needs a value", a);
			state = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			return die_usage("nc: unknown option %s", a);
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			return die_usage("nc: unexpected argument %s", a);
		}
	}
	if (npos != 2)
		return die_usage("%s", "nc needs HOST and PORT");
	char *end;
	unsigned long port = strtoul(pos[1], &end, 10);
	if (*end || end == pos[1] || port == 0 || port > 65535)
		return die_usage("nc: %s is not a port (1-65535)", pos[1]);
	if (strlen(pos[0]) > 255 || strpbrk(pos[0], " \t\r\n"))
		return die_usage("nc: %s is not a host", pos[0]);
	char path[256];
	api_path(api, state, path, sizeof(path));
	return nc_client_run(path, pos[0], pos[1]);
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "mesh-proxy: libsodium failed to initialise\n");
		return 1;
	}
	const char *cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("mesh-proxy %s\n", MESH_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "genkey"))
		return cmd_genkey(true);
	if (!strcmp(cmd, "genpsk"))
		return cmd_genkey(false);
	if (!strcmp(cmd, "pubkey"))
		return cmd_pubkey();

	struct cli c = {.count = 3, .wait_s = 2, .interval_s = 1};
	if (!strcmp(cmd, "status")) {
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		return cmd_client(&c, c.json ? "status json" : "status");
	}
	if (!strcmp(cmd, "ping")) {
		/* -c means count for ping, as ping(8) */
		for (int i = 2; i < argc; i++)
			if (!strcmp(argv[i], "-c"))
				argv[i] = "--count";
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		if (!c.target)
			return die_usage("%s", "ping needs an ADDRESS");
		char req[300];
		snprintf(req, sizeof(req), "ping %s %u %u %u", c.target, c.count,
		         (unsigned)(c.wait_s * 1000),
		         (unsigned)(c.interval_s * 1000 + 0.5));
		return cmd_client(&c, req);
	}
	if (!strcmp(cmd, "ip")) {
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		if (c.target)
			return die_usage("ip: unexpected argument %s", c.target);
		return cmd_client(&c, c.family == 4   ? "ip 4"
		                      : c.family == 6 ? "ip 6"
		                                      : "ip");
	}
	if (!strcmp(cmd, "nc"))
		return cmd_nc(argc, argv);
	int first = 1;
	if (!strcmp(cmd, "run") || !strcmp(cmd, "up"))
		first = 2;
	int r = parse_opts(argc, argv, first, &c);
	if (r)
		return r;
	if (c.target)
		return die_usage("unknown command %s", c.target);
	if ((c.join || c.hostname || c.socks5 || c.http_proxy || c.expose || c.direct) &&
	    !c.state)
		return die_usage("%s",
		                 "--join, --hostname, --socks5, --http-proxy, --direct "
		                 "and --expose need --state DIR (where the node keeps "
		                 "its keys)");
	if (!c.config && !c.state)
		return die_usage("%s", "nothing to run: pass --join TOKEN --state DIR "
		                       "(mesh-control) or --config FILE");
	if (c.log_level) {
		int lvl = log_level_parse(c.log_level);
		if (lvl < 0)
			return die_usage("--log-level %s: use error, warn, info or debug",
			                 c.log_level);
		log_set_level((enum log_level)lvl);
	}
	static char tok[CTL_TOKEN_STR_MAX + 2];
	if (c.join && !strcmp(c.join, "-")) { /* keep the token out of ps(1) */
		if (!fgets(tok, sizeof(tok), stdin))
			return die_usage("%s", "--join -: expected a token on stdin");
		tok[strcspn(tok, "\r\n")] = 0;
		c.join = tok;
	}
	struct node_ctl_args ma = {.state_dir = c.state,
	                           .join_token = c.join,
	                           .hostname = c.hostname,
	                           .socks5 = c.socks5,
	                           .http_proxy = c.http_proxy,
	                           .expose = c.expose,
	                           .direct = c.direct,
	                           .config_path = c.config};
	struct node_opts o = {
	    .config_path = c.config, .api_path = c.api, .ctl = c.state ? &ma : NULL};
	int rc;
	while ((rc = node_run(&o)) == NODE_RC_RESTART)
		log_info("starting again");
	return rc;
}
