/* TEMPORARY: replaced by the store's implementation at merge */
/* Until then the store holds no policy: mesh-control serve runs without one
 * unless a test puts one in force (ctl_server_policy_apply_text). */
#include <stdlib.h>
#include <string.h>

#include "servers/control/store.h"

int ctl_store_policy_get(struct ctl_store *st, struct ctl_policy_rec *out)
{
	(void)st;
	memset(out, 0, sizeof *out);
	return CTL_STORE_ENOTFOUND;
}

void ctl_policy_rec_free(struct ctl_policy_rec *r)
{
	if (!r)
		return;
	free(r->text);
	memset(r, 0, sizeof *r);
}
