/* mesh-control: the coordination server's command line: usage text,
 * option parsing and dispatch. The admin commands are in cli_cmds.c (with
 * cli_int.h), serve in server*.c, apikeys in admin_cli.c. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util/harden.h"
#include "core/util/version.h"
#include "servers/control/admin.h"
#include "servers/control/cli_int.h"
#include "servers/control/server.h"
#include "servers/control/store.h"

static const char usage[] =
    "usage: mesh-control [--data DIR] init [--domain NAME]\n"
    "                    [--listen HOST:PORT[,HOST:PORT...]]\n"
    "                    [--store URL | --store-file FILE]\n"
    "       mesh-control migrate --from DIR --to URL | --to-file FILE\n"
    "       mesh-control [--data DIR] status [--json]\n"
    "       mesh-control [--data DIR] token [KEY OPTIONS | --no-key | --relay]\n"
    "                    [--control HOST:PORT[,HOST:PORT...]]\n"
    "       mesh-control [--data DIR] keys create [KEY OPTIONS]\n"
    "       mesh-control [--data DIR] keys list [--json]\n"
    "       mesh-control [--data DIR] keys revoke ID\n"
    "       mesh-control [--data DIR] nodes list [--pending] [--json]\n"
    "       mesh-control [--data DIR] nodes approve ID | NAME --key KEY\n"
    "       mesh-control [--data DIR] nodes remove|expire ID|NAME\n"
    "       mesh-control [--data DIR] nodes rename ID|NAME NEWNAME\n"
    "       mesh-control [--data DIR] relays list [--json] | remove NAME\n"
    "       mesh-control [--data DIR] apikeys create [DESCRIPTION] | list | revoke ID\n"
    "       mesh-control [--data DIR] users create NAME | list [--json] | remove NAME\n"
    "       mesh-control [--data DIR] policy set FILE | get [--json] | clear\n"
    "       mesh-control [--data DIR] policy check FILE [--nodes NODES.json] [--json]\n"
    "       mesh-control [--data DIR] serve [SERVE OPTIONS] (see serve --help)\n"
    "       mesh-control --help | --version\n"
    "\n"
    "The coordination server of a meshproxy mesh: nodes join with one token, get\n"
    "an address (100.64.0.0/10 and a ULA /48) and a name, and learn their peers.\n"
    "`serve` runs the node protocol that nodes connect to; the admin commands\n"
    "manage the store and issue join tokens (also while serve runs; serve pushes\n"
    "the change to every node). Nodes join with `mesh-proxy up --join TOKEN`.\n"
    "\n"
    "options:\n"
    "  --data DIR            data directory (default $MESH_CONTROL_DATA): the store\n"
    "                        (control.db, or store.url naming a PostgreSQL one),\n"
    "                        server.key (the private key, 0600) and control.conf\n"
    "  --domain NAME         init: the mesh's DNS domain (default " CTL_DEFAULT_DOMAIN
    ")\n"
    "  --listen HOST:PORT[,HOST:PORT...]\n"
    "                        init: the address nodes connect to, written into every\n"
    "                        join token (default " CTL_CLI_DEFAULT_LISTEN "); several\n"
    "                        (up to 8, mesh-control servers on one database): every\n"
    "                        token lists them all and nodes try them in that order;\n"
    "                        `serve` without --listen listens on the first\n"
    "  --control HOST:PORT[,HOST:PORT...]\n"
    "                        token: the control addresses of this token and their\n"
    "                        order, instead of control.conf's listen list (e.g.\n"
    "                        public addresses for nodes outside)\n"
    "  --store URL           init: keep the mesh in PostgreSQL (postgresql://USER@/DB\n"
    "                        ?host=SOCKETDIR, or libpq key=value words) instead of\n"
    "                        SQLite; written to DIR/store.url (0600). Several\n"
    "                        servers share one such mesh: the others use a copy\n"
    "                        of the first one's data directory\n"
    "  --store-file FILE     init: the same URL read from FILE (0600), so that a\n"
    "                        password in it stays out of `ps`\n"
    "  --from DIR            migrate: the data directory of a SQLite mesh\n"
    "  --to URL, --to-file FILE\n"
    "                        migrate: the EMPTY PostgreSQL database to copy it to\n"
    "  --json                list commands and status: JSON for scripts\n"
    "  --no-key              token: no auth key in it; nodes that join with it\n"
    "                        wait until `mesh-control nodes approve NAME --key\n"
    "                        KEY` (needs `serve --allow-pending`; not with the\n"
    "                        KEY OPTIONS)\n"
    "  --relay               token: a single-use join token for a relay server\n"
    "                        (mesh-relay up --join TOKEN), not for a node\n"
    "\n"
    "KEY OPTIONS (auth keys; a join token carries one unless --no-key):\n"
    "  --reusable            any number of nodes may join with it (default: one)\n"
    "  --ephemeral           its nodes are removed soon after they go offline\n"
    "  --expiry DUR          valid for DUR: 30s, 10m, 2h, 7d (default: no expiry)\n"
    "  --tags a,b            tags for the nodes that join with it; while a policy\n"
    "                        is set, each must be owned by --user under tagOwners\n"
    "  --user NAME           the user who owns the nodes that join with it (see\n"
    "                        users create; the policy writes it as NAME@)\n"
    "\n"
    "commands:\n"
    "  init                  create the store and the server key (once): SQLite\n"
    "                        in DIR, or with --store a PostgreSQL database\n"
    "  migrate               copy a SQLite mesh (stop its serve first) into an\n"
    "                        empty PostgreSQL database, every row kept (ids,\n"
    "                        keys, names, addresses); DIR then names the\n"
    "                        PostgreSQL store and control.db becomes\n"
    "                        control.db.migrated. Nodes reconnect unchanged\n"
    "  status                which store, the mesh, and how many nodes\n"
    "  serve                 accept nodes: registration and network maps\n"
    "  token                 create an auth key and print the join token a new\n"
    "                        node needs (treat it like a password); with\n"
    "                        --no-key, a token whose nodes wait for approval\n"
    "  keys create           create an auth key and print its secret (shown once)\n"
    "  keys list|revoke      list auth keys / revoke one by ID\n"
    "  nodes list            id, name, addresses, online or last seen, approval,\n"
    "                        expiry\n"
    "  nodes list --pending  the nodes waiting for approval, with the key each\n"
    "                        printed (compare it with the device)\n"
    "  nodes approve         let a node that joined without a key in: by its ID,\n"
    "                        or by its name with --key KEY as the node printed\n"
    "  nodes rename|remove|expire\n"
    "                        rename, delete, or force re-authentication\n"
    "  relays list|remove    the relay servers (mesh-relay) every node's map lists;\n"
    "                        a removed relay is disconnected and must join again\n"
    "  apikeys               keys for the HTTP admin API (serve --admin-listen)\n"
    "  users create|list|remove\n"
    "                        the users who own nodes (through token --user); a\n"
    "                        user who still owns nodes or unrevoked keys stays\n"
    "  policy set FILE       validate an access policy (docs/policy.md) against\n"
    "                        the store's nodes, run its tests, and store it; a\n"
    "                        rejected policy changes nothing. From then on each\n"
    "                        node accepts only what the policy allows\n"
    "  policy get|clear      print the stored policy as written / remove it (every\n"
    "                        node may reach every other again)\n"
    "  policy check FILE     validate without storing: syntax, names, its tests,\n"
    "                        and what each node would accept and see, for the\n"
    "                        nodes of --nodes (the JSON of `nodes list --json`),\n"
    "                        else of the store when --data DIR or\n"
    "                        $MESH_CONTROL_DATA is given, else none\n"
    "\n"
    "examples:\n"
    "  mesh-control --data /var/lib/mesh-control init --listen 198.18.0.1:7443\n"
    "  mesh-control --data /var/lib/mesh-control init --listen 198.18.0.1:7443 \\\n"
    "      --store 'postgresql://mesh@/mesh?host=/run/postgresql'\n"
    "  mesh-control migrate --from /var/lib/mesh-control --to-file /root/pg.url\n"
    "  export MESH_CONTROL_DATA=/var/lib/mesh-control\n"
    "  mesh-control token --reusable --expiry 1h\n"
    "  mesh-control users create alice; mesh-control token --user alice\n"
    "  mesh-control policy check policy.hujson && mesh-control policy set policy.hujson\n"
    "  mesh-control token --no-key   # then: mesh-control nodes approve NAME --key KEY\n"
    "  mesh-control serve &   # then: mesh-proxy up --join TOKEN --state DIR\n"
    "  mesh-control nodes list; mesh-control nodes rename 3 web\n";

static const struct {
	const char *name;
	bool takes;
} opt_def[O_NOPTS] = {
    {"--domain", true},     {"--listen", true},   {"--reusable", false},
    {"--ephemeral", false}, {"--expiry", true},   {"--tags", true},
    {"--no-key", false},    {"--json", false},    {"--relay", false},
    {"--key", true},        {"--pending", false}, {"--nodes", true},
    {"--user", true},       {"--control", true},  {"--store", true},
    {"--store-file", true}, {"--from", true},     {"--to", true},
    {"--to-file", true},
};

static int parse_args(int argc, char **argv, struct cli *c)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			c->help = true;
			continue;
		}
		if (!strcmp(a, "--version")) {
			c->version = true;
			continue;
		}
		if (!strcmp(a, "--data") || !strncmp(a, "--data=", 7)) {
			if (a[6] == '=') {
				c->data = a + 7;
			} else if (i + 1 < argc) {
				c->data = argv[++i];
			} else {
				return ctl_cli_die_usage("%s needs a directory", a);
			}
			continue;
		}
		if (a[0] == '-' && a[1]) {
			int k;
			size_t nl = strcspn(a, "=");
			for (k = 0; k < O_NOPTS; k++)
				if (strlen(opt_def[k].name) == nl &&
				    !strncmp(a, opt_def[k].name, nl))
					break;
			if (k == O_NOPTS)
				return ctl_cli_die_usage("unknown option %s", a);
			const char *v = NULL;
			if (a[nl] == '=') {
				if (!opt_def[k].takes)
					return ctl_cli_die_usage("%s takes no value",
					                         opt_def[k].name);
				v = a + nl + 1;
			} else if (opt_def[k].takes) {
				if (i + 1 >= argc)
					return ctl_cli_die_usage("%s needs a value", a);
				v = argv[++i];
			}
			c->seen |= 1u << k;
			c->val[k] = v;
			continue;
		}
		if (c->npos == CTL_CLI_MAX_POS)
			return ctl_cli_die_usage("unexpected argument %s", a);
		c->pos[c->npos++] = a;
	}
	return 0;
}

/* Usage error for the first option given that the command does not take. */
static int check_opts(const struct cli *c, unsigned allowed, const char *cmd)
{
	for (int k = 0; k < O_NOPTS; k++) {
		if ((c->seen & (1u << k)) && !(allowed & (1u << k))) {
			fprintf(stderr, "mesh-control: %s does not take %s\n", cmd,
			        opt_def[k].name);
			fprintf(stderr, "run `mesh-control --help` for usage\n");
			return 2;
		}
	}
	return 0;
}

