/* mesh-proxy: the node and its command-line client. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/api_client.h"
#include "cli/env.h"
#include "cli/nc_client.h"
#include "cli/netcheck.h"
#include "cli/opts.h"
#include "cli/paths.h"
#include "config/config.h"
#include "core/control/token.h"
#include "core/util/harden.h"
#include "core/util/log.h"
#include "core/util/version.h"
#include "node/api_server.h"
#include "node/control.h"
#include "node/forward.h"
#include "node/node.h"

#define CLI_HEALTH_TIMEOUT_S 5 /* mesh-proxy health: the node's answer */

static const char usage[] =
    "usage: mesh-proxy up --join TOKEN [--state DIR] [--hostname NAME] [--socks5 "
    "ADDR:PORT]\n"
    "                     [--http-proxy ADDR:PORT] [--direct public|all|no]\n"
    "                     [--expose SPEC] [--config FILE] [--no-portmap]\n"
    "                     [--no-birthday] [--forward SPEC] [--proxy-user NAME\n"
    "                     --proxy-password-file FILE] [--proxy-open]\n"
    "                     [--ephemeral] [--health-listen ADDR:PORT] [--metrics-peers]\n"
    "                     [--api PATH] [--log-level LEVEL]\n"
    "       mesh-proxy up [--state DIR] [options as above]    (resume a joined node)\n"
    "       mesh-proxy sidecar [options as above]   (settings from MESH_* variables)\n"
    "       mesh-proxy [run] --config FILE [--api PATH] [--log-level LEVEL]\n"
    "                        [--health-listen ADDR:PORT] [--metrics-peers]\n"
    "       mesh-proxy health [--live] [--state DIR | --api PATH]\n"
    "       mesh-proxy status [--state DIR | --api PATH] [--json]\n"
    "       mesh-proxy ip [-4 | -6] [--state DIR | --api PATH]\n"
    "       mesh-proxy ping [--state DIR | --api PATH] [-c COUNT] [-i SECONDS]\n"
    "                       [-W SECONDS] ADDRESS|NAME\n"
    "       mesh-proxy ping --disco [--until-direct] [--json] [-c COUNT] [-i SECONDS]\n"
    "                       [-W SECONDS] PEER\n"
    "       mesh-proxy nc [--state DIR | --api PATH] HOST PORT\n"
    "       mesh-proxy whois [--state DIR | --api PATH] [--json] ADDRESS[:PORT]\n"
    "       mesh-proxy netcheck [--state DIR] [--json] [--timeout MS]\n"
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
    "                        the local API is DIR/api.sock. Default: the first of\n"
    "                        $STATE_DIRECTORY (systemd), $XDG_STATE_HOME/mesh-proxy,\n"
    "                        ~/.local/state/mesh-proxy (made 0700; refused if\n"
    "                        another user owns it or others may write to it)\n"
    "  --hostname NAME       the name to ask for (default: this host's name)\n"
    "  --socks5 [ADDR:]PORT  a SOCKS5 proxy into the mesh (a port alone: on\n"
    "                        127.0.0.1)\n"
    "  --http-proxy [ADDR:]PORT  an HTTP CONNECT proxy into the mesh\n"
    "  --proxy-user NAME     both proxies ask for NAME and the password (SOCKS5\n"
    "                        user/password, HTTP Basic); needed to bind one to\n"
    "                        an address other hosts reach (off: none)\n"
    "  --proxy-password-file FILE  the password: the file's first line\n"
    "  --proxy-open          allow a proxy or forward other hosts reach without\n"
    "                        credentials (--no-proxy-open ends a kept one)\n"
    "  --forward SPEC        local listeners into the mesh: [udp/][ADDR:]PORT=\n"
    "                        HOST:PORT items, comma-separated (e.g. 5432=db:5432;\n"
    "                        ADDR 127.0.0.1 unless given, another one is warned)\n"
    "  --direct MODE         where the proxies may connect from this host when no\n"
    "                        peer routes the destination: all (default: public\n"
    "                        and private ranges), public, or no. Never loopback,\n"
    "                        link-local, cloud metadata or the mesh itself\n"
    "  --expose SPEC         which local services mesh peers may reach: none\n"
    "                        (default), a list 22,8000-8100,80=8080 (a mesh port\n"
    "                        goes to that port on 127.0.0.1; :pp2 after an item\n"
    "                        sends a PROXY v2 header naming the peer), or all\n"
    "                        (warned). This node's own proxy and tunnel ports\n"
    "                        are never exposed, whatever the list says\n"
    "  --config FILE         extra [Peer]s and front-ends (no [Interface])\n"
    "  --no-portmap          do not ask the router (UPnP IGD, NAT-PMP, PCP) to\n"
    "                        map the WireGuard port; --portmap asks again (default)\n"
    "  --no-birthday         no birthday-paradox port probing (256 extra sockets\n"
    "                        here, or 1,500 probes from here) to reach a peer\n"
    "                        across a symmetric NAT; --birthday turns it back on\n"
    "  --ephemeral           keep no state (containers): keys in a fresh 0700\n"
    "                        directory removed at exit, the API at the default\n"
    "                        socket (as run); registered ephemeral, and on\n"
    "                        SIGTERM/SIGINT logged out of mesh-control (waiting\n"
    "                        at most 3 s). Needs --join; not with --state\n"
    "  Settings stick: a later `up` without them keeps them; a flag\n"
    "  changes one for good; --socks5 off, --http-proxy off, --config off,\n"
    "  --forward off, --proxy-user off remove one. A MESH_* variable's value\n"
    "  applies to that run only (never kept); sidecar keeps nothing.\n"
    "  --proxy-open: proxies and forwards may listen on non-loopback\n"
    "  addresses without credentials (else refused, exit 2).\n"
    "\n"
    "up and sidecar read MESH_* variables too, each like its flag: MESH_JOIN\n"
    "(or MESH_JOIN_FILE), MESH_STATE_DIR, MESH_HOSTNAME, MESH_SOCKS5,\n"
    "MESH_HTTP_PROXY, MESH_EXPOSE, MESH_FORWARDS, MESH_CONFIG, MESH_DIRECT,\n"
    "MESH_HEALTH_LISTEN, MESH_API, MESH_LOG_LEVEL, MESH_PROXY_USER,\n"
    "MESH_PROXY_PASSWORD (or MESH_PROXY_PASSWORD_FILE), and yes/no ones\n"
    "MESH_PROXY_OPEN, MESH_PORTMAP, MESH_BIRTHDAY, MESH_EPHEMERAL; MESH_EXTRA_ARGS\n"
    "holds more flags ('quotes' and \"quotes\" group words, \\ keeps the next\n"
    "character). A variable and a flag that disagree, or X with X_FILE, stop\n"
    "the node (exit 2). sidecar without a state directory is --ephemeral\n"
    "(MESH_EPHEMERAL=no is refused there); sidecar has port mapping off unless\n"
    "MESH_PORTMAP=yes. --socks5/--http-proxy take PORT, IPV4:PORT, [IPV6]:PORT\n"
    "or off. MESH_JOIN and MESH_PROXY_PASSWORD are wiped from the environment.\n"
    "\n"
    "run options:\n"
    "  -c, --config FILE     node configuration (see config/example.ini)\n"
    "  --api PATH            local API socket (default "
    "$XDG_RUNTIME_DIR/mesh-proxy.sock,\n"
    "                        else /tmp/mesh-proxy-UID/api.sock in a directory of\n"
    "                        mode 0700 that must be this user's)\n"
    "  --log-level LEVEL     error, warn, info (default) or debug\n"
    "  --health-listen ADDR:PORT  (up and run) HTTP for probes and Prometheus:\n"
    "                        /livez, /readyz (200 when joined and mesh-control\n"
    "                        or a peer answers, else 503 and why), /metrics.\n"
    "                        Any address may be given (probes come to the pod's\n"
    "                        address); it serves no secrets, and names no peer\n"
    "                        unless --metrics-peers\n"
    "  --metrics-peers       (up and run) /metrics gets per-peer series (peer=NAME,\n"
    "                        key=8 chars of its key), front-end and relay names\n"
    "                        (MESH_METRICS_PEERS=yes)\n"
    "\n"
    "commands (they find the node of `up` in the default state directory, else\n"
    "the one of --config at its default socket; --state DIR or --api PATH names\n"
    "another, else MESH_API or MESH_STATE_DIR (a sidecar's); only a node\n"
    "running as this user is trusted; health waits at most 5 s):\n"
    "  status                self, peers (name, addresses, endpoint, last handshake,\n"
    "                        bytes), control connection; --json for scripts\n"
    "  ip                    our mesh addresses (-4 or -6: only one family)\n"
    "  whois ADDRESS[:PORT]  the node, user and tags that hold a mesh address (or\n"
    "                        a peer's NAME; [IPv6]:PORT); with PORT, whether the\n"
    "                        mesh policy lets this node reach it there and it\n"
    "                        reach this node; exit 1 if no node in the map holds it\n"
    "  ping ADDRESS|NAME     ICMP echo through the mesh from the node's own address\n"
    "                        (NAME: a peer's name or full name, or a [Peer] Name;\n"
    "                        -c probes, up to 1000; -i seconds between them,\n"
    "                        0.001-60, default 1; time= is measured inside the\n"
    "                        node from send to reply)\n"
    "  ping --disco PEER     disco pings to a mesh peer (PEER: its name, mesh\n"
    "                        address or the start of its node key): each pong\n"
    "                        says the path it took, a direct address or a relay\n"
    "                        region, and its latency; --until-direct stops at\n"
    "                        the first direct pong (default -c 10; exit 1 if\n"
    "                        none); --json prints one JSON object a line, the\n"
    "                        last a summary (both options imply --disco)\n"
    "  nc HOST PORT          connect stdin/stdout to HOST:PORT through the node\n"
    "                        (a peer's name, an address, or a DNS name; e.g.\n"
    "                        ssh -o ProxyCommand='mesh-proxy nc %h %p' user@web)\n"
    "  netcheck              UDP or not, the public address each relay's STUN\n"
    "                        server sees, whether it varies by destination (a\n"
    "                        hard NAT), latency to each relay region (STUN and\n"
    "                        TCP) and the home relay; runs here, from the relay\n"
    "                        map in the state directory (no running node needed;\n"
    "                        --timeout MS, default 3000; --json for scripts)\n"
    "  health                one line, \"ready\" or \"not ready: WHY\" (as /readyz);\n"
    "                        exit 0 when ready, else 1: an exec healthcheck;\n"
    "                        --live: whether the node answers at all\n"
    "  genkey                print a new private key (base64, as `wg genkey`)\n"
    "  pubkey                read a private key on stdin, print its public key\n"
    "  genpsk                print a new preshared key\n"
    "\n"
    "examples:\n"
    "  T=$(mesh-control --data /var/lib/mesh token --reusable)\n"
    "  mesh-proxy up --join \"$T\" --socks5 127.0.0.1:1080\n"
    "  mesh-proxy up --expose 22,8080:pp2   (offer ssh and a web app)\n"
    "  mesh-proxy up                        (later runs: the same settings, kept)\n"
    "  mesh-proxy status\n"
    "  mesh-proxy ip -4\n"
    "  mesh-proxy ping web\n"
    "  mesh-proxy ping --disco --until-direct web\n"
    "  mesh-proxy netcheck\n"
    "  mesh-proxy up --join \"$T\" --state ~/mesh2 --hostname lab   (a second node)\n"
    "  mesh-proxy status --state ~/mesh2\n"
    "  curl --socks5-hostname 127.0.0.1:1080 http://web:8080/\n"
    "  mesh-proxy genkey > node.key && mesh-proxy pubkey < node.key\n"
    "  mesh-proxy --config node.ini --api /tmp/node.sock\n"
    "  mesh-proxy status --api /tmp/node.sock\n"
    "  ssh -o ProxyCommand='mesh-proxy nc %h %p' user@web\n"
    "\n"
    "exit status of up/run: 0 stopped by SIGTERM or SIGINT (an ephemeral node\n"
    "logged out first); 1 a failure, or mesh-control refused the node (an auth\n"
    "key unknown, expired, revoked or already used; the node removed): final,\n"
    "the log says what to do, and a restart with the same token fails the same\n"
    "way; 2 a usage error.\n";

