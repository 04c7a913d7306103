/* libFuzzer harness for what `mesh-proxy up` reads from the environment:
 * MESH_EXTRA_ARGS splitting (cli/env.c) and --forward / MESH_FORWARDS
 * specs (node/forward.c). The first byte picks the parser; the rest is
 * the value. Invariants: a split never yields more than 64 words, and the
 * words' bytes never exceed the input's; every spec fwd_parse accepts
 * becomes sections the configuration parser accepts too (no spec passes
 * the early check and then fails after the state directory is touched);
 * a --socks5 / MESH_SOCKS5 value fwd_listen_spec_ok accepts is one
 * BindAddress line: exactly one [Socks5] section, never more (no INI
 * injection). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/env.h"
#include "config/config.h"
#include "node/forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                         \
	do {                                                                             \
		if (!(x))                                                                \
			__builtin_trap();                                                \
	} while (0)

static void fuzz_split(const char *s, size_t len)
{
	char *buf, **argv, err[200];
	int argc;
	if (cli_env_split(s, &buf, &argv, &argc, err, sizeof(err)) != 0)
		return;
	CHECK(argc >= 1 && argc <= 65 && argv[argc] == NULL);
	size_t total = 0;
	for (int i = 1; i < argc; i++)
		total += strlen(argv[i]);
	CHECK(total <= len);
	free(buf);
	free(argv);
}

static void fuzz_forward(const char *s)
{
	static const char head[] = "[Interface]\nPrivateKey = "
	                           "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
	                           "Address = 100.64.0.1/32\n";
	struct fwd_list l;
	char err[300];
	if (!fwd_parse(s, &l, err, sizeof(err)))
		return;
	CHECK(l.n <= FWD_MAX);
	size_t cap = sizeof(head) + FWD_MAX * (FWD_HOST_MAX + 128);
	char *ini = malloc(cap);
	CHECK(ini);
	memcpy(ini, head, sizeof(head) - 1);
	size_t n = fwd_ini(&l, ini + sizeof(head) - 1, cap - sizeof(head) + 1);
	CHECK(l.n == 0 || n > 0);
	struct config cfg;
	char cerr[512];
	CHECK(config_load_text("fuzz", ini, sizeof(head) - 1 + n, &cfg, cerr,
	                       sizeof(cerr)) == 0);
	CHECK(cfg.n_tcp_client_tunnels + cfg.n_udp_client_tunnels == l.n);
	config_free(&cfg);
	free(ini);
}

static void fuzz_listen(const char *s)
{
	static const char head[] = "[Interface]\nPrivateKey = "
	                           "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
	                           "Address = 100.64.0.1/32\n";
	if (!fwd_listen_spec_ok(s) || !strcmp(s, "off"))
		return;
	CHECK(!strpbrk(s, "\r\n=#;") && strlen(s) < 64);
	bool port = strspn(s, "0123456789") == strlen(s);
	size_t cap = sizeof(head) + strlen(s) + 80; /* as node_ctl_build_config */
	char *ini = malloc(cap);
	CHECK(ini);
	int n = snprintf(ini, cap, "%s[Socks5]\nBindAddress = %s%s\nAllowOpen = yes\n",
	                 head, port ? "127.0.0.1:" : "", s);
	struct config cfg;
	char cerr[512];
	CHECK(config_load_text("fuzz", ini, (size_t)n, &cfg, cerr, sizeof(cerr)) == 0);
	CHECK(cfg.n_socks5 == 1);
	config_free(&cfg);
	free(ini);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 8192)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	if (data[0] % 3 == 1)
		fuzz_forward(s);
	else if (data[0] % 3 == 2)
		fuzz_listen(s);
	else
		fuzz_split(s, strlen(s));
	free(s);
	return 0;
}
