/* Why a connection could not be made: the reason's name for the log, the
 * mapping from a netstack dial's -errno, and the per-reason counters of a
 * front-end. */
#include "proxy/internal.h"

#include <errno.h>

const char *px_err_str(enum px_err e)
{
	switch (e) {
	case PX_OK:
		return "ok";
	case PX_E_GENERAL:
		return "failed";
	case PX_E_NO_ROUTE:
		return "no mesh route";
	case PX_E_RESOLVE:
		return "name did not resolve";
	case PX_E_UNREACHABLE:
		return "host unreachable";
	case PX_E_REFUSED:
		return "connection refused";
	case PX_E_TIMEOUT:
		return "timed out";
	case PX_E_DENIED:
		return "not allowed (Direct)";
	case PX_E_BUSY:
		return "node over its memory budget (MemoryLimit)";
	case PX_E_POLICY:
		return "the mesh policy does not allow it";
	}
	return "?";
}

enum px_err px_err_from_errno(int neg_errno)
{
	switch (neg_errno) {
	case 0:
		return PX_OK;
	case -ECONNREFUSED:
	case -ECONNRESET:
		return PX_E_REFUSED;
	case -ETIMEDOUT:
		return PX_E_TIMEOUT;
	case -EHOSTUNREACH:
		return PX_E_UNREACHABLE;
	case -ENETUNREACH:
		return PX_E_NO_ROUTE;
	default:
		return PX_E_GENERAL;
	}
}

void px_front_count_err(struct px_front *f, enum px_err e)
{
	if (!f)
		return;
	switch (e) {
	case PX_OK:
		break;
	case PX_E_GENERAL:
		f->stats.err_other++;
		break;
	case PX_E_NO_ROUTE:
		f->stats.err_no_route++;
		break;
	case PX_E_RESOLVE:
		f->stats.err_resolve++;
		break;
	case PX_E_UNREACHABLE:
		f->stats.err_unreachable++;
		break;
	case PX_E_REFUSED:
		f->stats.err_refused++;
		break;
	case PX_E_TIMEOUT:
		f->stats.err_timeout++;
		break;
	case PX_E_DENIED:
		f->stats.err_denied++;
		break;
	case PX_E_BUSY:
		f->stats.err_busy++;
		break;
	case PX_E_POLICY:
		f->stats.err_policy++;
		break;
	}
}
