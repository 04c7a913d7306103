/* libFuzzer harness for the config parser: any bytes go through the line
 * reader, inih and the value parsers. Includes and name resolution are off
 * (no files, no DNS from a fuzzer). Build: clang -fsanitize=fuzzer,address. */
#include "config/config.h"
#include "config/config_int.h"

#include <stdint.h>
#include <string.h>

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
		config_free(&cfg);
	} else if (err[0] == 0 || memchr(err, 0, sizeof(err)) == NULL) {
		__builtin_trap(); /* every failure explains itself */
	}
	return 0;
}