static int check_npos(const struct cli *c, int want, const char *cmd, const char *what)
{
	if (c->npos < want) {
		fprintf(stderr, "mesh-control: %s needs %s\n", cmd, what);
		fprintf(stderr, "run `mesh-control --help` for usage\n");
		return 2;
	}
	if (c->npos > want)
		return ctl_cli_die_usage("unexpected argument %s", c->pos[want]);
	return 0;
}

/* token --no-key makes a token without an auth key: the KEY OPTIONS
 * describe that key, so they cannot go with it. */
static int check_nokey(const struct cli *c)
{
	if (!(c->seen & O_NOKEY) || !(c->seen & O_KEY))
		return 0;
	int k = 0;
	while (!(c->seen & O_KEY & (1u << k)))
		k++;
	return ctl_cli_die_usage("token --no-key cannot be combined with %s (a token "
	                         "without an auth key has no key options)",
	                         opt_def[k].name);
}

/* --- main --------------------------------------------------------------- */

/* policy check FILE [--nodes FILE] [--json]: the store's nodes when a data
 * directory is given (--data or $MESH_CONTROL_DATA) and no --nodes; no
 * store needed otherwise. */
static int policy_check(const struct cli *c)
{
	int r;
	if ((r = check_opts(c, O_JSON | O_NODES, "policy check")) ||
	    (r = check_npos(c, 3, "policy check", "a policy FILE (- for stdin)")))
		return r;
	const char *dir = c->data && *c->data ? c->data : getenv("MESH_CONTROL_DATA");
	struct ctl_store *st = NULL;
	struct ctl_meta meta;
	if (!c->val[I_NODES] && dir && *dir && !(st = ctl_cli_open_store(dir, &meta)))
		return 1;
	r = ctl_cli_cmd_policy_check(c->pos[2], c->val[I_NODES], st,
	                             (c->seen & O_JSON) != 0);
	ctl_store_close(st);
	return r;
}

