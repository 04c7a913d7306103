#include "core/util/hostname.h"

#include <string.h>
#include <strings.h>

bool hostname_valid(const char *s, size_t n)
{
	size_t label = 0;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '-' || c == '_';
		if (!ok || ++label > 63)
			return false;
	}
	return true;
}

bool hostname_reserved(const char *label)
{
	/* localhost (RFC 6761) and the names of /etc/hosts' usual lines;
	 * proxy auto-discovery (wpad) and ISATAP, classic hijack targets; the
	 * cloud metadata names; "local" (mDNS) and the unqualified TLD-like
	 * words resolvers treat specially. */
	static const char *const names[] = {
	    "localhost",    "localdomain",  "ip6-localhost",  "ip6-loopback",
	    "ip6-localnet", "ip6-allnodes", "ip6-allrouters", "broadcasthost",
	    "wpad",         "isatap",       "metadata",       "instance-data",
	    "local",        "invalid",      "test",           "example",
	    "onion",
	};
	if (!label)
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(label, names[i]) == 0)
			return true;
	size_t n = strlen(label);
	return n > 10 && strcasecmp(label + n - 10, "-localhost") == 0;
}
