#include "node/control.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/control/client.h"
#include "core/magicsock/magicsock.h"
#include "core/portmap/portmap.h"
#include "core/util/hostname.h"
#include "core/util/log.h"
#include "core/wg/device.h"
#include "node/acl.h"
#include "node/control_int.h"
#include "node/dns/magicdns.h"
#include "node/forward.h"
#include "node/node.h"

#define NCTL_VERSION "0.1.0"
/* A delta naming more peers than this sets the paths from the whole map. */
#define NCTL_PATHS_DELTA_MAX 256
#define NCTL_SAVE_MS         60000 /* netmap.json: at most this often */
/* Our addresses are listed this often: a change is acted on at once
 * (control_netchg.c); getifaddrs costs microseconds. */
#define NCTL_ENDPOINTS_MS 2000
#define NCTL_EP_MAX       15 /* interface addresses; 127.0.0.1 comes last */

/* ---- before the loop ---- */

const struct node_self *node_ctl_prep_self(const struct node_ctl_prep *p)
{
	return p->have_self ? &p->self : NULL;
}

void node_ctl_prep_free(struct node_ctl_prep *p)
{
	if (!p)
		return;
	node_keys_wipe(&p->keys);
	sodium_memzero(p->auth_key, sizeof(p->auth_key));
	sodium_memzero(&p->prefs, sizeof(p->prefs)); /* the proxy password */
	ctl_msg_free(&p->map);
	node_state_remove(p->eph_dir); /* keys included: nothing outlives the run */
	free(p);
}

/* The default name: the host name's first label, lowercased, with
 * characters a DNS label cannot hold turned into '-'. */
static void nctl_default_hostname(char *out, size_t cap)
{
	char h[256] = "";
	if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
		snprintf(h, sizeof(h), "node");
	h[strcspn(h, ".")] = 0;
	size_t k = 0;
	for (size_t i = 0; h[i] && k + 1 < cap && k < 63; i++) {
		unsigned char c = (unsigned char)h[i];
		out[k++] = isalnum(c) ? (char)tolower(c) : '-';
	}
	out[k] = 0;
	if (!k)
		snprintf(out, cap, "node");
}

/* Parses --join into p (nothing written yet). */
static int nctl_prep_token(struct node_ctl_prep *p, const char *tok, char *err,
                           size_t errlen)
{
	struct ctl_token t;
	int r = ctl_token_decode(tok, strlen(tok), &t);
	if (r != 0) {
		snprintf(err, errlen, "--join: %s", ctl_token_strerror(r));
		return -1;
	}
	p->server.port = t.port;
	snprintf(p->server.host, sizeof(p->server.host), "%s", t.host);
	p->server.n_more = t.n_more;
	memcpy(p->server.more, t.more, sizeof(p->server.more));
	memcpy(p->server.server_key, t.server_key, CTL_KEY_LEN);
	snprintf(p->auth_key, sizeof(p->auth_key), "%s", t.auth_key);
	ctl_token_wipe(&t);
	return 0;
}

/* One setting of `up`: the flag if given ("off" clears a proxy or the
 * configuration file), else what prefs.json kept. A flag that changes a
 * kept value is said at warn: the change sticks. */
static const char *nctl_pref(const char *name, const char *flag, char *kept, size_t cap,
                             bool clearable, bool transient, bool *changed)
{
	if (!flag)
		return kept[0] ? kept : NULL;
	const char *want = clearable && strcmp(flag, "off") == 0 ? "" : flag;
	if (transient) /* a MESH_* variable: this run only, the kept one stays */
		return want[0] ? want : NULL;
	if (strcmp(want, kept) != 0) {
		if (kept[0])
			log_warn(
			    "setting --%s changes from %s to %s (kept for later runs)",
			    name, kept, want[0] ? want : "off");
		snprintf(kept, cap, "%s", want);
		*changed = true;
	}
	return kept[0] ? kept : NULL;
}

/* The user and the password come from one place: both for this run
 * (MESH_PROXY_USER, MESH_PROXY_PASSWORD) or both kept (flags, prefs.json).
 * A mix would pair this run's user with the kept password, or keep a user
 * whose password the next run does not have. */
static int nctl_creds_one_source(const struct node_ctl_prep *p, char *err, size_t errlen)
{
	const struct node_prefs *k = &p->prefs;
	unsigned t = p->a.transient;
	bool user = p->a.proxy_user && strcmp(p->a.proxy_user, "off") != 0;
	bool pw = p->a.proxy_password != NULL;
	bool ut = t & NODE_ARG_PROXY_USER, pt = t & NODE_ARG_PROXY_PASSWORD;
	if (p->a.proxy_user && !user) { /* off wins: no credentials */
		if (pw)
			log_warn("%s: the proxy password given (%s) is not used: the "
			         "proxies run without credentials",
			         ut ? "MESH_PROXY_USER=off" : "--proxy-user off",
			         pt ? "MESH_PROXY_PASSWORD" : "--proxy-password-file");
		return 0;
	}
	if ((user && pw && ut != pt) || (user && ut && !pw && k->proxy_password[0]) ||
	    (pw && pt && !user && k->proxy_user[0])) {
		snprintf(err, errlen,
		         "the proxy user and password must come from the same place: "
		         "both from MESH_PROXY_USER and MESH_PROXY_PASSWORD (this run "
		         "only) or both from --proxy-user and --proxy-password-file "
		         "(kept)");
		return -1;
	}
	return 0;
}

/* The proxies' credentials: like the other settings, but the password is
 * never logged, and --proxy-user off forgets both (MESH_PROXY_USER=off:
 * none for this run), whatever password came with it. */
static void nctl_merge_creds(struct node_ctl_prep *p)
{
	struct node_prefs *k = &p->prefs;
	bool *ch = &p->prefs_changed;
	unsigned t = p->a.transient;
	bool off = p->a.proxy_user && !strcmp(p->a.proxy_user, "off");
	p->a.proxy_user =
	    nctl_pref("proxy-user", p->a.proxy_user, k->proxy_user, sizeof(k->proxy_user),
	              true, t & NODE_ARG_PROXY_USER, ch);
	const char *pw = off ? "" : p->a.proxy_password;
	unsigned run_only =
	    off ? NODE_ARG_PROXY_USER : NODE_ARG_PROXY_PASSWORD | NODE_ARG_PROXY_USER;
	if (pw && (t & run_only)) {
		p->a.proxy_password = pw[0] ? pw : NULL; /* this run only */
		return;
	}
	if (pw && strcmp(pw, k->proxy_password) != 0) {
		if (k->proxy_password[0] && pw[0])
			log_warn("the proxy password changes (kept for later runs)");
		snprintf(k->proxy_password, sizeof(k->proxy_password), "%s", pw);
		*ch = true;
	}
	p->a.proxy_password = k->proxy_password[0] ? k->proxy_password : NULL;
}

/* Checks what the prefs cannot hold before they are merged: a value too
 * long for prefs.json would be cut, not refused. */
/* Valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) without control characters: what prefs.json (JSON) and an
 * HTTP header keep intact. */