static int run_store_cmd(const struct cli *c, const char *dir)
{
	const char *cmd = c->pos[0];
	const char *sub = c->npos > 1 ? c->pos[1] : NULL;
	char name[64];
	int r;
	snprintf(name, sizeof name, "%s %s", cmd, sub ? sub : "");

	/* Argument checks first: a usage error needs no store. */
	if (!strcmp(cmd, "token")) {
		if ((r = check_opts(c, O_KEY | O_NOKEY | O_RELAY | O_CONTROL, "token")) ||
		    (r = check_npos(c, 1, "token", "")) || (r = check_nokey(c)))
			return r;
		if ((c->seen & O_RELAY) && (c->seen & (O_KEY | O_NOKEY)))
			return ctl_cli_die_usage("%s",
			                         "token --relay takes no key options (a "
			                         "relay token is single-use, for one "
			                         "relay)");
	} else if (!sub) {
		return ctl_cli_die_usage("%s needs a subcommand (see --help)", cmd);
	} else if (!strcmp(cmd, "users") &&
	           (!strcmp(sub, "create") || !strcmp(sub, "remove"))) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 3, name, "a user NAME")))
			return r;
	} else if (!strcmp(cmd, "policy") && !strcmp(sub, "set")) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 3, name, "a policy FILE (- for stdin)")))
			return r;
	} else if (!strcmp(cmd, "policy") && !strcmp(sub, "get")) {
		if ((r = check_opts(c, O_JSON, name)) || (r = check_npos(c, 2, name, "")))
			return r;
	} else if (!strcmp(cmd, "policy") && !strcmp(sub, "clear")) {
		if ((r = check_opts(c, 0, name)) || (r = check_npos(c, 2, name, "")))
			return r;
	} else if (!strcmp(cmd, "policy")) {
		return ctl_cli_die_usage("unknown command %s: policy has set FILE, get, "
		                         "clear and check FILE",
		                         name);
	} else if (!strcmp(cmd, "relays") && !strcmp(sub, "remove")) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 3, name,
		                    "a relay name (see `mesh-control relays list`)")))
			return r;
	} else if (!strcmp(cmd, "keys") && !strcmp(sub, "create")) {
		if ((r = check_opts(c, O_KEY, name)) || (r = check_npos(c, 2, name, "")))
			return r;
	} else if (!strcmp(cmd, "nodes") && !strcmp(sub, "list")) {
		if ((r = check_opts(c, O_JSON | O_PENDING, name)) ||
		    (r = check_npos(c, 2, name, "")))
			return r;
	} else if (!strcmp(cmd, "nodes") && !strcmp(sub, "approve")) {
		if ((r = check_opts(c, O_KEYFPR, name)) ||
		    (r = check_npos(c, 3, name,
		                    "a node ID or name (see `mesh-control nodes list`)")))
			return r;
	} else if (!strcmp(sub, "list")) {
		if ((r = check_opts(c, O_JSON, name)) || (r = check_npos(c, 2, name, "")))
			return r;
	} else if (!strcmp(cmd, "keys") && !strcmp(sub, "revoke")) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 3, name,
		                    "a key ID (see `mesh-control keys list`)")))
			return r;
	} else if (!strcmp(cmd, "nodes") &&
	           (!strcmp(sub, "remove") || !strcmp(sub, "expire"))) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 3, name,
		                    "a node ID or name (see `mesh-control nodes list`)")))
			return r;
	} else if (!strcmp(cmd, "nodes") && !strcmp(sub, "rename")) {
		if ((r = check_opts(c, 0, name)) ||
		    (r = check_npos(c, 4, name, "a node ID or name and the new name")))
			return r;
	} else {
		return ctl_cli_die_usage("unknown command %s", name);
	}

	struct ctl_meta meta;
	struct ctl_store *st = ctl_cli_open_store(dir, &meta);
	if (!st)
		return 1;
	if (!strcmp(cmd, "token"))
		r = ctl_cli_cmd_token(c, dir, st, &meta);
	else if (!strcmp(cmd, "users"))
		r = ctl_cli_cmd_users(c, st, sub, c->npos > 2 ? c->pos[2] : NULL);
	else if (!strcmp(cmd, "policy"))
		r = ctl_cli_cmd_policy_store(c, st, sub, c->npos > 2 ? c->pos[2] : NULL);
	else if (!strcmp(cmd, "relays") && !strcmp(sub, "list"))
		r = ctl_cli_cmd_relays_list(c, st);
	else if (!strcmp(cmd, "relays"))
		r = ctl_cli_cmd_relays_remove(st, c->pos[2]);
	else if (!strcmp(sub, "create"))
		r = ctl_cli_cmd_keys_create(c, st);
	else if (!strcmp(cmd, "keys") && !strcmp(sub, "list"))
		r = ctl_cli_cmd_keys_list(c, st);
	else if (!strcmp(sub, "revoke"))
		r = ctl_cli_cmd_keys_revoke(st, c->pos[2]);
	else if (!strcmp(sub, "list"))
		r = ctl_cli_cmd_nodes_list(c, st, &meta);
	else
		r = ctl_cli_cmd_nodes_act(
		    st, sub, c->pos[2], c->npos > 3 ? c->pos[3] : NULL, c->val[I_KEYFPR]);
	ctl_store_close(st);
	return r;
}

