/* mesh-control's commands: init, token, keys, nodes, token-decode (see
 * cli_int.h; usage, option parsing and dispatch are in main.c).
 *
 * The data directory (--data DIR or $MESH_CONTROL_DATA, 0700) holds
 *   control.db    the store (servers/control/store.h), 0600, or
 *   store.url     the URL of a PostgreSQL store instead, 0600 (init
 *                 --store, migrate): one line, perhaps with a password
 *   server.key    the server's static X25519 private key, base64 as
 *                 `wg genkey` writes it, 0600; never printed
 *   control.conf  0600, one INI key: `listen = HOST:PORT[,HOST:PORT...]`,
 *                 the addresses join tokens name, in order (mesh-control
 *                 init --listen); a list too long for one line is written
 *                 as several listen lines, which append. */
#include <errno.h>
#include <ini.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/control/msg.h"
#include "core/control/noise_ik.h"
#include "core/control/token.h"
#include "core/util/utf8.h"
#include "servers/control/cli_int.h"
#include "servers/control/cli_store.h"
#include "servers/control/cli_util.h"
#include "servers/control/json_util.h"
#include "servers/control/policy_srv.h"
#include "servers/control/store.h"

int ctl_cli_die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-control: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun `mesh-control --help` for usage\n");
	return 2;
}

/* --- files -------------------------------------------------------------- */

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

struct conf {
	char listen[CTL_CLI_ADDRS_TEXT_MAX];
};

static int conf_handler(void *u, const char *section, const char *name, const char *value)
{
	struct conf *cf = u;
	if (!strcmp(name, "listen"))
		return ctl_cli_conf_listen_add(cf->listen, sizeof cf->listen, value);
	return 1;
}

/* --- the store ---------------------------------------------------------- */

/* Opens an initialised store (not creating anything): SQLite or
 * PostgreSQL, whichever dir names (cli_store.c). */
struct ctl_store *ctl_cli_open_store(const char *dir, struct ctl_meta *meta)
{
	return ctl_cli_store_open(dir, meta, NULL, 0);
}

static void file_error(const char *path, int err)
{
	if (err == -EEXIST)
		fprintf(stderr,
		        "mesh-control: %s already exists: this data directory was "
		        "initialised before; use another --data DIR\n",
		        path);
	else
		fprintf(stderr, "mesh-control: cannot write %s: %s\n", path,
		        strerror(-err));
}

/* --- init --------------------------------------------------------------- */

/* The INI reader cuts lines at 200 characters (with "\r\n"): the longest
 * HOST:PORT control.conf can hold on a `listen = ` line. */
#define CONF_ADDR_MAX 185

/* control.conf's listen lines for these addresses: one line when it stays
 * well under the INI reader's 200 characters, else one line per address
 * (they append). Normalised: "a:1, b:2" is written "a:1,b:2". The length,
 * or -1 with err filled. */
static int conf_listen_lines(const struct ctl_token *addrs, char *out, size_t cap,
                             char *err, size_t errlen)
{
	char one[CTL_CLI_ADDRS_TEXT_MAX] = "";
	size_t n = ctl_token_addr_count(addrs), len = 0;
	int w;

	snprintf(err, errlen, "--listen: too long for control.conf");
	for (size_t i = 0; i < n; i++) {
		const char *h;
		uint16_t port;
		ctl_token_addr_get(addrs, i, &h, &port);
		size_t ol = strlen(one);
		w = snprintf(one + ol, sizeof one - ol, "%s%s%s%s:%u", i ? "," : "",
		             strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "",
		             port);
		if (w < 0 || (size_t)w >= sizeof one - ol)
			return -1;
		if ((size_t)w - (i ? 1 : 0) > CONF_ADDR_MAX) {
			snprintf(
			    err, errlen,
			    "--listen: %.40s...:%u is longer than %d characters, more "
			    "than a control.conf line holds; use a shorter name",
			    h, port, CONF_ADDR_MAX);
			return -1;
		}
	}
	if (strlen(one) <= 150) {
		w = snprintf(out, cap, "listen = %s\n", one);
		return w < 0 || (size_t)w >= cap ? -1 : w;
	}
	for (const char *p = one; *p;) {
		size_t il = strcspn(p, ",");
		w = snprintf(out + len, cap - len, "listen = %.*s\n", (int)il, p);
		if (w < 0 || (size_t)w >= cap - len)
			return -1;
		len += (size_t)w;
		p += il + (p[il] == ',');
	}
	return (int)len;
}

