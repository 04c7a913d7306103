/* mesh-control's connections by node id: a chained hash, so that finding
 * the other connections of a node (an older one to replace when it
 * registers again, another still online when one closes) costs a lookup,
 * not a walk of every connection (which made a join storm of N nodes
 * O(N^2) in these walks alone). A connection is in it while its node_id is
 * set, whatever its state; callers look at the state. */
#include <errno.h>
#include <stdlib.h>

#include "servers/control/server_int.h"

#define BYID_MIN 1024u

static size_t slot_of(int64_t id, size_t nb)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 32) & (nb - 1);
}

int srv_byid_init(struct ctl_server *s)
{
	s->byid = calloc(BYID_MIN, sizeof *s->byid);
	if (!s->byid)
		return -ENOMEM;
	s->nb_byid = BYID_MIN;
	return 0;
}

void srv_byid_free(struct ctl_server *s)
{
	free(s->byid);
	s->byid = NULL;
	s->nb_byid = s->n_byid = 0;
}

/* Twice the slots when there are more connections than slots; a failed
 * allocation keeps the table (longer chains, still correct). */
static void byid_grow(struct ctl_server *s)
{
	size_t nb = s->nb_byid * 2;
	struct srv_conn **t = calloc(nb, sizeof *t);
	if (!t)
		return;
	for (size_t i = 0; i < s->nb_byid; i++)
		for (struct srv_conn *c = s->byid[i], *nx; c; c = nx) {
			nx = c->id_next;
			size_t k = slot_of(c->node_id, nb);
			c->id_next = t[k];
			c->id_pprev = &t[k];
			if (t[k])
				t[k]->id_pprev = &c->id_next;
			t[k] = c;
		}
	free(s->byid);
	s->byid = t;
	s->nb_byid = nb;
}

static void byid_unlink(struct srv_conn *c)
{
	if (!c->id_pprev)
		return;
	*c->id_pprev = c->id_next;
	if (c->id_next)
		c->id_next->id_pprev = c->id_pprev;
	c->id_next = NULL;
	c->id_pprev = NULL;
	c->s->n_byid--;
}

void srv_conn_set_node(struct srv_conn *c, int64_t id)
{
	struct ctl_server *s = c->s;
	if (c->id_pprev && c->node_id == id)
		return;
	byid_unlink(c);
	c->node_id = id;
	if (!id || !s->byid)
		return;
	if (s->n_byid >= s->nb_byid)
		byid_grow(s);
	size_t k = slot_of(id, s->nb_byid);
	c->id_next = s->byid[k];
	c->id_pprev = &s->byid[k];
	if (s->byid[k])
		s->byid[k]->id_pprev = &c->id_next;
	s->byid[k] = c;
	s->n_byid++;
}

struct srv_conn *srv_conn_first_of(const struct ctl_server *s, int64_t id)
{
	if (!id || !s->byid)
		return NULL;
	struct srv_conn *c = s->byid[slot_of(id, s->nb_byid)];
	while (c && c->node_id != id)
		c = c->id_next;
	return c;
}

struct srv_conn *srv_conn_next_of(const struct srv_conn *c)
{
	struct srv_conn *o = c->id_next;
	while (o && o->node_id != c->node_id)
		o = o->id_next;
	return o;
}