static bool nctl_text_ok(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*u) {
		unsigned c = *u, need, cp;
		if (c < 0x20 || c == 0x7f)
			return false;
		if (c < 0x80) {
			u++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= need; i++) {
			if ((u[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (u[i] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp < 0xa0))
			return false;
		u += need + 1;
	}
	return true;
}

/* A value as it may appear in an error line: itself when it is plain
 * printable text of a sane length, else only its length. */
static const char *nctl_shown(const char *v, char *buf, size_t cap)
{
	size_t n = strlen(v);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f ||
		    n > 100) {
			snprintf(buf, cap,
			         "(%zu bytes, not shown: control characters or too long)",
			         n);
			return buf;
		}
	return v;
}

/* One value that goes into a generated section or prefs.json: refused,
 * never cut, when it is malformed or longer than prefs.json keeps. */
static int nctl_check_value(const char *flag, const char *v, size_t cap, const char *want,
                            char *err, size_t errlen)
{
	if (!v)
		return 0;
	char sb[80];
	if (strlen(v) >= cap || !nctl_text_ok(v)) {
		snprintf(err, errlen,
		         "%s %s: want %s (at most %zu bytes, no control "
		         "characters)",
		         flag, nctl_shown(v, sb, sizeof(sb)), want, cap - 1);
		return -1;
	}
	return 0;
}

static int nctl_check_listen(const char *flag, const char *v, char *err, size_t errlen)
{
	char sb[80];
	if (v && !fwd_listen_spec_ok(v)) {
		snprintf(
		    err, errlen,
		    "%s %s: want PORT, IPV4:PORT, [IPV6]:PORT or off (ports 1-65535)",
		    flag, nctl_shown(v, sb, sizeof(sb)));
		return -1;
	}
	return 0;
}

/* Checks what the prefs cannot hold before they are merged: a value too
 * long for prefs.json would be cut, not refused; a value with a line end
 * would add lines to the generated configuration. */
static int nctl_check_args(const struct node_ctl_args *a, bool kept, char *err,
                           size_t errlen)
{
	struct fwd_list fl;
	char ferr[200];
	enum cfg_direct d;
	const struct node_prefs *k = NULL;
	char sb[80];
	if (nctl_check_listen("--socks5", a->socks5, err, errlen) ||
	    nctl_check_listen("--http-proxy", a->http_proxy, err, errlen) ||
	    nctl_check_value("--expose", a->expose, sizeof(k->expose), "an expose list",
	                     err, errlen) ||
	    nctl_check_value("--config", a->config_path, sizeof(k->config), "a file name",
	                     err, errlen) ||
	    nctl_check_value("--forward", a->forwards, sizeof(k->forwards),
	                     "[udp/][ADDR:]PORT=HOST:PORT items", err, errlen))
		return -1;
	if (a->direct && !cfg_direct_parse(a->direct, &d)) {
		snprintf(err, errlen, "--direct %s: want public, all or no",
		         nctl_shown(a->direct, sb, sizeof(sb)));
		return -1;
	}
	if (a->forwards && !fwd_parse(a->forwards, &fl, ferr, sizeof(ferr))) {
		snprintf(err, errlen, "--forward: %s", ferr);
		return -1;
	}
	if (a->proxy_user &&
	    (!a->proxy_user[0] || strlen(a->proxy_user) > 255 ||
	     strchr(a->proxy_user, ':') || !nctl_text_ok(a->proxy_user))) {
		snprintf(err, errlen,
		         "--proxy-user: want 1 to 255 bytes of UTF-8 text, no control "
		         "characters and no ':' (HTTP Basic splits there)");
		return -1;
	}
	/* the minimum came after passwords were kept: a short one from
	 * prefs.json is not refused here, new input must meet it; where
	 * the proxies bind decides (nctl_front_cred) */
	if (kept && a->proxy_password && a->proxy_password[0] &&
	    strlen(a->proxy_password) < 8 && nctl_text_ok(a->proxy_password))
		return 0;
	if (a->proxy_password &&
	    (strlen(a->proxy_password) < 8 || strlen(a->proxy_password) > 255 ||
	     !nctl_text_ok(a->proxy_password))) {
		snprintf(err, errlen,
		         "the proxy password (--proxy-password-file or "
		         "MESH_PROXY_PASSWORD): want 8 to 255 bytes (RFC 1929) of UTF-8 "
		         "text without control characters");
		return -1;
	}
	return 0;
}

/* The settings in effect: the flags given, the rest from prefs.json
 * (a sidecar: the values given only). */
static int nctl_merge_prefs(struct node_ctl_prep *p, char *err, size_t errlen)
{
	char lerr[1024];
	struct node_prefs *k = &p->prefs;
	int r = p->a.no_prefs
	            ? -ENOENT
	            : node_state_load_prefs(p->a.state_dir, k, lerr, sizeof(lerr));
	if (r == 0) { /* kept by an older version, or edited: checked as flags */
		struct node_ctl_args ka = {
		    .socks5 = k->socks5[0] ? k->socks5 : NULL,
		    .http_proxy = k->http_proxy[0] ? k->http_proxy : NULL,
		    .expose = k->expose[0] ? k->expose : NULL,
		    .direct = k->direct[0] ? k->direct : NULL,
		    .config_path = k->config[0] ? k->config : NULL,
		    .forwards = k->forwards[0] ? k->forwards : NULL,
		    .proxy_user = k->proxy_user[0] ? k->proxy_user : NULL,
		    .proxy_password = k->proxy_password[0] ? k->proxy_password : NULL};
		char cerr[300];
		if (nctl_check_args(&ka, true, cerr, sizeof(cerr)) != 0) {
			snprintf(lerr, sizeof(lerr), "%s/prefs.json: %s", p->a.state_dir,
			         cerr);
			sodium_memzero(k, sizeof(*k));
			r = -EINVAL;
		}
	}
	if (r != 0 && r != -ENOENT)
		log_warn("%s; none of the kept settings apply, only this run's", lerr);
	const char *cfg = p->a.config_path;
	char *abs = NULL;
	if (cfg && strcmp(cfg, "off") != 0 && cfg[0] != '/' &&
	    (abs = realpath(cfg, NULL))) {
		if (strlen(abs) >= sizeof(k->config)) {
			snprintf(
			    err, errlen,
			    "--config: the file's full path is longer than %zu bytes: "
			    "move it",
			    sizeof(k->config) - 1);
			free(abs);
			return -1;
		}
		cfg = abs; /* a later run may start elsewhere */
	}
	bool *ch = &p->prefs_changed;
	unsigned t = p->a.transient;
	p->open_kept = !p->a.proxy_open && !strcmp(k->proxy_open, "yes");
	p->a.socks5 = nctl_pref("socks5", p->a.socks5, k->socks5, sizeof(k->socks5), true,
	                        t & NODE_ARG_SOCKS5, ch);
	p->a.http_proxy =
	    nctl_pref("http-proxy", p->a.http_proxy, k->http_proxy, sizeof(k->http_proxy),
	              true, t & NODE_ARG_HTTP_PROXY, ch);
	p->a.expose = nctl_pref("expose", p->a.expose, k->expose, sizeof(k->expose),
	                        false, t & NODE_ARG_EXPOSE, ch);
	p->a.direct = nctl_pref("direct", p->a.direct, k->direct, sizeof(k->direct),
	                        false, t & NODE_ARG_DIRECT, ch);
	/* a transient path points into abs: keep it in the prep */
	if (cfg == abs && (t & NODE_ARG_CONFIG)) {
		snprintf(p->cfg_abs, sizeof(p->cfg_abs), "%s", abs);
		cfg = p->cfg_abs;
	}
	p->a.config_path = nctl_pref("config", cfg, k->config, sizeof(k->config), true,
	                             t & NODE_ARG_CONFIG, ch);
	free(abs);
	p->a.portmap = nctl_pref("portmap", p->a.portmap, k->portmap, sizeof(k->portmap),
	                         false, t & NODE_ARG_PORTMAP, ch);
	p->a.birthday = nctl_pref("birthday", p->a.birthday, k->birthday,
	                          sizeof(k->birthday), false, t & NODE_ARG_BIRTHDAY, ch);
	p->a.forwards = nctl_pref("forward", p->a.forwards, k->forwards,
	                          sizeof(k->forwards), true, t & NODE_ARG_FORWARDS, ch);
	p->a.proxy_open =
	    nctl_pref("proxy-open", p->a.proxy_open, k->proxy_open, sizeof(k->proxy_open),
	              false, t & NODE_ARG_PROXY_OPEN, ch);
	if (nctl_creds_one_source(p, err, errlen) != 0)
		return -1;
	nctl_merge_creds(p);
	if (p->a.no_prefs)
		p->prefs_changed = false;
	return 0;
}

/* A forward other hosts can reach needs the waiver of open proxies
 * (--proxy-open): anyone who reaches this host reaches that mesh service
 * as this node, and a forward has no credentials. Waived, it is said. */
static int nctl_check_forwards(const struct node_ctl_prep *p, char *err, size_t errlen)
{
	struct fwd_list fl;
	char ferr[200];
	if (!p->a.forwards || !fwd_parse(p->a.forwards, &fl, ferr, sizeof(ferr)))
		return 0;
	bool open = p->a.proxy_open && !strcmp(p->a.proxy_open, "yes");
	for (size_t i = 0; i < fl.n; i++) {
		const struct fwd_item *f = &fl.item[i];
		if (fwd_loopback(f))
			continue;
		if (!open) {
			snprintf(
			    err, errlen,
			    "--forward: %s:%u can be reached from other hosts (anyone "
			    "who reaches it reaches %s:%u in the mesh as this node): "
			    "bind 127.0.0.1, or add --proxy-open (MESH_PROXY_OPEN=yes) "
			    "to allow it on purpose",
			    f->addr, f->port, f->host, f->host_port);
			return -1;
		}
		log_warn("--forward: %s:%u is reachable from other hosts: anyone who "
		         "reaches it reaches %s:%u in the mesh as this node%s",
		         f->addr, f->port, f->host, f->host_port,
		         p->open_kept ? " (allowed by a kept --proxy-open; "
		                        "--no-proxy-open ends it)"
		                      : "");
	}
	return 0;
}

/* A proxy open to other hosts without credentials because of a
 * --proxy-open kept from an earlier run is said at every start: the
 * waiver is easy to forget. */
static void nctl_warn_kept_open(const struct node_ctl_prep *p, const struct config *cfg)
{
	if (!p->open_kept)
		return;
	for (size_t i = 0; i < cfg->n_socks5; i++)
		if (!cfg->socks5[i].username &&
		    !cfg_listen_is_loopback(&cfg->socks5[i].bind))
			log_warn("the SOCKS5 proxy %s is open without credentials: kept "
			         "from an earlier --proxy-open; --no-proxy-open ends it",
			         p->a.socks5 ? p->a.socks5 : "(from --config)");
	for (size_t i = 0; i < cfg->n_http; i++)
		if (!cfg->http[i].username && !cfg_listen_is_loopback(&cfg->http[i].bind))
			log_warn("the HTTP proxy %s is open without credentials: kept "
			         "from an earlier --proxy-open; --no-proxy-open ends it",
			         p->a.http_proxy ? p->a.http_proxy : "(from --config)");
}

/* --ephemeral: nothing is kept, so there is nothing to resume and no
 * directory to name; a fresh one holds this run's keys and files. */
static int nctl_prep_ephemeral(struct node_ctl_prep *p, char *err, size_t errlen,
                               bool *usage)
{
	if (p->a.state_dir) {
		snprintf(err, errlen,
		         "--ephemeral keeps no state, and a state directory (%s) is "
		         "set: drop one of them (a node with a state directory "
		         "resumes after a restart; an ephemeral one joins afresh and "
		         "logs out when stopped)",
		         p->a.state_dir);
		*usage = true;
		return -1;
	}
	if (!p->a.join_token) {
		snprintf(err, errlen,
		         "--ephemeral needs --join TOKEN: an ephemeral node keeps no "
		         "state to resume from");
		*usage = true;
		return -1;
	}
	if (p->a.eph_dir) { /* the caller's: kept across in-process restarts */
		p->a.state_dir = p->a.eph_dir;
		return 0;
	}
	if (node_state_make_ephemeral(p->eph_dir, sizeof(p->eph_dir), err, errlen) != 0)
		return -1;
	p->a.state_dir = p->eph_dir;
	return 0;
}

struct node_ctl_prep *node_ctl_prepare(const struct node_ctl_args *a, char *err,
                                       size_t errlen, bool *usage)
{
	*usage = false;
	struct node_ctl_prep *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->a = *a;
	p->map.type = CTL_MSG_MAP_FULL;
	if (nctl_check_args(a, false, err, errlen) != 0) {
		*usage = true;
		goto fail;
	}
	if (a->ephemeral && nctl_prep_ephemeral(p, err, errlen, usage) != 0)
		goto fail;
	const char *dir = p->a.state_dir;
	if (nctl_merge_prefs(p, err, errlen) != 0) {
		*usage = true;
		goto fail;
	}
	if (a->hostname) {
		if (!hostname_valid(a->hostname, strlen(a->hostname)) ||
		    strlen(a->hostname) >= sizeof(p->hostname)) {
			snprintf(err, errlen,
			         "--hostname %s: not a host name (letters, digits, '-')",
			         a->hostname);
			*usage = true;
			goto fail;
		}
		snprintf(p->hostname, sizeof(p->hostname), "%s", a->hostname);
	}
	if (a->join_token && nctl_prep_token(p, a->join_token, err, errlen) != 0) {
		*usage = true;
		goto fail;
	}
	char xerr[160];
	if (!expose_parse(p->a.expose ? p->a.expose : "none", &p->expose, xerr,
	                  sizeof(xerr))) {
		snprintf(err, errlen, "%s", xerr);
		*usage = true;
		goto fail;
	}
	struct config check; /* --socks5, --http-proxy, --config: before DIR is touched */
	if (node_ctl_build_config(p, NULL, &check, err, errlen) != 0) {
		*usage = true;
		goto fail;
	}
	nctl_warn_kept_open(p, &check);
	config_free(&check);
	if (nctl_check_forwards(p, err, errlen) != 0) {
		*usage = true;
		goto fail;
	}
	if (node_state_open(dir, err, errlen) != 0)
		goto fail;
	if (a->join_token) {
		if (node_state_bind_control(dir, &p->server, err, errlen) != 0)
			goto fail;
	} else {
		int r = node_state_load_control(dir, &p->server, err, errlen);
		if (r == -ENOENT) {
			snprintf(
			    err, errlen,
			    "%s has not joined a mesh yet: run `mesh-proxy up --join "
			    "TOKEN --state %s` (mesh-control --data DIR token prints "
			    "a token)",
			    dir, dir);
			*usage = true;
		}
		if (r != 0)
			goto fail;
	}
	if (node_state_keys(dir, &p->keys, NULL, err, errlen) != 0)
		goto fail;
	if (p->prefs_changed && node_state_save_prefs(dir, &p->prefs, err, errlen) != 0)
		goto fail;
	char serr[256];
	int r = node_state_load_self(dir, &p->self, serr, sizeof(serr));
	if (r == 0)
		p->have_self = true;
	else if (r != -ENOENT)
		log_warn("%s; registering again", serr);
	r = node_state_load_map(dir, &p->map, serr, sizeof(serr));
	if (r == 0)
		p->have_map = true;
	else if (r != -ENOENT)
		log_warn("%s", serr);
	if (!a->hostname && p->have_self) /* keep the name we registered with */
		snprintf(p->hostname, sizeof(p->hostname), "%s", p->self.name);
	else if (!a->hostname)
		nctl_default_hostname(p->hostname, sizeof(p->hostname));
	/* Joined before: the token's auth key is still sent (the client wipes
	 * it after the first "ok"). The server ignores it for a node in good
	 * standing and uses it to re-authorise an expired one in place, with
	 * its name and addresses. */
	if (p->have_self && p->auth_key[0])
		log_info("%s is already joined as %s; resuming (the token's auth key "
		         "re-authorises it if it expired)",
		         dir, p->self.name);
	return p;
fail:
	node_ctl_prep_free(p);
	return NULL;
}

/* True when UDP port (IPv4 and IPv6 wildcard) can be bound now. */
static bool nctl_port_free(uint16_t port)
{
	bool ok = true;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (fd < 0 || bind(fd, (struct sockaddr *)&s4, sizeof(s4)) != 0)
		ok = false;
	if (fd >= 0)
		close(fd);
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) { /* no IPv6 on the host: fine */
		int one = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
		                          .sin6_port = htons(port)};
		if (bind(fd, (struct sockaddr *)&s6, sizeof(s6)) != 0 &&
		    errno == EADDRINUSE)
			ok = false;
		close(fd);
	}
	return ok;
}

