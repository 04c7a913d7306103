/* mesh-proxy's shared options (cli/opts.h). */
#include "cli/opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/control/token.h"

int cli_die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mesh-proxy: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun `mesh-proxy --help` for usage\n");
	return 2;
}

/* cli_die_usage naming where the options came from (MESH_EXTRA_ARGS): the
 * user must know which of the places that set options to fix. */
static int opt_err(const struct cli *c, const char *fmt, const char *arg)
{
	if (!c->origin)
		return cli_die_usage(fmt, arg);
	fprintf(stderr, "mesh-proxy: %s: ", c->origin);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	return 2;
}

const char *cli_arg_shown(const struct cli *c, const char *a, char *buf, size_t cap)
{
	if (!(c && c->origin) &&
	    strncmp(a, CTL_TOKEN_PREFIX, strlen(CTL_TOKEN_PREFIX)) != 0)
		return a;
	snprintf(buf, cap, "(%zu characters, not shown)", strlen(a));
	return buf;
}

int cli_parse_opts(int argc, char **argv, int i, struct cli *c)
{
	for (; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		bool takes =
		    !strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "--api") ||
		    !strcmp(a, "--log-level") || !strcmp(a, "--count") ||
		    !strcmp(a, "-W") || !strcmp(a, "--timeout") || !strcmp(a, "-i") ||
		    !strcmp(a, "--interval") || !strcmp(a, "--state") ||
		    !strcmp(a, "--join") || !strcmp(a, "--hostname") ||
		    !strcmp(a, "--socks5") || !strcmp(a, "--http-proxy") ||
		    !strcmp(a, "--expose") || !strcmp(a, "--direct") ||
		    !strcmp(a, "--health-listen") || !strcmp(a, "--forward") ||
		    !strcmp(a, "--proxy-user") || !strcmp(a, "--proxy-password-file");
		if (takes) {
			if (i + 1 >= argc)
				return opt_err(c, "%s needs a value", a);
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
				return opt_err(c,
				               "ping -i %s: not a number of seconds "
				               "(0.001-60)",
				               val);
		} else if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "--disco")) {
			c->disco = true;
		} else if (!strcmp(a, "--until-direct")) {
			c->until_direct = true;
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
				return opt_err(c, "--direct %s: want public, all or no",
				               val);
			c->direct = val;
		} else if (!strcmp(a, "--portmap") || !strcmp(a, "--no-portmap")) {
			c->portmap = a[2] == 'n' ? "no" : "yes";
		} else if (!strcmp(a, "--birthday") || !strcmp(a, "--no-birthday")) {
			c->birthday = a[2] == 'n' ? "no" : "yes";
		} else if (!strcmp(a, "--health-listen")) {
			c->health_listen = val;
		} else if (!strcmp(a, "--forward")) {
			c->forward = val;
		} else if (!strcmp(a, "--proxy-user")) {
			c->proxy_user = val;
		} else if (!strcmp(a, "--proxy-password-file")) {
			c->proxy_password_file = val;
		} else if (!strcmp(a, "--proxy-open") || !strcmp(a, "--no-proxy-open")) {
			c->proxy_open = a[2] == 'n' ? "no" : "yes";
		} else if (!strcmp(a, "--ephemeral")) {
			c->ephemeral = true;
		} else if (!strcmp(a, "--metrics-peers") ||
		           !strcmp(a, "--no-metrics-peers")) {
			c->metrics_peers = a[2] == 'n' ? "no" : "yes";
		} else if (!strcmp(a, "--live")) {
			c->live = true;
		} else if (!strcmp(a, "-4") || !strcmp(a, "-6")) {
			c->family = a[1] - '0';
		} else if (a[0] == '-' && a[1]) {
			return opt_err(c, "unknown option %s", a);
		} else if (!c->target) {
			c->target = a;
		} else {
			char sb[48];
			return opt_err(c, "unexpected argument %s",
			               cli_arg_shown(c, a, sb, sizeof(sb)));
		}
	}
	return 0;
}