/* The shared parser and its error line (cli/opts.c), under their old
 * names here. */
static int die_usage(const char *fmt, const char *arg)
{
	return cli_die_usage(fmt, arg);
}

static int parse_opts(int argc, char **argv, int i, struct cli *c)
{
	return cli_parse_opts(argc, argv, i, c);
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

/* Connects to the node's API: --api PATH, else DIR/api.sock for --state,
 * else the first of these where a node answers: the default state
 * directory's api.sock (mesh-proxy up), then the default socket of a node
 * without one (mesh-proxy --config FILE). A socket of another user is
 * never used (api_client_connect). Returns a descriptor, or -1 after
 * printing why and what to run. */
static int cli_api_open(const char *api, const char *state, const char *who,
                        bool one_line, unsigned timeout_s)
{
	char path[300], err[512];
	int fd;
	/* a sidecar's container sets these: `docker exec ... mesh-proxy
	 * status` finds its node without flags */
	if (!api && !state) {
		const char *ea = getenv("MESH_API"), *es = getenv("MESH_STATE_DIR");
		if (ea && ea[0])
			api = ea;
		else if (es && es[0])
			state = es;
	}
	if (api || state) {
		if (api)
			snprintf(path, sizeof(path), "%s", api);
		else
			snprintf(path, sizeof(path), "%s/api.sock", state);
		fd = api_client_connect_bounded(path, timeout_s, err, sizeof(err));
		if (fd >= 0)
			return fd;
		if (fd == -EPERM || fd == -EAGAIN)
			fprintf(stderr, "%s: %s\n", who, err);
		else if (api)
			fprintf(
			    stderr,
			    "%s: cannot reach the node at %s (is `mesh-proxy --config "
			    "FILE --api %s` running, as this user?)\n",
			    who, err, api);
		else
			fprintf(stderr,
			        "%s: cannot reach the node at %s (is `mesh-proxy up "
			        "--state %s` running, as this user?)\n",
			        who, err, state);
		return -1;
	}
	char tried[1200] = "";
	size_t tl = 0;
	for (int i = 0; i < 2; i++) {
		int r =
		    i == 0
		        ? cli_state_default(path, sizeof(path) - 9, err, sizeof(err))
		        : api_default_path(path, sizeof(path), false, err, sizeof(err));
		if (i == 0 && r == 0)
			strcat(path, "/api.sock");
		if (r == 0) {
			fd = api_client_connect_bounded(path, timeout_s, err, sizeof(err));
			if (fd >= 0)
				return fd;
			if (fd == -EPERM || fd == -EAGAIN) {
				fprintf(stderr, "%s: %s\n", who, err);
				return -1;
			}
		}
		int n = snprintf(tried + tl, sizeof(tried) - tl, "\n  %s", err);
		if (n > 0 && (size_t)n < sizeof(tried) - tl)
			tl += (size_t)n;
	}
	if (one_line) { /* a probe's output: one line */
		fprintf(stderr,
		        "%s: no running node found (name it with --state DIR, --api "
		        "PATH, MESH_STATE_DIR or MESH_API)\n",
		        who);
		return -1;
	}
	fprintf(stderr,
	        "%s: no running node found; tried:%s\nstart one with `mesh-proxy up` "
	        "(or `mesh-proxy --config FILE`), or name it with --state DIR or "
	        "--api PATH (as the user that runs the node)\n",
	        who, tried);
	return -1;
}

static int cmd_client(const struct cli *c, const char *req)
{
	char err[512], last[256] = "";
	int fd = cli_api_open(c->api, c->state, "mesh-proxy", false, 0);
	if (fd < 0)
		return 1;
	if (api_client_request(fd, req, STDOUT_FILENO, last, sizeof(last), err,
	                       sizeof(err)) != 0) {
		fprintf(stderr, "mesh-proxy: %s\n", err);
		return 1;
	}
	if (!strncmp(last, "error", 5) || !strcmp(last, "fail"))
		return 1;
	/* JSON lines (ping --json): an error object, or a summary not ok */
	if (!strncmp(last, "{\"error\"", 8) || strstr(last, "\"ok\":false"))
		return 1;
	return 0;
}

/* mesh-proxy health [--live]: the exec healthcheck (an image without a
 * shell runs it directly). One line out, from the node ("ready", "not
 * ready: WHY", "live"); exit 0 only on ready (live with --live). */
static int cmd_health(const struct cli *c)
{
	char err[512], last[256] = "";
	/* an exec probe must not hang on a stuck node: its connect (a full
	 * backlog), request and answer are all bounded */
	int fd = cli_api_open(c->api, c->state, "mesh-proxy health", true,
	                      CLI_HEALTH_TIMEOUT_S);
	if (fd < 0)
		return 1;
	if (api_client_request(fd, c->live ? "health live" : "health", STDOUT_FILENO,
	                       last, sizeof(last), err, sizeof(err)) != 0) {
		fprintf(stderr, "mesh-proxy health: %s\n", err);
		return 1;
	}
	return strcmp(last, c->live ? "live" : "ready") == 0 ? 0 : 1;
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
		} else if (!strncmp(a, "--state=", 8)) {
			state = a + 8;
		} else if (a[0] == '-' && a[1]) {
			return die_usage("nc: unknown option %s", a);
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			{
				char sb[48];
				return die_usage("nc: unexpected argument %s",
				                 cli_arg_shown(NULL, a, sb, sizeof(sb)));
			}
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
	int fd = cli_api_open(api, state, "mesh-proxy nc", false, 0);
	if (fd < 0)
		return 1;
	return nc_client_run(fd, pos[0], pos[1]);
}

extern char **environ;

/* `up` and `sidecar`: the MESH_* variables, then the secret files, all
 * checked before anything is touched. A sidecar without a state directory
 * is ephemeral (a container's filesystem does not outlive it anyway). */
static int cli_up_env(struct cli *c, bool sidecar, struct cli_env *e)
{
	char err[600];
	c->sidecar = sidecar;
	cli_env_warn_unknown(environ, stderr);
	int r = cli_env_apply(c, environ, e, err, sizeof(err));
	cli_env_scrub(environ, e);
	if (r) {
		if (err[0])
			fprintf(stderr, "mesh-proxy: %s\n", err);
		return r;
	}
	if (c->ephemeral && c->state) {
		fprintf(stderr,
		        "mesh-proxy: --ephemeral (MESH_EPHEMERAL) and a state "
		        "directory (--state, MESH_STATE_DIR) exclude each other: an "
		        "ephemeral node keeps no state; drop one of them\n");
		return 2;
	}
	if (sidecar && !c->state && c->no_ephemeral) {
		fprintf(stderr,
		        "mesh-proxy: MESH_EPHEMERAL=no, but a sidecar without a state "
		        "directory is ephemeral: set MESH_STATE_DIR (a volume) to keep "
		        "state, or drop MESH_EPHEMERAL\n");
		return 2;
	}
	if (sidecar && !c->state)
		c->ephemeral = true;
	/* A container's router mapping is pointless and its teardown slows
	 * the stop: off unless MESH_PORTMAP=yes asks. */
	if (sidecar && !c->portmap)
		c->portmap = "no";
	if (c->forward) {
		struct fwd_list fl;
		char ferr[200];
		if (!fwd_parse(c->forward, &fl, ferr, sizeof(ferr)))
			return die_usage("--forward: %s", ferr);
	}
	return 0;
}

int main(int argc, char **argv)
{
	harden_process(); /* before any secret is read */
	if (sodium_init() < 0) {
		fprintf(stderr, "mesh-proxy: libsodium failed to initialise\n");
		return 1;
	}
	const char *cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	/* `mesh-proxy COMMAND --help` (or -h) anywhere before "--": the usage
	 * too, not "unknown option". */
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 0;
		}
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
			return die_usage("%s", "ping needs an ADDRESS or a peer's NAME");
		char req[300];
		if (c.disco || c.until_direct || c.json) {
			/* The node forgets a disco ping after 5 s: a later pong
			 * would not count, so a longer wait would only mislead. */
			if (!(c.wait_s > 0) || c.wait_s > 5) {
				char w[32];
				snprintf(w, sizeof(w), "%g", c.wait_s);
				return die_usage(
				    "ping --disco -W %s: want 0.001 to 5 seconds "
				    "(a disco pong later than 5 s is not "
				    "accepted; use -c for more tries)",
				    w);
			}
			bool counted = false;
			for (int i = 2; i < argc; i++)
				counted |= !strcmp(argv[i], "--count");
			if (c.until_direct && !counted)
				c.count = 10;
			snprintf(req, sizeof(req), "disco %s %u %u %u %s%s%s", c.target,
			         c.count, (unsigned)(c.wait_s * 1000),
			         (unsigned)(c.interval_s * 1000 + 0.5),
			         c.until_direct ? "u" : "", c.json ? "j" : "",
			         c.until_direct || c.json ? "" : "-");
			return cmd_client(&c, req);
		}
		snprintf(req, sizeof(req), "ping %s %u %u %u", c.target, c.count,
		         (unsigned)(c.wait_s * 1000),
		         (unsigned)(c.interval_s * 1000 + 0.5));
		return cmd_client(&c, req);
	}
	if (!strcmp(cmd, "ip")) {
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		if (c.target) {
			char sb[48];
			return die_usage("ip: unexpected argument %s",
			                 cli_arg_shown(NULL, c.target, sb, sizeof(sb)));
		}
		return cmd_client(&c, c.family == 4   ? "ip 4"
		                      : c.family == 6 ? "ip 6"
		                                      : "ip");
	}
	if (!strcmp(cmd, "whois")) {
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		if (!c.target)
			return die_usage("%s", "whois needs a mesh ADDRESS (or NAME), "
			                       "optionally with :PORT ([IPv6]:PORT)");
		char req[300];
		snprintf(req, sizeof(req), "whois %s%s", c.json ? "json " : "", c.target);
		return cmd_client(&c, req);
	}
	if (!strcmp(cmd, "health")) {
		int r = parse_opts(argc, argv, 2, &c);
		if (r)
			return r;
		if (c.target) {
			char sb[48];
			return die_usage("health: unexpected argument %s",
			                 cli_arg_shown(NULL, c.target, sb, sizeof(sb)));
		}
		return cmd_health(&c);
	}
	if (!strcmp(cmd, "nc"))
		return cmd_nc(argc, argv);
	if (!strcmp(cmd, "netcheck"))
		return cli_netcheck(argc, argv);
	int first = 1;
	bool sidecar = !strcmp(cmd, "sidecar");
	if (!strcmp(cmd, "run") || !strcmp(cmd, "up") || sidecar)
		first = 2;
	int r = parse_opts(argc, argv, first, &c);
	if (r)
		return r;
	if (c.target) {
		char sb[48];
		return die_usage("unknown command %s",
		                 cli_arg_shown(NULL, c.target, sb, sizeof(sb)));
	}
	static struct cli_env env; /* c points into it until exit */
	if (!strcmp(cmd, "up") || sidecar) {
		r = cli_up_env(&c, sidecar, &env);
		if (r)
			return r;
	}
	/* `up` (or its options) without --state: the default state directory.
	 * A configuration file alone is wireproxy's mode: no state. */
	static char state_def[512];
	/* Every option only `up` reads makes it `up` (none is ignored). */
	bool up = !strcmp(cmd, "up") || sidecar || c.join || c.hostname || c.socks5 ||
	          c.http_proxy || c.expose || c.direct || c.portmap || c.birthday ||
	          c.ephemeral || c.forward || c.proxy_user || c.proxy_password_file ||
	          c.proxy_open;
	if (up && strcmp(cmd, "up") != 0 && !sidecar) {
		char err[600];
		if ((r = cli_env_secrets(&c, &env, err, sizeof(err)))) {
			fprintf(stderr, "mesh-proxy: %s\n", err);
			return r;
		}
	}
	if (up && !c.state && !c.ephemeral) { /* ephemeral: node_ctl makes one */
		char err[512];
		if (cli_state_default(state_def, sizeof(state_def), err, sizeof(err)) !=
		        0 ||
		    cli_state_prepare(state_def, err, sizeof(err)) != 0) {
			fprintf(stderr, "mesh-proxy: %s\n", err);
			return 1;
		}
		c.state = state_def;
	}
	if (!c.config && !c.state && !c.ephemeral)
		return die_usage("%s", "nothing to run: `mesh-proxy up --join TOKEN` "
		                       "joins a mesh (mesh-control), `mesh-proxy "
		                       "--config FILE` runs from a wireproxy-style file");
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
	                           .portmap = c.portmap,
	                           .birthday = c.birthday,
	                           .forwards = c.forward,
	                           .proxy_user = c.proxy_user,
	                           .proxy_password = c.proxy_password,
	                           .proxy_open = c.proxy_open,
	                           .ephemeral = c.ephemeral,
	                           .transient = c.env_only,
	                           .no_prefs = sidecar,
	                           .config_path = c.config};
	/* An ephemeral node restarting in-process (new addresses from
	 * mesh-control) keeps its directory and keys: made here, removed at
	 * the final exit. */
	static char eph[NODE_STATE_PATH_MAX];
	if (c.ephemeral && !c.state) {
		char err[600];
		if (node_state_make_ephemeral(eph, sizeof(eph), err, sizeof(err)) != 0) {
			fprintf(stderr, "mesh-proxy: %s\n", err);
			return 1;
		}
		ma.eph_dir = eph;
	}
	struct node_opts o = {.config_path = c.config,
	                      .api_path = c.api,
	                      .ctl = c.state || c.ephemeral ? &ma : NULL,
	                      .health_listen = c.health_listen,
	                      .metrics_peers =
	                          c.metrics_peers && !strcmp(c.metrics_peers, "yes")};
	int rc;
	while ((rc = node_run(&o)) == NODE_RC_RESTART)
		log_info("starting again");
	node_state_remove(eph);
	cli_env_release(&env);
	return rc;
}