/* Reads the optional --config file; [Interface] belongs to the state. */
static int nctl_read_config(const char *path, char **out, size_t *len, char *err,
                            size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	char *buf = NULL;
	size_t cap = 0, n = 0;
	char line[4096];
	int ln = 0;
	while (fgets(line, sizeof(line), f)) {
		ln++;
		const char *s = line + strspn(line, " \t");
		if (strncasecmp(s, "[Interface]", 11) == 0 ||
		    strncasecmp(s, "WGConfig", 8) == 0) {
			snprintf(
			    err, errlen,
			    "%s:%d: with --state, the node's [Interface] (key, "
			    "addresses) comes from the state directory; remove "
			    "[Interface] and WGConfig (peers and front-ends may stay)",
			    path, ln);
			fclose(f);
			free(buf);
			return -1;
		}
		size_t l = strlen(line);
		if (n + l + 1 > cap) {
			cap = (n + l + 1) * 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				fclose(f);
				free(buf);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			buf = nb;
		}
		memcpy(buf + n, line, l);
		n += l;
	}
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
}

/* --socks5 PORT (digits only) binds 127.0.0.1:PORT: loopback unless an
 * address is asked for. */
static const char *nctl_bind_spec(const char *spec, char *buf, size_t cap)
{
	if (spec && !strcmp(spec, "off"))
		return NULL;
	if (!spec || !spec[0] || strspn(spec, "0123456789") != strlen(spec))
		return spec;
	snprintf(buf, cap, "127.0.0.1:%s", spec);
	return buf;
}

/* The --forward items as [TCPClientTunnel] / [UDPClientTunnel] sections
 * appended to buf. */
static int nctl_forwards_ini(const char *spec, char *buf, size_t *n, size_t cap,
                             char *err, size_t errlen)
{
	struct fwd_list fl;
	char ferr[200];
	if (!fwd_parse(spec, &fl, ferr, sizeof(ferr))) {
		snprintf(err, errlen, "--forward: %s", ferr);
		return -1;
	}
	size_t k = fwd_ini(&fl, buf + *n, cap - *n);
	if (fl.n && !k) {
		snprintf(err, errlen, "--forward: too long");
		return -1;
	}
	*n += k;
	return 0;
}

/* One of our front-ends (the last of its kind: ours follow the --config
 * file's): the credentials, or a refusal when other hosts could reach it
 * without any and --proxy-open does not waive that. */
