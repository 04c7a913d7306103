/* Process hardening shared by the three programs. */
#ifndef MESH_UTIL_HARDEN_H
#define MESH_UTIL_HARDEN_H

/* Makes the process non-dumpable: no core file (it would hold keys), and
 * other processes of the same uid can no longer ptrace it or read its
 * /proc/PID/{environ,mem,root,fd} (a container run as uid 65534 shares
 * that uid with the host's `nobody`). The process's own /proc/self stays
 * readable to itself. Best effort: a failure is ignored. */
void harden_process(void);

#endif
