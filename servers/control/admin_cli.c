/* `mesh-control apikeys ...`: see admin.h. (Being built.) */
#include "servers/control/admin.h"

#include <stdio.h>

int ctl_admin_cli_apikeys(const char *data_dir, int argc, char **argv, int json)
{
	(void)data_dir;
	(void)argc;
	(void)argv;
	(void)json;
	fprintf(stderr, "mesh-control: apikeys: not built yet\n");
	return 1;
}
