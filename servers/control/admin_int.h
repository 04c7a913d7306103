/* Private to mesh-control's admin API (admin.c, admin_policy.c): the
 * server object, one request, and the reply helpers admin.c shares. */
#ifndef MESH_CTL_ADMIN_INT_H
#define MESH_CTL_ADMIN_INT_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "servers/control/admin.h"

/* Bodies up to 64 KiB (libevent answers 413 to a longer Content-Length
 * before reading it): a policy through the API is at most that; a larger
 * one goes through `mesh-control policy set` (1 MiB). */
#define ADM_MAX_BODY   (64 * 1024)
#define ADM_MAX_HEADER (16 * 1024)
#define ADM_TIMEOUT_S  30
#define ADM_MAX_SEGS   4
#define ADM_SEG_MAX    80

struct http_conns;

struct ctl_admin {
	struct ctl_admin_config cfg;
	struct evhttp *http;
	struct http_conns *conns;
	struct sockaddr_storage local;
	socklen_t local_len;
};

/* One request being handled. */
struct adm_req {
	struct ctl_admin *a;
	struct evhttp_request *req;
	enum evhttp_cmd_type cmd;
	int nseg;
	char seg[ADM_MAX_SEGS][ADM_SEG_MAX + 1];
	int64_t now;
};

/* admin.c: sends j (stolen; NULL is a 500); {"error": msg} with code; a
 * store error as 400/404/409/500; 405 with Allow; tells the node server
 * the store changed; the body as a JSON object (NULL after a 400). */
void ctl_adm_reply(struct evhttp_request *req, int code, json_t *j);
void ctl_adm_error(struct evhttp_request *req, int code, const char *msg);
void ctl_adm_store_error(struct adm_req *r, int rc);
void ctl_adm_method(struct adm_req *r, const char *allow);
void ctl_adm_changed(struct ctl_admin *a);
json_t *ctl_adm_body(struct adm_req *r, bool empty_ok);

/* admin_policy.c: /api/v1/policy[/check] and /api/v1/users[/NAME]. */
void ctl_adm_route_policy(struct adm_req *r);

#endif
