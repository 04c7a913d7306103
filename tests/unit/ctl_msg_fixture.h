/* Fixtures shared by test_control_msg.c and test_control_msg_bad.c: keys,
 * peers and maps with every field set. */
#ifndef MESH_TEST_CTL_MSG_FIXTURE_H
#define MESH_TEST_CTL_MSG_FIXTURE_H

#include "core/control/msg.h"

#pragma GCC diagnostic ignored "-Wunused-function"

static void fill_key(uint8_t k[CTL_KEY_LEN], unsigned seed)
{
	for (unsigned i = 0; i < CTL_KEY_LEN; i++)
		k[i] = (uint8_t)(seed * 31 + i * 7 + 1);
}

static void make_peer(struct ctl_peer *p, unsigned i)
{
	memset(p, 0, sizeof(*p));
	p->id = 1000 + i;
	snprintf(p->name, sizeof(p->name), "node-%u", i);
	fill_key(p->node_key, i);
	fill_key(p->disco_key, i + 50000);
	assert_true(ctl_ip_parse("100.64.1.2", &p->addrs[0]));
	p->addrs[0].addr[2] = (uint8_t)(i >> 8);
	p->addrs[0].addr[3] = (uint8_t)i;
	assert_true(ctl_ip_parse("fd7a:115c:a1e0::1", &p->addrs[1]));
	p->addrs[1].addr[14] = (uint8_t)(i >> 8);
	p->addrs[1].addr[15] = (uint8_t)i;
	p->n_addrs = 2;
	p->allowed[0].family = 4;
	p->allowed[0].bits = 32;
	memcpy(p->allowed[0].addr, p->addrs[0].addr, 16);
	p->allowed[1].family = 6;
	p->allowed[1].bits = 128;
	memcpy(p->allowed[1].addr, p->addrs[1].addr, 16);
	p->n_allowed = 2;
	assert_true(ctl_endpoint_parse("198.18.0.7:41641", &p->eps[0]));
	assert_true(ctl_endpoint_parse("[2001:db8::7]:41641", &p->eps[1]));
	assert_true(ctl_endpoint_parse("198.19.1.200:41641", &p->eps[2]));
	p->n_eps = 3;
	p->home_relay = 1;
	p->online = i % 2;
	p->last_seen = 1764100000 + i;
}

static void make_map(struct ctl_msg *m, size_t n_peers)
{
	struct ctl_map_full *f = &m->u.map;

	memset(m, 0, sizeof(*m));
	m->type = CTL_MSG_MAP_FULL;
	f->version = 77;
	f->self_id = 1;
	snprintf(f->self_name, sizeof(f->self_name), "me");
	assert_true(ctl_ip_parse("100.64.0.1", &f->self_addrs[0]));
	assert_true(ctl_ip_parse("fd7a:115c:a1e0::1", &f->self_addrs[1]));
	f->n_self_addrs = 2;
	snprintf(f->dns_domain, sizeof(f->dns_domain), "mesh.example");
	assert_true(ctl_ip_parse("100.100.100.100", &f->magic_dns));
	f->peers = calloc(n_peers ? n_peers : 1, sizeof(*f->peers));
	assert_non_null(f->peers);
	f->n_peers = n_peers;
	for (size_t i = 0; i < n_peers; i++)
		make_peer(&f->peers[i], (unsigned)i);
}

#endif
