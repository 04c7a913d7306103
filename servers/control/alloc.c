/* Address and name allocation helpers for the control store. */
#include "servers/control/alloc.h"

#include "core/util/hostname.h"

#include <stdio.h>
#include <string.h>

bool ctl_alloc_v4_reserved(uint32_t off)
{
	uint32_t addr = 0x64400000u + off; /* 100.64.0.0 + off */
	uint32_t last = addr & 0xff;

	if (off == 0 || off >= CTL_ALLOC_V4_SIZE - 1)
		return true;
	if (last == 0 || last == 255)
		return true;
	if ((addr & 0xffffff00u) == 0x64646400u) /* 100.100.100.0/24 */
		return true;
	if ((addr & 0xfffffe00u) == 0x64735c00u) /* 100.115.92.0/23 */
		return true;
	return false;
}

uint32_t ctl_alloc_v4_next(uint32_t off)
{
	/* At most a few hundred steps: reserved runs are short. */
	for (uint32_t i = 0; i < CTL_ALLOC_V4_SIZE; i++) {
		off = (off + 1) % CTL_ALLOC_V4_SIZE;
		if (!ctl_alloc_v4_reserved(off))
			return off;
	}
	return 0;
}

void ctl_alloc_v6(const uint8_t ula[16], uint32_t ipv4, uint8_t out[16])
{
	memset(out, 0, 16);
	memcpy(out, ula, 6);
	out[12] = (uint8_t)(ipv4 >> 24);
	out[13] = (uint8_t)(ipv4 >> 16);
	out[14] = (uint8_t)(ipv4 >> 8);
	out[15] = (uint8_t)ipv4;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

void ctl_alloc_name_from_host(const char *hostname, char out[64])
{
	size_t n = 0;

	for (const char *p = hostname ? hostname : ""; *p && *p != '.' && n < 63; p++) {
		char c = *p;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!name_char(c))
			c = '-';
		if (c == '-' && (n == 0 || out[n - 1] == '-'))
			continue;
		out[n++] = c;
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	out[n] = '\0';
	if (n == 0)
		strcpy(out, "node");
	if (hostname_reserved(out)) { /* "localhost" would capture others' lookups */
		char r[64];
		snprintf(r, sizeof(r), "%.58s-node", out);
		strcpy(out, r);
	}
}

void ctl_alloc_name_suffix(const char *base, unsigned n, char out[64])
{
	char sfx[16];
	int sl = snprintf(sfx, sizeof sfx, "-%u", n);
	size_t bl = strlen(base);

	if (bl > 63 - (size_t)sl)
		bl = 63 - (size_t)sl;
	while (bl > 1 && base[bl - 1] == '-')
		bl--;
	memcpy(out, base, bl);
	memcpy(out + bl, sfx, (size_t)sl + 1);
}

bool ctl_alloc_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return !hostname_reserved(s);
}
