#include "core/util/harden.h"

#include <sys/prctl.h>

void harden_process(void)
{
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