int ctl_cli_cmd_init(const struct cli *c, const char *dir)
{
	const char *domain = c->val[I_DOMAIN];
	const char *listen = c->val[I_LISTEN] ? c->val[I_LISTEN] : CTL_CLI_DEFAULT_LISTEN;
	char perr[600], listen_lines[CTL_CLI_ADDRS_TEXT_MAX + 16 * CTL_TOKEN_ADDRS_MAX];
	struct ctl_token addrs = {0};
	if (!ctl_cli_parse_addrs(listen, "--listen", &addrs, perr, sizeof perr) ||
	    conf_listen_lines(&addrs, listen_lines, sizeof listen_lines, perr,
	                      sizeof perr) < 0)
		return ctl_cli_die_usage("%s (the addresses nodes connect to)", perr);
	if (domain && (!*domain || strlen(domain) > CTL_DOMAIN_MAX))
		return ctl_cli_die_usage(
		    "--domain %s: expected a DNS name, e.g. mesh.internal", domain);

	char err[512], keyp[4096], confp[4096], url[CTL_CLI_URL_MAX + 1];
	char where[CTL_CLI_WHERE_MAX] = "";
	bool have_url = false, made_dir = false;
	int r = ctl_cli_init_url(c, url, sizeof url);
	if (r)
		return r;
	char conf[sizeof listen_lines + 256];
	snprintf(conf, sizeof conf,
	         "# mesh-control: written by `mesh-control init`.\n"
	         "# The addresses nodes connect to, in the order they try them;\n"
	         "# every join token names them all.\n"
	         "%s",
	         listen_lines);
	struct ctl_store *st;
	if (*url) {
		st = ctl_cli_init_pg_open(dir, url, where, sizeof where, &have_url,
		                          &made_dir);
		if (!st) {
			sodium_memzero(url, sizeof url);
			return 1;
		}
	} else {
		if (ctl_cli_init_sqlite_check(dir))
			return 1;
		st = ctl_store_open_sqlite(dir, err, sizeof err);
		if (!st) {
			fprintf(stderr,
			        "mesh-control: cannot create the store in %s: %s\n", dir,
			        err);
			return 1;
		}
	}
	struct ctl_meta meta;
	if (ctl_store_get_meta(st, &meta) == 0) {
		if (*url) { /* another server of a PostgreSQL mesh */
			r = ctl_cli_init_pg_joined(dir, url, have_url, made_dir, where,
			                           &meta, conf);
			sodium_memzero(url, sizeof url);
			ctl_store_close(st);
			return r;
		}
		fprintf(stderr,
		        "mesh-control: %s is already initialised (mesh %s); nothing "
		        "changed. Use another --data DIR for a new mesh\n",
		        dir, meta.mesh_id);
		ctl_store_close(st);
		return 1;
	}
	path_in(keyp, sizeof keyp, dir, "server.key");
	path_in(confp, sizeof confp, dir, "control.conf");

	struct ctl_init_params ip = {.domain = domain, .now = (int64_t)time(NULL)};
	uint8_t priv[CTL_KEY_LEN];
	char b64[sodium_base64_ENCODED_LEN(CTL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL) +
	         1];
	ctl_noise_keypair(priv, ip.server_public);
	sodium_bin2base64(b64, sizeof b64 - 1, priv, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(priv, sizeof priv);
	strcat(b64, "\n");
	int wr = ctl_cli_write_new_file(keyp, b64);
	sodium_memzero(b64, sizeof b64);
	if (wr < 0) {
		file_error(keyp, wr);
		sodium_memzero(url, sizeof url);
		ctl_store_close(st);
		return 1;
	}
	if ((wr = ctl_cli_write_new_file(confp, conf)) < 0) {
		file_error(confp, wr);
		unlink(keyp);
		sodium_memzero(url, sizeof url);
		ctl_store_close(st);
		return 1;
	}
	r = ctl_store_init(st, &ip);
	if (r == 0)
		r = ctl_store_get_meta(st, &meta);
	if (r < 0) {
		if (r == CTL_STORE_EEXISTS && *url)
			fprintf(stderr,
			        "mesh-control: init: the %s was initialised by another "
			        "host meanwhile; nothing changed here. Copy that host's "
			        "data directory (server.key, store.url, control.conf) "
			        "instead\n",
			        where);
		else
			fprintf(stderr, "mesh-control: init: %s\n", ctl_store_errmsg(st));
		unlink(keyp);
		unlink(confp);
		sodium_memzero(url, sizeof url);
		ctl_store_close(st);
		return r == CTL_STORE_EINVAL ? 2 : 1;
	}
	ctl_store_close(st);
	/* Last: only an initialised store is named by store.url (a failed
	 * init leaves a directory init can run in again). */
	if (*url && !have_url && (wr = ctl_cli_url_write(dir, url)) < 0) {
		fprintf(stderr,
		        "mesh-control: the %s is initialised, but %s/%s cannot be "
		        "written: %s; run the same init again to write it\n",
		        where, dir, CTL_STORE_URL_FILE, strerror(-wr));
		sodium_memzero(url, sizeof url);
		return 1;
	}
	sodium_memzero(url, sizeof url);

	char pub[sodium_base64_ENCODED_LEN(CTL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(pub, sizeof pub, meta.server_public, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	printf("initialised mesh %s in %s\n", meta.mesh_id, dir);
	printf("  store       %s\n", *where ? where : "sqlite (control.db)");
	printf("  domain      %s\n", meta.domain);
	printf("  listen      %s (in every join token%s)\n", listen,
	       ctl_token_addr_count(&addrs) > 1 ? ", in this order" : "");
	printf("  server key  %s (public; private key in %s)\n", pub, keyp);
	printf("next: mesh-control --data %s token\n", dir);
	return 0;
}

/* --- auth keys and tokens ------------------------------------------------ */

/* --user NAME (or NAME@): the user must exist; while a policy is set,
 * --tags must be owned by it (ctl_policy_check_key_tags). 0 to go on. */
static int key_owner(struct ctl_store *st, const char *user, const char *tags)
{
	char msg[800], clean[900];
	int r = ctl_policy_check_key_tags(st, user, tags, msg, sizeof msg);
	if (r == CTL_POLICY_REJECTED) {
		utf8_clean(msg, clean, sizeof clean, UTF8_FOR_TERMINAL);
		fprintf(stderr, "mesh-control: %s; no key made\n", clean);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	return 0;
}

static int key_create(const struct cli *c, struct ctl_store *st, char *secret, size_t cap,
                      struct ctl_authkey *k)
{
	char tags[CTL_STORE_TAGS_MAX + 1], user[CTL_NAME_MAX + 1];
	struct ctl_authkey_params p = {
	    .reusable = c->seen & O_REUSABLE,
	    .ephemeral = c->seen & O_EPHEMERAL,
	    .now = (int64_t)time(NULL),
	};
	if (c->seen & O_EXPIRY) {
		int64_t d = ctl_cli_parse_dur(c->val[I_EXPIRY]);
		if (d < 0)
			return ctl_cli_die_usage(
			    "--expiry %s: expected a duration such as 30s, "
			    "10m, 2h or 7d (at most 3650d)",
			    c->val[I_EXPIRY]);
		p.expiry = p.now + d;
	}
	if (c->seen & O_TAGS) {
		if (!ctl_cli_norm_tags(c->val[I_TAGS], tags, sizeof tags) ||
		    strpbrk(tags, " \t"))
			return ctl_cli_die_usage(
			    "--tags %s: expected a comma list such as web,ci "
			    "(no spaces, at most 255 characters)",
			    c->val[I_TAGS]);
		p.tags = tags;
	}
	if (c->seen & O_USER) {
		if (!ctl_policy_user_arg(c->val[I_USER], user, sizeof user) || !*user)
			return ctl_cli_die_usage(
			    "--user %s: expected a user name such as "
			    "alice (see `mesh-control users list`)",
			    c->val[I_USER]);
		p.user = user;
	}
	if (key_owner(st, p.user, p.tags))
		return 1;
	int r = ctl_store_key_create(st, &p, secret, cap, k);
	if (r == CTL_STORE_ENOTFOUND && p.user) {
		fprintf(
		    stderr,
		    "mesh-control: --user %s: no such user; create it with `mesh-control "
		    "users create %s` (see `mesh-control users list`)\n",
		    p.user, p.user);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return r == CTL_STORE_EINVAL ? 2 : 1;
	}
	return 0;
}

int ctl_cli_cmd_keys_create(const struct cli *c, struct ctl_store *st)
{
	char secret[CTL_SECRET_MAX], exp[32];
	struct ctl_authkey k;
	int r = key_create(c, st, secret, sizeof secret, &k);
	if (r)
		return r;
	ctl_cli_fmt_time(exp, sizeof exp, k.expiry);
	printf("%s\n", secret);
	fprintf(stderr,
	        "mesh-control: auth key %lld (%s%s, expires %s%s%s%s%s): the secret "
	        "above is shown only once\n",
	        (long long)k.id, k.reusable ? "reusable" : "single-use",
	        k.ephemeral ? ", ephemeral" : "", exp, k.user[0] ? ", user " : "", k.user,
	        k.tags[0] ? ", tags " : "", k.tags);
	sodium_memzero(secret, sizeof secret);
	return 0;
}

int ctl_cli_cmd_token(const struct cli *c, const char *dir, struct ctl_store *st,
                      const struct ctl_meta *meta)
{
	char confp[4096], perr[600];
	struct conf cf = {{0}};
	struct ctl_token tok = {0};
	if (c->val[I_CONTROL]) { /* this token's own list */
		if (!ctl_cli_parse_addrs(c->val[I_CONTROL], "--control", &tok, perr,
		                         sizeof perr)) {
			ctl_token_wipe(&tok);
			return ctl_cli_die_usage("%s", perr);
		}
		snprintf(cf.listen, sizeof cf.listen, "%s", c->val[I_CONTROL]);
	} else {
		path_in(confp, sizeof confp, dir, "control.conf");
		int pr = ini_parse(confp, conf_handler, &cf);
		if (pr != 0 ||
		    !ctl_cli_parse_addrs(cf.listen, "listen", &tok, perr, sizeof perr)) {
			fprintf(stderr,
			        "mesh-control: %s: %s; it needs a line `listen = "
			        "HOST:PORT[,HOST:PORT...]` (the addresses nodes connect "
			        "to), or pass --control HOST:PORT[,...]\n",
			        confp,
			        pr < 0   ? strerror(errno)
			        : pr > 0 ? "a listen line is malformed or too long"
			                 : perr);
			ctl_token_wipe(&tok);
			return 1;
		}
	}
	memcpy(tok.server_key, meta->server_public, CTL_KEY_LEN);
	/* --no-key: auth_len 0; its nodes register pending an admin's
	 * `nodes approve` (main.c refuses it with the key options). */
	bool nokey = c->seen & O_NOKEY;
	bool relay = c->seen & O_RELAY; /* a relay join key ("rkey-"), single-use */
	struct ctl_authkey k = {0};
	int r;
	if (relay) {
		r = ctl_store_relay_key_create(st, (int64_t)time(NULL), tok.auth_key,
		                               sizeof tok.auth_key, &k.id);
		if (r < 0)
			fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		r = r < 0 ? 1 : 0;
	} else {
		r = nokey ? 0 : key_create(c, st, tok.auth_key, sizeof tok.auth_key, &k);
	}
	if (r) {
		ctl_token_wipe(&tok);
		return r;
	}
	char s[CTL_TOKEN_STR_MAX];
	r = ctl_token_encode(&tok, s, sizeof s);
	ctl_token_wipe(&tok);
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_token_strerror(r));
		if (!nokey && !relay)
			ctl_store_key_revoke(st, k.id);
		return 1;
	}
	printf("%s\n", s);
	sodium_memzero(s, sizeof s);
	if (relay) {
		fprintf(stderr,
		        "mesh-control: relay join token for %s (relay key %lld, single-use); "
		        "on the relay host: mesh-relay up --join TOKEN --state DIR --listen "
		        "ADDR:PORT [--region NAME] [--stun ADDR:PORT]\n",
		        cf.listen, (long long)k.id);
		return 0;
	}
	if (nokey) {
		fprintf(stderr,
		        "mesh-control: join token for %s without an auth key: its nodes "
		        "wait until you run `mesh-control nodes approve NAME --key KEY` "
		        "with the name and key each prints, if the server runs `serve "
		        "--allow-pending` (else they are refused); on the new node: "
		        "mesh-proxy up --join TOKEN --state DIR\n",
		        cf.listen);
		return 0;
	}
	fprintf(stderr,
	        "mesh-control: join token for %s with auth key %lld (%s%s%s%s); on the "
	        "new node: mesh-proxy up --join TOKEN --state DIR\n",
	        cf.listen, (long long)k.id, k.reusable ? "reusable" : "single-use",
	        k.ephemeral ? ", ephemeral" : "",
	        k.user[0] ? ", its nodes owned by " : "", k.user);
	return 0;
}

static int print_json(json_t *j)
{
	int r = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (r < 0) {
		fprintf(stderr, "mesh-control: out of memory\n");
		return 1;
	}
	printf("\n");
	return 0;
}

int ctl_cli_cmd_keys_list(const struct cli *c, struct ctl_store *st)
{
	struct ctl_authkey *ks;
	size_t n;
	if (ctl_store_key_list(st, &ks, &n) < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	int64_t now = (int64_t)time(NULL);
	char exp[32], cre[32];
	json_t *arr = (c->seen & O_JSON) ? json_array() : NULL;
	if (!arr)
		printf("%-5s %-10s %-9s %-5s %-8s %-21s %-21s %-16s %s\n", "ID", "USE",
		       "EPHEMERAL", "USES", "STATE", "EXPIRES", "CREATED", "USER",
		       "TAGS");
	for (size_t i = 0; i < n; i++) {
		const struct ctl_authkey *k = &ks[i];
		ctl_cli_fmt_time(exp, sizeof exp, k->expiry);
		ctl_cli_fmt_time(cre, sizeof cre, k->created);
		if (arr) {
			json_array_append_new(arr, ctl_json_authkey(k, now));
		} else {
			printf("%-5lld %-10s %-9s %-5lld %-8s %-21s %-21s %-16s %s\n",
			       (long long)k->id, k->reusable ? "reusable" : "single",
			       k->ephemeral ? "yes" : "no", (long long)k->uses,
			       ctl_json_key_state(k, now), exp, cre,
			       k->user[0] ? k->user : "-", k->tags[0] ? k->tags : "-");
		}
	}
	free(ks);
	return arr ? print_json(arr) : 0;
}

int ctl_cli_cmd_keys_revoke(struct ctl_store *st, const char *arg)
{
	char *end;
	errno = 0;
	long long id = strtoll(arg, &end, 10);
	if (errno || *end || end == arg || id <= 0)
		return ctl_cli_die_usage(
		    "keys revoke %s: expected a key ID (a number from "
		    "`mesh-control keys list`)",
		    arg);
	int r = ctl_store_key_revoke(st, (int64_t)id);
	if (r == CTL_STORE_ENOTFOUND) {
		fprintf(stderr,
		        "mesh-control: no auth key %lld; see `mesh-control keys list`\n",
		        id);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	printf("revoked auth key %lld\n", id);
	return 0;
}

/* --- nodes -------------------------------------------------------------- */

static int find_node(struct ctl_store *st, const char *arg, struct ctl_node *nd)
{
	char *end;
	errno = 0;
	long long id = strtoll(arg, &end, 10);
	int r = CTL_STORE_ENOTFOUND;
	if (!errno && !*end && end != arg && id > 0)
		r = ctl_store_node_by_id(st, (int64_t)id, nd);
	if (r == CTL_STORE_ENOTFOUND)
		r = ctl_store_node_by_name(st, arg, nd);
	if (r == CTL_STORE_ENOTFOUND || r == CTL_STORE_EINVAL) {
		fprintf(stderr,
		        "mesh-control: no node with ID or name \"%s\"; see "
		        "`mesh-control nodes list`\n",
		        arg);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	return 0;
}

/* nodes list --pending: who waits, with the key fingerprint to compare
 * with what the device printed. */
static int nodes_list_pending(const struct cli *c, struct ctl_node *ns, size_t n,
                              const struct ctl_meta *meta)
{
	int64_t now = (int64_t)time(NULL);
	json_t *arr = (c->seen & O_JSON) ? json_array() : NULL;
	size_t shown = 0;
	char fpr[CTL_KEY_FPR_LEN + 1], cre[32];
	for (size_t i = 0; i < n; i++) {
		const struct ctl_node *nd = &ns[i];
		if (nd->approved)
			continue;
		ctl_key_fpr(nd->machine_key, fpr);
		ctl_cli_fmt_time(cre, sizeof cre, nd->created);
		if (arr) {
			json_array_append_new(arr, ctl_json_node(nd, meta->domain, now));
		} else {
			if (!shown)
				printf("%-5s %-20s %-16s %-21s %s\n", "ID", "NAME", "KEY",
				       "REGISTERED", "HOSTNAME");
			printf("%-5lld %-20s %-16s %-21s %s\n", (long long)nd->id,
			       nd->name, fpr, cre, nd->hostname);
		}
		shown++;
	}
	free(ns);
	if (arr)
		return print_json(arr);
	if (!shown)
		fprintf(stderr, "mesh-control: no node is waiting for approval\n");
	else
		fprintf(stderr,
		        "mesh-control: approve one with `mesh-control nodes approve "
		        "NAME --key KEY` once KEY matches what the device "
		        "printed\n");
	return 0;
}

int ctl_cli_cmd_nodes_list(const struct cli *c, struct ctl_store *st,
                           const struct ctl_meta *meta)
{
	struct ctl_node *ns;
	size_t n;
	if (ctl_store_node_list(st, 0, &ns, &n) < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	if (c->seen & O_PENDING)
		return nodes_list_pending(c, ns, n, meta);
	int64_t now = (int64_t)time(NULL);
	char v4[16], v6[48], seen[32], exp[32];
	size_t pending = 0;
	json_t *arr = (c->seen & O_JSON) ? json_array() : NULL;
	if (!arr && n)
		printf("%-5s %-20s %-16s %-15s %-28s %-16s %-8s %s\n", "ID", "NAME",
		       "USER", "IPV4", "IPV6", "STATUS", "APPROVED", "EXPIRES");
	if (!arr && !n)
		fprintf(stderr, "mesh-control: no nodes yet; make a join token with "
		                "`mesh-control token`\n");
	for (size_t i = 0; i < n; i++) {
		const struct ctl_node *nd = &ns[i];
		bool expired = nd->expiry && nd->expiry <= now;
		ctl_cli_fmt_v4(v4, sizeof v4, nd->ipv4);
		ctl_cli_fmt_v6(v6, sizeof v6, nd->ipv6);
		ctl_cli_fmt_seen(seen, sizeof seen, nd, now);
		ctl_cli_fmt_time(exp, sizeof exp, nd->expiry);
		if (arr) {
			json_array_append_new(arr, ctl_json_node(nd, meta->domain, now));
		} else {
			/* A pending node is never online (serve holds it
			 * until approval): its status is what matters. */
			printf("%-5lld %-20s %-16s %-15s %-28s %-16s %-8s %s%s\n",
			       (long long)nd->id, nd->name, nd->user[0] ? nd->user : "-",
			       v4, v6, nd->approved ? seen : "pending approval",
			       nd->approved ? "yes" : "no", exp,
			       expired ? " (expired)" : "");
			pending += !nd->approved;
		}
	}
	free(ns);
	if (pending)
		fprintf(stderr,
		        "mesh-control: %zu node%s pending approval; let %s in with "
		        "`mesh-control nodes approve NAME --key KEY` (keys: "
		        "`mesh-control nodes list --pending`)\n",
		        pending, pending == 1 ? "" : "s", pending == 1 ? "it" : "them");
	return arr ? print_json(arr) : 0;
}

/* A pending node's approval names that very device: by ID or name, always
 * with the key fingerprint the device printed. A bare name or ID could be
 * another device's: anyone can queue a registration under a look-alike
 * name, and the list shows names first. 0 when it may go ahead. */
static int approve_check(const struct ctl_node *nd, const char *arg, const char *fpr)
{
	char want[CTL_KEY_FPR_LEN + 1];
	ctl_key_fpr(nd->machine_key, want);
	if (fpr && strcasecmp(fpr, want) != 0) {
		fprintf(stderr,
		        "mesh-control: node %lld (%s) has key %s, not %s: this is not "
		        "the device that printed %s; nothing approved (see "
		        "`mesh-control nodes list --pending`)\n",
		        (long long)nd->id, nd->name, want, fpr, fpr);
		return 1;
	}
	if (nd->approved || fpr)
		return 0;
	fprintf(stderr,
	        "mesh-control: node %lld (%s) is waiting for approval; approve it by "
	        "the key its device printed, to be sure it is that device: "
	        "`mesh-control nodes approve %s --key KEY` (the keys: `mesh-control "
	        "nodes list --pending`)\n",
	        (long long)nd->id, nd->name, arg);
	return 2;
}

int ctl_cli_cmd_nodes_act(struct ctl_store *st, const char *act, const char *arg,
                          const char *newname, const char *keyfpr)
{
	struct ctl_node nd;
	if (find_node(st, arg, &nd))
		return 1;
	int r;
	if (!strcmp(act, "approve") && (r = approve_check(&nd, arg, keyfpr)) != 0)
		return r;
	if (!strcmp(act, "approve"))
		r = ctl_store_node_approve(st, nd.id);
	else if (!strcmp(act, "remove"))
		r = ctl_store_node_remove(st, nd.id);
	else if (!strcmp(act, "expire"))
		r = ctl_store_node_expire(st, nd.id, (int64_t)time(NULL));
	else
		r = ctl_store_node_rename(st, nd.id, newname);
	if (r == CTL_STORE_EEXISTS) {
		fprintf(stderr, "mesh-control: the name %s is taken; pick another\n",
		        newname);
		return 1;
	}
	if (r == CTL_STORE_EINVAL) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 2;
	}
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_store_errmsg(st));
		return 1;
	}
	if (newname)
		printf("renamed node %lld from %s to %s\n", (long long)nd.id, nd.name,
		       newname);
	else
		printf("%s node %lld (%s)\n",
		       !strcmp(act, "approve")  ? "approved"
		       : !strcmp(act, "remove") ? "removed"
		                                : "expired",
		       (long long)nd.id, nd.name);
	return 0;
}

/* --- debug -------------------------------------------------------------- */

/* Hidden: mesh-control token-decode TOKEN (for tests and support). */
int ctl_cli_cmd_token_decode(const char *s)
{
	struct ctl_token tok;
	int r = ctl_token_decode(s, strlen(s), &tok);
	if (r < 0) {
		fprintf(stderr, "mesh-control: %s\n", ctl_token_strerror(r));
		return 1;
	}
	char key[sodium_base64_ENCODED_LEN(CTL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(key, sizeof key, tok.server_key, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	/* host/port: the first control address (what older scripts read);
	 * then every address, in order, as HOST:PORT ("[v6]:PORT"). */
	printf("host %s\nport %u\n", tok.host, tok.port);
	for (size_t i = 0; i < ctl_token_addr_count(&tok); i++) {
		const char *h;
		uint16_t port;
		ctl_token_addr_get(&tok, i, &h, &port);
		bool v6 = strchr(h, ':') != NULL;
		printf("control %s%s%s:%u\n", v6 ? "[" : "", h, v6 ? "]" : "", port);
	}
	printf("server_key %s\nauth_key %s\n", key,
	       tok.auth_key[0] ? tok.auth_key : "(none)");
	ctl_token_wipe(&tok);
	return 0;
}
