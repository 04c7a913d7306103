/* libFuzzer harness for the config parser: any bytes go through the line
 * reader, inih and the value parsers. Includes and name resolution are off
 * (no files, no DNS from a fuzzer). Build: clang -fsanitize=fuzzer,address. */
#include "config/config.h"
#include "config/config_int.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Every TCP front-end has its limits filled in (defaults or values). */
static void check_limits(const struct cfg_limits *l)
{
	if (l->max_connections < 1 || l->max_connections > 1000000 ||
	    l->handshake_timeout_ms < 1000 || l->buffer_bytes < 16384 ||
	    l->buffer_bytes > 1048576)
		__builtin_trap();
}

static void check_frontends(const struct config *c)
{
	for (size_t i = 0; i < c->n_socks5; i++)
		check_limits(&c->socks5[i].limits);
	for (size_t i = 0; i < c->n_http; i++)
		check_limits(&c->http[i].limits);
	for (size_t i = 0; i < c->n_tcp_client_tunnels; i++)
		check_limits(&c->tcp_client_tunnels[i].limits);
	for (size_t i = 0; i < c->n_tcp_server_tunnels; i++) {
		check_limits(&c->tcp_server_tunnels[i].limits);
		if (c->tcp_server_tunnels[i].proxy_protocol != 0 &&
		    c->tcp_server_tunnels[i].proxy_protocol != 2)
			__builtin_trap();
	}
	for (size_t i = 0; i < c->n_udp_client_tunnels; i++)
		if (!c->udp_client_tunnels[i].target_host ||
		    !c->udp_client_tunnels[i].max_flows ||
		    !c->udp_client_tunnels[i].idle_timeout_ms)
			__builtin_trap();
	for (size_t i = 0; i < c->n_udp_server_tunnels; i++)
		if (!c->udp_server_tunnels[i].target_host ||
		    !c->udp_server_tunnels[i].listen_port ||
		    !c->udp_server_tunnels[i].max_flows ||
		    !c->udp_server_tunnels[i].idle_timeout_ms)
			__builtin_trap();
	/* Peer names are unique, ignoring case. */
	for (size_t i = 0; i < c->n_peers; i++)
		for (size_t j = 0; c->peers[i].name && j < i; j++)
			if (c->peers[j].name &&
			    strcasecmp(c->peers[i].name, c->peers[j].name) == 0)
				__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char err[256];
	struct cfg_opts o = {.no_include = true, .no_resolve = true, .quiet = true};
	if (config_load_buffer("fuzz.ini", (const char *)data, size, &cfg, &o, err,
	                       sizeof(err)) == 0) {
		/* A loaded config must be consistent. */
		if (cfg.n_addresses == 0 || cfg.mtu < 576)
			__builtin_trap();
		for (size_t i = 0; i < cfg.n_peers; i++)
			if (cfg.peers[i].line <= 0 || !cfg.peers[i].file)
				__builtin_trap();
		check_frontends(&cfg);
		config_free(&cfg);
	} else if (err[0] == 0 || memchr(err, 0, sizeof(err)) == NULL) {
		__builtin_trap(); /* every failure explains itself */
	}
	return 0;
}
