/* How the node writes values for people and for scripts. */
#include "node/format.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/sockaddr.h"

void fmt_key_b64(const uint8_t key[32], char *out, size_t len)
{
	char b[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b, sizeof(b), key, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, len, "%s", b);
}

void fmt_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		sockaddr_format(ss, out, len);
	else
		snprintf(out, len, "(none)");
}

void fmt_bytes(uint64_t n, char *out, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%" PRIu64 " B", n);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}

void fmt_ago(int64_t then, char *out, size_t len)
{
	if (then == 0) {
		snprintf(out, len, "never");
		return;
	}
	int64_t d = (int64_t)time(NULL) - then;
	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(out, len, "%" PRId64 "s ago", d);
	else if (d < 7200)
		snprintf(out, len, "%" PRId64 "m ago", d / 60);
	else
		snprintf(out, len, "%" PRId64 "h ago", d / 3600);
}

json_t *fmt_json_str(const char *s)
{
	if (!s)
		return json_string("");
	json_t *j = json_string(s);
	if (j)
		return j;
	/* Not UTF-8 (jansson refuses it): every byte >= 0x80 becomes '?'. */
	size_t n = strlen(s);
	char *t = malloc(n + 1);
	if (!t)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		t[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	j = json_string(t);
	free(t);
	return j;
}

json_t *fmt_json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

void fmt_json_set(json_t *o, const char *key, json_t *v)
{
	if (json_object_set_new(o, key, v) != 0)
		json_object_set_new(o, "incomplete", json_true());
}