int main(int argc, char **argv)
{
	harden_process(); /* before any secret is read */
	int i = 1;        /* serve parses its own options */
	while (i < argc && (argv[i][0] == '-' || !strcmp(argv[i - 1], "--data")))
		i++;
	if (i < argc && !strcmp(argv[i], "serve") && strcmp(argv[i - 1], "--data"))
		return ctl_serve_main(argc, argv);
	struct cli c = {0};
	int r = parse_args(argc, argv, &c);
	if (r)
		return r;
	if (c.help) {
		fputs(usage, stdout);
		return 0;
	}
	if (c.version) {
		printf("mesh-control %s\n", MESH_VERSION);
		return 0;
	}
	if (!c.npos)
		return ctl_cli_die_usage("%s",
		                         "no command given; try `mesh-control --data DIR "
		                         "init`");
	if (sodium_init() < 0) {
		fprintf(stderr, "mesh-control: libsodium failed to initialise\n");
		return 1;
	}
	const char *cmd = c.pos[0];
	if (!strcmp(cmd, "policy") && c.npos < 2)
		return ctl_cli_die_usage("%s",
		                         "policy needs a subcommand: set FILE, get, "
		                         "clear or check FILE");
	if (!strcmp(cmd, "policy") && !strcmp(c.pos[1], "check"))
		return policy_check(&c);
	if (!strcmp(cmd, "policy") && strcmp(c.pos[1], "set") &&
	    strcmp(c.pos[1], "get") && strcmp(c.pos[1], "clear"))
		return ctl_cli_die_usage(
		    "unknown command policy %s: policy has set FILE, "
		    "get, clear and check FILE",
		    c.pos[1]);
	if (!strcmp(cmd, "token-decode")) {
		if ((r = check_opts(&c, 0, cmd)) ||
		    (r = check_npos(&c, 2, cmd, "a TOKEN")))
			return r;
		return ctl_cli_cmd_token_decode(c.pos[1]);
	}
	if (!strcmp(cmd, "migrate")) {
		if ((r = check_opts(&c, O_FROM | O_TO | O_TOFILE, cmd)) ||
		    (r = check_npos(&c, 1, cmd, "")))
			return r;
		umask(077);
		return ctl_cli_cmd_migrate(&c);
	}
	if (strcmp(cmd, "init") && strcmp(cmd, "token") && strcmp(cmd, "keys") &&
	    strcmp(cmd, "status") && strcmp(cmd, "nodes") && strcmp(cmd, "apikeys") &&
	    strcmp(cmd, "relays") && strcmp(cmd, "users") && strcmp(cmd, "policy"))
		return ctl_cli_die_usage("unknown command %s", cmd);

	const char *dir = c.data;
	if (!dir || !*dir)
		dir = getenv("MESH_CONTROL_DATA");
	if (!dir || !*dir)
		return ctl_cli_die_usage("%s",
		                         "no data directory: pass --data DIR or set "
		                         "MESH_CONTROL_DATA");
	if (strlen(dir) > 3000)
		return ctl_cli_die_usage("--data %s: path too long", dir);

	if (!strcmp(cmd, "init")) {
		if ((r = check_opts(&c, O_DOMAIN | O_LISTEN | O_STORE | O_STOREFILE,
		                    "init")) ||
		    (r = check_npos(&c, 1, "init", "")))
			return r;
		umask(077);
		return ctl_cli_cmd_init(&c, dir);
	}
	umask(077);
	if (!strcmp(cmd, "status"))
		return (r = check_opts(&c, O_JSON, cmd)) ||
		               (r = check_npos(&c, 1, cmd, ""))
		           ? r
		           : ctl_cli_cmd_status(&c, dir);
	if (!strcmp(cmd, "apikeys"))
		return (r = check_opts(&c, O_JSON, cmd))
		           ? r
		           : ctl_admin_cli_apikeys(dir, c.npos, (char **)c.pos,
		                                   (c.seen & O_JSON) != 0);
	return run_store_cmd(&c, dir);
}
