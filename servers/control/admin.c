/* mesh-control's HTTP admin API: see admin.h. (Being built.) */
#include "servers/control/admin.h"

#include <stdio.h>
#include <string.h>

struct ctl_admin {
	int unused;
};

struct ctl_admin *ctl_admin_new(const struct ctl_admin_config *cfg, char *err,
                                size_t errlen)
{
	(void)cfg;
	if (err && errlen)
		snprintf(err, errlen, "admin API: being built");
	return NULL;
}

void ctl_admin_free(struct ctl_admin *a)
{
	(void)a;
}

void ctl_admin_local(const struct ctl_admin *a, struct sockaddr_storage *ss,
                     socklen_t *len)
{
	(void)a;
	memset(ss, 0, sizeof(*ss));
	*len = 0;
}