static int nctl_front_cred(const struct node_ctl_prep *p, const char *flag,
                           const char *spec, const struct cfg_listen *bind, char **user,
                           char **pass, char *err, size_t errlen)
{
	const struct node_ctl_args *a = &p->a;
	/* Only a password kept from before the 8-byte minimum is this short
	 * (nctl_check_args): other hosts could guess it online (the
	 * front-ends do not limit failed logins); on loopback it is warned
	 * (nctl_front_creds). */
	if (a->proxy_user && strlen(a->proxy_password) < 8 &&
	    !cfg_listen_is_loopback(bind)) {
		snprintf(err, errlen,
		         "%s %.100s can be reached from other hosts and the kept proxy "
		         "password is shorter than 8 bytes: set a new one with "
		         "--proxy-password-file FILE, or bind 127.0.0.1",
		         flag, spec);
		return -1;
	}
	if (a->proxy_user) {
		*user = strdup(a->proxy_user);
		*pass = strdup(a->proxy_password);
		if (!*user || !*pass) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	bool open = a->proxy_open && !strcmp(a->proxy_open, "yes");
	if (open || cfg_listen_is_loopback(bind))
		return 0;
	snprintf(err, errlen,
	         "%s %.100s can be reached from other hosts and has no credentials: "
	         "give --proxy-user NAME and --proxy-password-file FILE (or "
	         "MESH_PROXY_USER and MESH_PROXY_PASSWORD[_FILE]), bind 127.0.0.1, "
	         "or add --proxy-open (MESH_PROXY_OPEN=yes) to run an open proxy on "
	         "purpose",
	         flag, spec);
	return -1;
}

static int nctl_front_creds(const struct node_ctl_prep *p, struct config *cfg,
                            size_t user_socks5, size_t user_http, char *err,
                            size_t errlen)
{
	const struct node_ctl_args *a = &p->a;
	if (a->proxy_user && !a->proxy_password) {
		snprintf(
		    err, errlen,
		    "--proxy-user %.100s needs a password: --proxy-password-file FILE "
		    "(or MESH_PROXY_PASSWORD / MESH_PROXY_PASSWORD_FILE)",
		    a->proxy_user);
		return -1;
	}
	if (!a->proxy_user && a->proxy_password) {
		snprintf(err, errlen,
		         "a proxy password needs --proxy-user NAME (or "
		         "MESH_PROXY_USER)");
		return -1;
	}
	/* ours are every section after the --config file's */
	for (size_t i = user_socks5; i < cfg->n_socks5; i++) {
		struct cfg_socks5 *f = &cfg->socks5[i];
		if (nctl_front_cred(p, "--socks5", a->socks5 ? a->socks5 : "?", &f->bind,
		                    &f->username, &f->password, err, errlen) != 0)
			return -1;
	}
	for (size_t i = user_http; i < cfg->n_http; i++) {
		struct cfg_http *f = &cfg->http[i];
		if (nctl_front_cred(p, "--http-proxy",
		                    a->http_proxy ? a->http_proxy : "?", &f->bind,
		                    &f->username, &f->password, err, errlen) != 0)
			return -1;
	}
	bool ours = cfg->n_socks5 > user_socks5 || cfg->n_http > user_http;
	if (ours && a->proxy_user && strlen(a->proxy_password) < 8)
		log_warn("the kept proxy password is shorter than 8 bytes (RFC 1929 "
		         "allows it, new ones must be longer): set a longer one with "
		         "--proxy-password-file");
	return 0;
}

int node_ctl_build_config(const struct node_ctl_prep *p, const struct node_self *self,
                          struct config *cfg, char *err, size_t errlen)
{
	char *user = NULL;
	size_t ulen = 0;
	const char *cpath = p->a.config_path;
	if (cpath && nctl_read_config(cpath, &user, &ulen, err, errlen) != 0) {
		memset(cfg, 0, sizeof(*cfg));
		return -1;
	}
	char key[64], v4[INET_ADDRSTRLEN] = "100.64.0.0", v6[INET6_ADDRSTRLEN] = "";
	sodium_bin2base64(key, sizeof(key), p->keys.node, CTL_KEY_LEN,
	                  sodium_base64_VARIANT_ORIGINAL);
	if (self) {
		inet_ntop(AF_INET, self->ipv4, v4, sizeof(v4));
		inet_ntop(AF_INET6, self->ipv6, v6, sizeof(v6));
	}
	size_t cap = ulen + 1024 + FWD_MAX * (FWD_HOST_MAX + 128);
	int r;
	char *buf = malloc(cap);
	if (!buf) {
		free(user);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	size_t n = 0;
	if (user)
		memcpy(buf, user, ulen), n = ulen;
	n += (size_t)snprintf(buf + n, cap - n,
	                      "\n[Interface]\nPrivateKey = %s\nAddress = %s/32\n", key,
	                      v4);
	if (v6[0])
		n += (size_t)snprintf(buf + n, cap - n, "Address = %s/128\n", v6);
	if (self && self->listen_port) { /* peers know it from the last map */
		if (nctl_port_free(self->listen_port))
			n += (size_t)snprintf(buf + n, cap - n, "ListenPort = %u\n",
			                      self->listen_port);
		else
			log_warn("UDP port %u (used last time) is taken; using another",
			         self->listen_port);
	}
	const char *direct = p->a.direct ? p->a.direct : "all";
	enum cfg_direct dm;
	char s5[160], hp[160];
	/* Checked here too, whatever the source (a flag, a variable or
	 * prefs.json): a value is one INI line or refused, never cut. */
	if (nctl_check_listen("--socks5", p->a.socks5, err, errlen) ||
	    nctl_check_listen("--http-proxy", p->a.http_proxy, err, errlen) ||
	    (!cfg_direct_parse(direct, &dm) &&
	     snprintf(err, errlen, "--direct: want public, all or no") > 0)) {
		r = -1;
		memset(cfg, 0, sizeof(*cfg));
		goto out;
	}
	const char *socks5 = nctl_bind_spec(p->a.socks5, s5, sizeof(s5));
	const char *http = nctl_bind_spec(p->a.http_proxy, hp, sizeof(hp));
	/* AllowOpen: the open-proxy check is nctl_front_creds's, in flag terms. */
	if (socks5)
		n += (size_t)snprintf(buf + n, cap - n,
		                      "[Socks5]\nBindAddress = %s\nDirect = %s\n"
		                      "AllowOpen = yes\n",
		                      socks5, direct);
	if (http)
		n += (size_t)snprintf(buf + n, cap - n,
		                      "[http]\nBindAddress = %s\nDirect = %s\n"
		                      "AllowOpen = yes\n",
		                      http, direct);
	if (p->a.forwards &&
	    nctl_forwards_ini(p->a.forwards, buf, &n, cap, err, errlen)) {
		r = -1;
		memset(cfg, 0, sizeof(*cfg));
		goto out;
	}
	r = config_load_text(cpath ? cpath : "--socks5/--http-proxy/--forward", buf, n,
	                     cfg, err, errlen);
	/* The user's sections come first, ours (at most one of each kind)
	 * last: counted by the parser itself, whatever it accepts (a BOM,
	 * odd spacing) that a text scan would miss. */
	if (r == 0 && nctl_front_creds(p, cfg, cfg->n_socks5 - (socks5 ? 1 : 0),
	                               cfg->n_http - (http ? 1 : 0), err, errlen) != 0) {
		config_free(cfg);
		r = -1;
	}
out:
	sodium_memzero(key, sizeof(key));
	sodium_memzero(buf, n);
	free(buf);
	free(user);
	return r;
}

int node_ctl_config(const struct node_ctl *m, const struct node_self *self,
                    struct config *cfg, char *err, size_t errlen)
{
	return node_ctl_build_config(m->p, self, cfg, err, errlen);
}

/* ---- the control client ---- */

/* What an ephemeral node (a container, often restarted by an
 * orchestrator) refused at registration should do instead. */
static const char *nctl_ephemeral_hint(uint32_t code, const char *dflt)
{
	switch (code) {
	case CTL_REASON_AUTH_KEY_USED:
		return "an ephemeral node joins afresh on every start, so a "
		       "single-use key serves one start only: make a reusable one with "
		       "`mesh-control --data DIR token --reusable --ephemeral` for "
		       "containers, or keep a state directory (--state DIR) so that "
		       "a restart resumes";
	case CTL_REASON_AUTH_KEY_UNKNOWN:
	case CTL_REASON_AUTH_KEY_EXPIRED:
	case CTL_REASON_AUTH_KEY_REVOKED:
	case CTL_REASON_AUTH_REQUIRED:
		return "get a new token (`mesh-control --data DIR token --reusable "
		       "--ephemeral` for containers) and start the node with it; "
		       "restarting with this one fails the same way";
	case CTL_REASON_NODE_REMOVED:
		return "this ephemeral node was removed by mesh-control (offline "
		       "longer than its ephemeral timeout, or by an admin); started "
		       "again it joins afresh";
	default:
		return dflt;
	}
}

static void nctl_log_refused(struct node_ctl *m, const char *detail,
                             const struct ctl_register_resp *resp)
{
	const char *what;
	switch (resp ? resp->code : 0) {
	case CTL_REASON_AUTH_KEY_UNKNOWN:
	case CTL_REASON_AUTH_KEY_EXPIRED:
	case CTL_REASON_AUTH_KEY_REVOKED:
	case CTL_REASON_AUTH_KEY_USED:
	case CTL_REASON_AUTH_REQUIRED:
		what = "get a new token (mesh-control --data DIR token) and run "
		       "`mesh-proxy up --join TOKEN --state DIR` again";
		break;
	case CTL_REASON_NODE_EXPIRED:
		what = "get a new token (mesh-control --data DIR token) and run "
		       "`mesh-proxy up --join TOKEN --state DIR` with this same state "
		       "directory: the node keeps its name and addresses";
		break;
	case CTL_REASON_NODE_REMOVED:
		what = "to join again, get a new token (mesh-control --data DIR token) "
		       "and run `mesh-proxy up --join TOKEN --state DIR`";
		break;
	case CTL_REASON_KEY_CONFLICT:
		what = "another node uses this node's keys (was the state directory "
		       "copied?); join with a new --state directory";
		break;
	case CTL_REASON_UPGRADE_REQUIRED:
		what = "install a newer meshproxy on this node and start it again "
		       "with the same --state directory";
		break;
	default:
		what = "see mesh-control's log";
	}
	if (m->p->a.ephemeral) /* no state directory to come back with */
		what = nctl_ephemeral_hint(resp ? resp->code : 0, what);
	const char *why = resp && resp->reason[0] ? resp->reason : detail;
	bool both = why != detail && detail && detail[0] && strcmp(why, detail) != 0;
	log_error("mesh-control refused this node: %s%s%s; %s", why, both ? " / " : "",
	          both ? detail : "", what);
}

/* The admin approves the name the server gave (an older server gives none:
 * then the requested one) checked against this machine's key, so the
 * approval cannot land on another device's registration. */
static void nctl_log_pending(struct node_ctl *m, const struct ctl_register_resp *resp)
{
	uint8_t mk[CTL_KEY_LEN];
	char fpr[CTL_KEY_FPR_LEN + 1];
	crypto_scalarmult_base(mk, m->p->keys.machine);
	ctl_key_fpr(mk, fpr);
	const char *name = resp && resp->name[0] ? resp->name : m->p->hostname;
	log_info("waiting for approval as %s (key %s): on the mesh-control host run "
	         "`mesh-control --data DIR nodes approve %s --key %s`",
	         name, fpr, name, fpr);
}

_Static_assert(CTL_CLIENT_ADDRS_MAX == CTL_TOKEN_ADDRS_MAX,
               "a token's control addresses all fit in the client");

/* The control address the client is on or dials next, "host:port". */
static const char *nctl_ctl_addr(const struct node_ctl *m, char *buf, size_t cap)
{
	struct ctl_client_status cs;
	ctl_client_get_status(m->client, &cs);
	snprintf(buf, cap, "%s", cs.addr);
	return buf;
}

/* In BACKOFF: the next control address is dialled at once (not a wait). */
static bool nctl_next_addr_now(const struct node_ctl *m)
{
	struct ctl_client_status cs;
	ctl_client_get_status(m->client, &cs);
	return cs.n_addrs > 1 && cs.next_attempt_ms == 0;
}

static void nctl_registered(struct node_ctl *m, const struct ctl_register_resp *resp)
{
	char at[CTL_CLIENT_ADDR_TEXT];
	struct node_self s;
	char err[256], v4[INET_ADDRSTRLEN], v6[INET6_ADDRSTRLEN];
	node_self_from_resp(&s, resp);
	s.listen_port = m->self.listen_port;
	inet_ntop(AF_INET, s.ipv4, v4, sizeof(v4));
	inet_ntop(AF_INET6, s.ipv6, v6, sizeof(v6));
	bool first = !m->have_self;
	if (first || memcmp(&s, &m->self, sizeof(s)) != 0) {
		if (node_state_save_self(m->p->a.state_dir, &s, err, sizeof(err)) != 0)
			log_warn("%s", err);
	}
	if (first)
		log_info("joined mesh %s as %s (%s, %s)", s.domain, s.name, v4, v6);
	else
		log_info("connected to mesh-control %s as %s (%s, %s)",
		         nctl_ctl_addr(m, at, sizeof(at)), s.name, v4, v6);
	if (m->dataplane && (memcmp(s.ipv4, m->self.ipv4, 4) != 0 ||
	                     memcmp(s.ipv6, m->self.ipv6, 16) != 0)) {
		/* E.g. the node was removed and joined again: the data plane
		 * runs on the old addresses; start it over on the new ones. */
		log_warn("mesh-control assigned new addresses (%s, %s); restarting the "
		         "node with them",
		         v4, v6);
		m->hooks.stop(m->hooks.ctx, NODE_RC_RESTART);
		return;
	}
	if (!m->dataplane)
		m->self = s;
	else
		memcpy(m->self.name, s.name, sizeof(s.name));
	m->have_self = true;
	if (!m->dataplane) {
		if (m->hooks.start_dataplane(m->hooks.ctx, &m->self) != 0)
			m->hooks.stop(m->hooks.ctx, 1);
	}
}

static void nctl_on_state(void *ctx, enum ctl_client_state st, const char *detail,
                          const struct ctl_register_resp *resp)
{
	struct node_ctl *m = ctx;
	const char *d = detail ? detail : "";
	char at[CTL_CLIENT_ADDR_TEXT];
	switch (st) {
	case CTL_CLIENT_ONLINE:
		if (resp && resp->status == CTL_REG_OK)
			nctl_registered(m, resp);
		else if (m->logged != st)
			log_info("control: online again (%s)",
			         nctl_ctl_addr(m, at, sizeof(at)));
		break;
	case CTL_CLIENT_PENDING:
		if (m->logged != st)
			nctl_log_pending(m, resp);
		break;
	case CTL_CLIENT_REFUSED:
		nctl_log_refused(m, d, resp);
		m->hooks.stop(m->hooks.ctx, 1);
		break;
	case CTL_CLIENT_LOGGED_OUT: /* node_ctl_logout: done, exit 0 */
		log_info("mesh-control: %s", d);
		m->hooks.stop(m->hooks.ctx, 0);
		break;
	case CTL_CLIENT_BACKOFF:
		if (d && !strncmp(d, "our network changed", 19)) /* a redial */
			log_info("control: reconnecting to mesh-control at %s (%s)",
			         nctl_ctl_addr(m, at, sizeof(at)), d);
		else if (nctl_next_addr_now(m)) /* another control address, at once */
			log_warn("control: lost mesh-control (%s)", d);
		else if (m->logged != st)
			log_warn("control: cannot reach mesh-control (%s); retrying "
			         "with backoff%s",
			         d,
			         m->dataplane ? "; peers keep working with the last map"
			                      : "");
		else
			log_debug("control: still unreachable (%s)", d);
		break;
	default:
		log_debug("control: %s %s", ctl_client_state_name(st), d);
		return; /* transient states do not count as "logged" */
	}
	m->logged = st;
}

/* The paths after a map update: a delta tells magicsock about its peers
 * only; a full map, or a delta that names much of the map, sets it all. */
static int nctl_paths_update(struct node_ctl *m, const struct ctl_map_full *map,
                             const struct ctl_map_change *chg,
                             const uint8_t (*gone)[CTL_KEY_LEN], size_t n_gone)
{
	if (!gone || chg->n_changed + chg->n_removed > NCTL_PATHS_DELTA_MAX)
		return magicsock_set_map(m->ms, map);
	const struct ctl_peer **peers = calloc(chg->n_changed + 1, sizeof(*peers));
	if (!peers)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < chg->n_changed; i++)
		if ((peers[n] = ctl_map_find(map, chg->changed[i])))
			n++;
	int r = magicsock_update_peers(m->ms, map, peers, n, gone, n_gone);
	free(peers);
	return r;
}

/* lwIP's connections, for the inbound filter. */
static bool nctl_tcp_conn(void *ctx, const struct ns_addr *local, uint16_t lport,
                          const struct ns_addr *remote, uint16_t rport)
{
	(void)ctx;
	return ns_tcp_conn_exists(local, lport, remote, rport);
}

/* The policy part of map into the filter (copied: the map lives only
 * during the callback), logged when it changes. */
/* Whether remote may still have opened our lport (ns_tcp_revoke). */
static bool nctl_tcp_keep(void *ctx, const struct ns_addr *remote, uint16_t lport)
{
	return node_acl_filter_allows(ctx, CTL_FILTER_TCP, remote, lport);
}

/* A new filter ends the inbound TCP connections it would not let open
 * now (a UDP conversation ends by itself: replies of a service here open
 * no flow, node/acl.h). */
static void nctl_acl_revoke(struct node_ctl *m)
{
	unsigned n = ns_tcp_revoke(nctl_tcp_keep, m->acl);
	if (n == 0)
		return;
	node_acl_count_revoked(m->acl, n);
	log_info("policy: reset %u inbound TCP connection(s) the new policy no "
	         "longer allows",
	         n);
}

static void nctl_acl_apply(struct node_ctl *m, const struct ctl_map_full *map)
{
	bool was = node_acl_active(m->acl);
	if (node_acl_set(m->acl, map->has_filter, &map->filter, map->reach,
	                 map->n_reach) != 0) {
		nctl_acl_revoke(m); /* failing closed: it admits nothing */
		return;
	}
	if (map->has_filter)
		nctl_acl_revoke(m);
	if (!map->has_filter) {
		if (was)
			log_info("policy: none (mesh-control has no policy): every peer "
			         "may reach every exposed port again");
		return;
	}
	struct acl_stats st;
	node_acl_stats(m->acl, &st);
	log_info("policy: %s: inbound filter tcp %zu, udp %zu, icmp %zu source "
	         "block(s); reach to %zu peer(s)",
	         was ? "updated" : "active", st.n_blocks[CTL_FILTER_TCP],
	         st.n_blocks[CTL_FILTER_UDP], st.n_blocks[CTL_FILTER_ICMP], st.n_reach);
}

static void nctl_on_map(void *ctx, const struct ctl_map_full *map,
                        const struct ctl_map_change *delta)
{
	struct node_ctl *m = ctx;
	struct np_result r;
	/* After a failed update the view is behind: the whole map mends it. */
	struct ctl_map_change all = {.full = true};
	const struct ctl_map_change *chg = m->np_stale ? &all : delta;
	/* The policy first: it does not wait for the peers (nor fail with them). */
	if (delta->full || delta->policy) {
		nctl_acl_apply(m, map);
		/* netmap.json at the next tick, not within a minute: a node
		 * restarted meanwhile would apply the older (maybe looser)
		 * filter until mesh-control answers. */
		m->policy_dirty = true;
	}
	bool domain_changed = strcmp(m->np.domain, map->dns_domain) != 0;
	/* The keys that leave, before the view forgets them (for the paths). */
	uint8_t(*gone)[CTL_KEY_LEN] = NULL;
	size_t n_gone = 0;
	if (m->ms && !chg->full &&
	    chg->n_changed + chg->n_removed <= NCTL_PATHS_DELTA_MAX &&
	    (gone = calloc(chg->n_changed + chg->n_removed + 1, CTL_KEY_LEN)))
		n_gone = node_peers_gone_keys(&m->np, map, chg, gone);
	if (node_peers_update(&m->np, m->dataplane ? m->wg : NULL, map, chg,
	                      nctl_now_ms(), &r) != 0) {
		/* the view stays the previous map's until the whole one goes in */
		log_warn("map v%llu: out of memory; the peers catch up with the "
		         "next map",
		         (unsigned long long)map->version);
		free(gone);
		m->np_stale = true;
		return;
	}
	m->np_stale = false;
	if (domain_changed && m->magicdns)
		magicdns_set_domain(m->magicdns, map->dns_domain);
	if (m->ms && nctl_paths_update(m, map, chg, (const uint8_t(*)[CTL_KEY_LEN])gone,
	                               n_gone) != 0) {
		log_warn("map v%llu: out of memory for the paths; they catch up with the "
		         "next map",
		         (unsigned long long)map->version);
		m->np_stale = true;
	}
	free(gone);
	if (chg->full || r.added || r.removed)
		log_info("map v%llu: %zu peer(s)%s (+%zu ~%zu -%zu)",
		         (unsigned long long)map->version, map->n_peers,
		         chg->full ? ", full" : "", r.added, r.updated, r.removed);
	else
		log_debug("map v%llu: %zu changed", (unsigned long long)map->version,
		          delta->n_changed);
	m->map_dirty = true;
}

static const struct ctl_client_callbacks nctl_callbacks = {
    .on_state = nctl_on_state,
    .on_map = nctl_on_map,
};

bool node_ctl_portmap_on(const struct node_ctl_prep *p, const struct config *cfg)
{
	return cfg->portmap >= 0 && !(p->a.portmap && !strcmp(p->a.portmap, "no"));
}

bool node_ctl_birthday_on(const struct node_ctl_prep *p, const struct config *cfg)
{
	return cfg->birthday >= 0 && !(p->a.birthday && !strcmp(p->a.birthday, "no"));
}

struct node_ctl *node_ctl_new(struct event_base *base, struct evdns_base *dns,
                              struct node_ctl_prep *p, const struct config *cfg,
                              const struct node_ctl_hooks *hooks, char *err,
                              size_t errlen)
{
	struct node_ctl *m = calloc(1, sizeof(*m));
	uint8_t(*keys)[CTL_KEY_LEN] = calloc(cfg->n_peers + 1, CTL_KEY_LEN);
	if (!m || !keys) {
		free(m);
		free(keys);
		node_ctl_prep_free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->base = base;
	m->dns = dns;
	m->p = p;
	m->hooks = *hooks;
	m->have_self = p->have_self;
	m->self = p->self;
	m->portmap_off = !node_ctl_portmap_on(p, cfg);
	m->birthday_off = !node_ctl_birthday_on(p, cfg);
	m->acl = node_acl_new(nctl_tcp_conn, NULL);
	for (size_t i = 0; i < cfg->n_peers; i++)
		memcpy(keys[i], cfg->peers[i].public_key, CTL_KEY_LEN);
	crypto_scalarmult_base(keys[cfg->n_peers], p->keys.node);
	int r = node_peers_init(&m->np, (const uint8_t(*)[CTL_KEY_LEN])keys,
	                        cfg->n_peers + 1);
	free(keys);
	if (r != 0 || !m->acl) {
		node_ctl_free(m);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (p->have_map) {
		node_peers_reconcile(&m->np, NULL, &p->map.u.map, nctl_now_ms(), NULL);
		nctl_acl_apply(m, &p->map.u.map); /* the policy holds across a restart */
		log_info("last map (v%llu, %zu peers) loaded from %s/netmap.json",
		         (unsigned long long)p->map.u.map.version, p->map.u.map.n_peers,
		         p->a.state_dir);
		/* kept until the data plane starts: its relays seed the paths */
	}
	struct ctl_client_addr more[CTL_TOKEN_ADDRS_MAX - 1];
	for (size_t i = 0; i < p->server.n_more; i++)
		more[i] = (struct ctl_client_addr){p->server.more[i].host,
		                                   p->server.more[i].port};
	struct ctl_client_config cc = {
	    .base = base,
	    .dns = dns,
	    .host = p->server.host,
	    .port = p->server.port,
	    .more = more,
	    .n_more = p->server.n_more,
	    .hostname = p->hostname,
	    .os = "linux",
	    .version = NCTL_VERSION,
	    .auth_key = p->auth_key[0] ? p->auth_key : NULL,
	    .ephemeral = p->a.ephemeral,
	    .cb = &nctl_callbacks,
	    .ctx = m,
	};
	memcpy(cc.server_key, p->server.server_key, CTL_KEY_LEN);
	memcpy(cc.machine_priv, p->keys.machine, CTL_KEY_LEN);
	crypto_scalarmult_base(cc.node_key, p->keys.node);
	crypto_scalarmult_base(cc.disco_key, p->keys.disco);
	m->client = ctl_client_new(&cc, err, errlen);
	sodium_memzero(cc.machine_priv, sizeof(cc.machine_priv));
	sodium_memzero(p->auth_key, sizeof(p->auth_key));
	if (!m->client) {
		node_ctl_free(m);
		return NULL;
	}
	log_info("mesh-control %s:%u%s; state %s%s; name %s%s", p->server.host,
	         p->server.port, p->server.n_more ? " (and further addresses)" : "",
	         p->a.state_dir, p->a.ephemeral ? " (ephemeral: removed at exit)" : "",
	         p->hostname, m->have_self ? " (resuming)" : "");
	return m;
}

/* ---- our endpoints ---- */

int nctl_gather_endpoints(uint16_t port, struct ctl_endpoints *eps)
{
	struct nctl_addrs all;
	int r = nctl_gather_addrs(&all);
	memset(eps, 0, sizeof(*eps));
	/* More than NCTL_ADDRS_MAX: the first NCTL_EP_MAX are announced all
	 * the same. */
	for (size_t i = 0; (r == 0 || r == -E2BIG) && i < all.n && eps->n < NCTL_EP_MAX;
	     i++) {
		struct ctl_endpoint *e = &eps->ep[eps->n++];
		e->family = all.a[i].family;
		e->port = port;
		memcpy(e->addr, all.a[i].addr, 16);
	}
	struct ctl_endpoint *lo = &eps->ep[eps->n++];
	memset(lo, 0, sizeof(*lo));
	lo->family = 4;
	lo->port = port;
	lo->addr[0] = 127;
	lo->addr[3] = 1;
	return r == -E2BIG ? 0 : r;
}

/* The public addresses STUN saw (the WireGuard port's mapping on the NAT)
 * join the local ones, first: they are what a peer elsewhere reaches. */
static void nctl_add_public(struct node_ctl *m, struct ctl_endpoints *eps)
{
	struct sockaddr_storage g[2];
	magicsock_public_addrs(m->ms, &g[0], &g[1]);
	for (int i = 1; i >= 0; i--) {
		struct ctl_endpoint e;
		memset(&e, 0, sizeof(e));
		if (g[i].ss_family == AF_INET) {
			const struct sockaddr_in *s = (const void *)&g[i];
			e.family = 4;
			e.port = ntohs(s->sin_port);
			memcpy(e.addr, &s->sin_addr, 4);
		} else if (g[i].ss_family == AF_INET6) {
			const struct sockaddr_in6 *s = (const void *)&g[i];
			e.family = 6;
			e.port = ntohs(s->sin6_port);
			memcpy(e.addr, &s->sin6_addr, 16);
		} else {
			continue;
		}
		bool dup = false;
		for (size_t k = 0; k < eps->n; k++)
			dup |= memcmp(&eps->ep[k], &e, sizeof(e)) == 0;
		if (dup || !e.port)
			continue;
		if (eps->n == CTL_ENDPOINTS_MAX)
			eps->n--; /* the last local one gives way */
		memmove(&eps->ep[1], &eps->ep[0], eps->n * sizeof(eps->ep[0]));
		eps->ep[0] = e;
		eps->n++;
	}
}

/* The public address:port the router mapped for us (portmap), right after
 * the STUN addresses (nctl_add_public puts those first): it is reachable
 * even when our NAT is symmetric. */
static void nctl_add_portmap(struct node_ctl *m, struct ctl_endpoints *eps)
{
	struct sockaddr_storage ss;
	if (!portmap_endpoint(m->pm, &ss))
		return;
	const struct sockaddr_in *s = (const void *)&ss;
	struct ctl_endpoint e;
	memset(&e, 0, sizeof(e));
	e.family = 4;
	e.port = ntohs(s->sin_port);
	memcpy(e.addr, &s->sin_addr, 4);
	for (size_t k = 0; k < eps->n; k++)
		if (memcmp(&eps->ep[k], &e, sizeof(e)) == 0)
			return;
	if (eps->n == CTL_ENDPOINTS_MAX)
		eps->n--; /* the last local one gives way */
	memmove(&eps->ep[1], &eps->ep[0], eps->n * sizeof(eps->ep[0]));
	eps->ep[0] = e;
	eps->n++;
}

static void nctl_endpoints(struct node_ctl *m, bool force)
{
	struct ctl_endpoints eps;
	/* Unlisted (EMFILE, ENOMEM): not "no address" to announce. */
	if (nctl_gather_endpoints(wg_device_port(m->wg), &eps) < 0)
		return;
	/* Our local addresses moved (another network): the router's mapping
	 * may be gone or another router may offer one. */
	if (m->pm && memcmp(&eps, &m->local_eps, sizeof(eps)) != 0 && m->local_eps.n)
		portmap_network_changed(m->pm);
	m->local_eps = eps;
	nctl_add_portmap(m, &eps);
	if (m->ms) {
		magicsock_set_local_endpoints(m->ms, &eps);
		nctl_add_public(m, &eps);
		eps.home_relay = magicsock_home(m->ms);
	}
	if (!force && memcmp(&eps, &m->eps, sizeof(eps)) == 0)
		return;
	m->eps = eps;
	char list[CTL_ENDPOINTS_MAX * CTL_ADDRSTR_MAX] = "";
	size_t n = 0;
	for (size_t i = 0; i < eps.n && n < sizeof(list) - CTL_ADDRSTR_MAX; i++) {
		char one[CTL_ADDRSTR_MAX];
		ctl_endpoint_format(&eps.ep[i], one);
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? " " : "",
		                      one);
	}
	log_info("our endpoints: %s%s", list, eps.home_relay ? "" : " (no home relay)");
	if (m->client)
		ctl_client_set_endpoints(m->client, &eps);
}

/* ---- MagicDNS callbacks ---- */

static size_t nctl_magicdns_lookup(void *ctx, const char *label, struct ns_addr *out,
                                   size_t max)
{
	struct node_ctl *m = ctx;
	return node_peers_resolve(&m->np, label, out, max);
}

static bool nctl_magicdns_reverse(void *ctx, const struct ns_addr *addr, char *out,
                                  size_t cap)
{
	struct node_ctl *m = ctx;
	return node_peers_reverse(&m->np, addr, out, cap);
}

/* An exposed connection: logged with the peer's name, counted per peer. */
static void nctl_on_expose(void *ctx, const struct ns_addr *src, uint16_t port,
                           uint16_t local_port)
{
	struct node_ctl *m = ctx;
	char name[CTL_DNSNAME_MAX] = "", a[INET6_ADDRSTRLEN] = "?";
	struct np_entry *e = node_peers_by_addr(&m->np, src);
	inet_ntop(src->family, src->addr, a, sizeof(a));
	if (e) {
		e->exposed++;
		snprintf(name, sizeof(name), "%s", e->p.name);
	}
	log_info("expose: %s (%s) -> 127.0.0.1:%u%s", name[0] ? name : "a static peer", a,
	         local_port, local_port != port ? " (mesh port differs)" : "");
}

enum cfg_direct node_ctl_direct(const struct node_ctl *m)
{
	enum cfg_direct d = CFG_DIRECT_ALL;
	if (m->p->a.direct && !cfg_direct_parse(m->p->a.direct, &d))
		d = CFG_DIRECT_NO; /* cannot happen: the command line was checked */
	return d;
}

/* The home relay or the public addresses changed: tell mesh-control. */
static void nctl_paths_changed(void *ctx)
{
	struct node_ctl *m = ctx;
	nctl_endpoints(m, false);
}

/* The router's mapping of our WireGuard port (UPnP IGD, NAT-PMP, PCP),
 * unless switched off; its address joins our endpoints (nctl_add_portmap). */
static void nctl_start_portmap(struct node_ctl *m)
{
	if (m->portmap_off) {
		log_info("portmap: off (--no-portmap or PortMapping = no)");
		return;
	}
	struct portmap_config pc = {
	    .base = m->base,
	    .port = wg_device_port(m->wg),
	    .on_change = nctl_paths_changed,
	    .ctx = m,
	};
	char err[160];
	m->pm = portmap_new(&pc, err, sizeof(err));
	if (!m->pm)
		log_warn("portmap: off: %s", err);
}

/* Paths (relays, home relay, disco) for the map's peers. Without it the
 * node still works as plain WireGuard to the map's endpoints. */
static void nctl_start_paths(struct node_ctl *m)
{
	struct magicsock_config mc = {
	    .base = m->base,
	    .dns = m->dns,
	    .wg = m->wg,
	    .on_change = nctl_paths_changed,
	    .on_path = nctl_kick_on_path,
	    .ctx = m,
	    .skip_keys = (const uint8_t(*)[32])m->np.static_keys,
	    .n_skip_keys = m->np.n_static,
	    .no_birthday = m->birthday_off,
	};
	memcpy(mc.node_priv, m->p->keys.node, 32);
	crypto_scalarmult_base(mc.node_pub, m->p->keys.node);
	memcpy(mc.disco_priv, m->p->keys.disco, 32);
	crypto_scalarmult_base(mc.disco_pub, m->p->keys.disco);
	char err[160];
	m->ms = magicsock_new(&mc, err, sizeof(err));
	sodium_memzero(mc.node_priv, sizeof(mc.node_priv));
	sodium_memzero(mc.disco_priv, sizeof(mc.disco_priv));
	if (!m->ms) {
		log_warn("relays and path discovery off: %s", err);
		return;
	}
	if (m->birthday_off)
		log_info("birthday probing: off (--no-birthday or BirthdayProbing = no)");
	const struct ctl_map_full *map = m->client ? ctl_client_map(m->client) : NULL;
	if (!map && m->p->have_map)
		map = &m->p->map.u.map;
	if (map && magicsock_set_map(m->ms, map) != 0)
		log_warn("paths: out of memory");
	if (m->p->have_map) {
		ctl_msg_free(&m->p->map);
		m->p->have_map = false;
	}
}

int node_ctl_attach(struct node_ctl *m, struct wg_device *wg, const struct px_env *env,
                    const uint16_t *own_ports, size_t n_own_ports)
{
	char err[256];
	m->wg = wg;
	m->dataplane = true;
	if (m->have_self && m->self.listen_port != wg_device_port(wg)) {
		m->self.listen_port = wg_device_port(wg);
		if (node_state_save_self(m->p->a.state_dir, &m->self, err, sizeof(err)) !=
		    0)
			log_warn("%s", err);
	}
	struct np_result r;
	node_peers_apply(&m->np, wg, nctl_now_ms(), &r);
	if (r.added)
		log_info("%zu map peer(s) configured", r.added);
	struct magicdns_config mc = {
	    .base = m->base,
	    .domain = m->np.domain[0] ? m->np.domain : m->self.domain,
	    .lookup = nctl_magicdns_lookup,
	    .reverse = nctl_magicdns_reverse,
	    .ctx = m,
	    .forward = true,
	};
	m->magicdns = magicdns_new(&mc, err, sizeof(err));
	if (!m->magicdns)
		log_warn("MagicDNS (%s:%d) disabled: %s", MAGICDNS_ADDR, MAGICDNS_PORT,
		         err);
	struct px_expose_opts xo = {.on_conn = nctl_on_expose, .ctx = m};
	for (size_t i = 0; i < n_own_ports && xo.n_never < EXPOSE_NEVER_MAX; i++)
		xo.never[xo.n_never++] = own_ports[i];
	if (n_own_ports > EXPOSE_NEVER_MAX) { /* cannot keep them all out: none */
		snprintf(err, sizeof(err), "more than %d own listeners to keep out",
		         EXPOSE_NEVER_MAX);
		m->expose = NULL;
	} else {
		m->expose =
		    px_expose_new(env, &m->p->expose, NULL, &xo, err, sizeof(err));
	}
	char desc[128];
	expose_describe(&m->p->expose, desc, sizeof(desc));
	if (!m->expose && expose_any(&m->p->expose))
		log_warn("expose (%s) disabled: %s", desc, err);
	else if (m->p->expose.all)
		log_warn("expose: %s: every mesh peer reaches every TCP port on this "
		         "host's 127.0.0.1 (but this node's own proxy ports); narrow it "
		         "with --expose 22,8080",
		         desc);
	else if (expose_any(&m->p->expose))
		log_info("expose: %s (mesh connections to our address go to 127.0.0.1; "
		         "never this node's own proxy ports)",
		         desc);
	else
		log_info("expose: none (mesh peers reach no local service; --expose "
		         "22,8080 to offer some)");
	nctl_start_paths(m);
	nctl_start_portmap(m);
	nctl_endpoints(m, true);
	m->last_ep_check_ms = nctl_now_ms();
	wg_device_handshake_all(wg);
	return 0;
}

/* ---- netmap.json ----
 *
 * Only a warm-start cache (the peers of the last map, so a restart works
 * before mesh-control answers): written after the first map of a run, then
 * at most every NCTL_SAVE_MS while the map changes (at the next tick when
 * the policy changed), and at a clean exit.
 * The loop only copies the map; a thread encodes it and writes the file
 * (fsync and rename, node_state_write), so a 4 MB map and a slow disk do not
 * stall the data plane. */

struct nctl_save_job {
	pthread_t thread;
	atomic_bool done;
	char dir[NODE_STATE_PATH_MAX];
	struct ctl_map_full map; /* a copy: peers, relays, filter, reach owned */
	int rc;
	char err[256];
};

static void *nctl_save_thread(void *arg)
{
	struct nctl_save_job *j = arg;
	j->rc = node_state_save_map(j->dir, &j->map, j->err, sizeof(j->err));
	atomic_store(&j->done, true);
	return NULL;
}

/* The job's copy of the map and the job. */
static void nctl_save_job_free(struct nctl_save_job *j)
{
	free(j->map.peers);
	free(j->map.relays);
	ctl_filter_clear(&j->map.filter);
	ctl_reach_free(j->map.reach, j->map.n_reach);
	free(j);
}

/* Waits for the write in flight (now, or only when it is done) and says
 * how it went. */
static void nctl_save_reap(struct node_ctl *m, bool wait)
{
	struct nctl_save_job *j = m->save;
	if (!j || (!wait && !atomic_load(&j->done)))
		return;
	pthread_join(j->thread, NULL);
	if (j->rc != 0)
		log_warn("%s", j->err);
	else
		log_debug("netmap.json written (map v%llu, %zu peers)",
		          (unsigned long long)j->map.version, j->map.n_peers);
	m->saves++;
	nctl_save_job_free(j);
	m->save = NULL;
}

static struct nctl_save_job *nctl_save_job_new(const struct node_ctl *m,
                                               const struct ctl_map_full *map)
{
	struct nctl_save_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	snprintf(j->dir, sizeof(j->dir), "%s", m->p->a.state_dir);
	j->map = *map;
	j->map.peers = map->n_peers ? malloc(map->n_peers * sizeof(*map->peers)) : NULL;
	j->map.relays =
	    map->n_relays ? malloc(map->n_relays * sizeof(*map->relays)) : NULL;
	if ((map->n_peers && !j->map.peers) || (map->n_relays && !j->map.relays)) {
		free(j->map.peers);
		free(j->map.relays);
		free(j);
		return NULL;
	}
	if (map->n_peers)
		memcpy(j->map.peers, map->peers, map->n_peers * sizeof(*map->peers));
	if (map->n_relays)
		memcpy(j->map.relays, map->relays, map->n_relays * sizeof(*map->relays));
	/* The policy part too: the loop frees the client's on the next delta
	 * while the thread still encodes this copy. */
	j->map.reach = NULL;
	j->map.n_reach = 0;
	if (ctl_filter_copy(&j->map.filter, &map->filter) < 0)
		goto fail;
	if (map->n_reach && !(j->map.reach = calloc(map->n_reach, sizeof(*j->map.reach))))
		goto fail;
	for (size_t i = 0; i < map->n_reach; i++, j->map.n_reach++)
		if (ctl_reach_copy(&j->map.reach[i], &map->reach[i]) < 0)
			goto fail;
	return j;
fail:
	nctl_save_job_free(j);
	return NULL;
}

/* in_thread false (exit): written before it returns. */
static void nctl_save_map(struct node_ctl *m, bool in_thread)
{
	const struct ctl_map_full *map = m->client ? ctl_client_map(m->client) : NULL;
	char err[256];
	nctl_save_reap(m, !in_thread);
	if (m->save) /* the last one is still being written: next tick */
		return;
	m->map_dirty = m->policy_dirty = false;
	m->last_save_ms = nctl_now_ms();
	if (!map)
		return;
	struct nctl_save_job *j = in_thread ? nctl_save_job_new(m, map) : NULL;
	if (j && pthread_create(&j->thread, NULL, nctl_save_thread, j) == 0) {
		m->save = j;
		return;
	}
	if (j)
		nctl_save_job_free(j);
	if (node_state_save_map(m->p->a.state_dir, map, err, sizeof(err)) != 0)
		log_warn("%s", err);
	else
		log_debug("netmap.json written (map v%llu, %zu peers)",
		          (unsigned long long)map->version, map->n_peers);
	m->saves++;
}

void node_ctl_reconnect(struct node_ctl *m)
{
	if (m && m->client)
		ctl_client_reconnect(m->client);
}

void node_ctl_resolv_changed(struct node_ctl *m)
{
	if (m && m->magicdns)
		magicdns_reload_upstream(m->magicdns);
}

void node_ctl_tick(struct node_ctl *m)
{
	int64_t now = nctl_now_ms();
	if (m->dataplane) {
		node_peers_tick(&m->np, m->wg, now, (int64_t)time(NULL));
		if (now - m->last_ep_check_ms >= NCTL_ENDPOINTS_MS) {
			m->last_ep_check_ms = now;
			nctl_netchg_check(m);
			nctl_endpoints(m, false);
		}
	}
	nctl_save_reap(m, false);
	if (m->map_dirty &&
	    (!m->saves || m->policy_dirty || now - m->last_save_ms >= NCTL_SAVE_MS))
		nctl_save_map(m, true);
}

void node_ctl_free(struct node_ctl *m)
{
	if (!m)
		return;
	nctl_save_reap(m, true);
	if (m->map_dirty)
		nctl_save_map(m, false);
	px_expose_free(m->expose);
	magicdns_free(m->magicdns);
	portmap_free(m->pm);   /* deletes the mapping at the router */
	magicsock_free(m->ms); /* a ping --disco waiting for a pong ends here */
	m->ms = NULL;
	nctl_dping_stop_all(m); /* ... and one between two pings here */
	nctl_kick_free(m);
	ctl_client_free(m->client);
	node_peers_free(&m->np);
	node_ctl_prep_free(m->p);
	node_acl_free(m->acl);
	free(m);
}

struct node_acl *node_ctl_acl(const struct node_ctl *m)
{
	return m ? m->acl : NULL;
}

bool node_ctl_reach_ok(struct node_ctl *m, int proto, const struct ns_addr *a,
                       uint16_t port)
{
	if (!m || !node_acl_active(m->acl))
		return true;
	const struct np_entry *e = node_peers_by_addr(&m->np, a);
	if (!e) /* ours, or a static [Peer]: not the map's to judge */
		return true;
	if (node_acl_reach(m->acl, e->p.id, proto, port))
		return true;
	node_acl_count_fastfail(m->acl);
	return false;
}

bool node_ctl_identify(struct node_ctl *m, const struct ns_addr *src,
                       struct px_identity *id)
{
	const struct np_entry *e = m ? node_peers_by_addr(&m->np, src) : NULL;
	if (!e)
		return false;
	char fqdn[CTL_LABEL_MAX + CTL_DNSNAME_MAX + 2];
	snprintf(fqdn, sizeof(fqdn), "%s%s%s", e->p.name, m->np.domain[0] ? "." : "",
	         m->np.domain);
	if (strlen(fqdn) >= sizeof(id->name)) /* past a DNS name's length: the label */
		snprintf(fqdn, sizeof(fqdn), "%s", e->p.name);
	memcpy(id->name, fqdn, strlen(fqdn) + 1);
	snprintf(id->user, sizeof(id->user), "%s", e->p.user);
	snprintf(id->tags, sizeof(id->tags), "%s", e->p.tags);
	return true;
}

size_t node_ctl_resolve(const struct node_ctl *m, const char *name, struct ns_addr *out,
                        size_t max)
{
	return m ? node_peers_resolve(&m->np, name, out, max) : 0;
}

bool node_ctl_route_local(const struct ns_addr *a)
{
	return ns_local_udp_is(a);
}

int node_ctl_logout(struct node_ctl *m)
{
	if (!m || !m->p->a.ephemeral)
		return -EPERM;
	return ctl_client_logout(m->client);
}
