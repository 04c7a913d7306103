/* core/policy: the policy language (HuJSON comments and trailing commas,
 * every section, every error with its line and column, the limits), the
 * compiler (filters: ports, ranges, lists, CIDRs, users, groups, tags,
 * protocols; visibility), the policy's tests, and a 1,000-rule random
 * policy whose filters and visibility sets are checked against a plain
 * model of the rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/policy/policy.h"

static struct policy *parse_ok(const char *s)
{
	struct policy_error e;
	struct policy *p = policy_parse(s, strlen(s), &e);
	if (!p)
		fail_msg("unexpected error: line %d, column %d: %s", e.line, e.column,
		         e.msg);
	return p;
}

static void expect_err(const char *s, int line, int col, const char *sub)
{
	struct policy_error e;
	struct policy *p = policy_parse(s, strlen(s), &e);
	if (p) {
		policy_free(p);
		fail_msg("accepted: %s", s);
	}
	if (e.line != line || e.column != col || !strstr(e.msg, sub))
		fail_msg("for %s\n got line %d, column %d: %s\n want line %d, column %d: "
		         "...%s...",
		         s, e.line, e.column, e.msg, line, col, sub);
}

static const char example[] =
    "// A mesh of two developers and a server\n"
    "{\n"
    "  \"groups\": {\n"
    "    \"group:dev\": [\"alice@\", \"bob@example.com\",], // trailing comma\n"
    "  },\n"
    "  /* tags and who may give them */\n"
    "  \"tagOwners\": { \"tag:server\": [\"group:dev\"], \"tag:ci\": [\"tag:server\"] "
    "},\n"
    "  \"hosts\": { \"db\": \"100.64.0.9\", \"lab\": \"100.64.8.0/24\", \"v6db\": "
    "\"fd7a:1:2::9\" },\n"
    "  \"acls\": [\n"
    "    {\"action\": \"accept\", \"src\": [\"group:dev\"], \"dst\": "
    "[\"tag:server:22,80-90\"]},\n"
    "    {\"action\": \"accept\", \"src\": [\"tag:server\", \"lab\"], \"dst\": "
    "[\"db:5432\"],\n"
    "     \"proto\": \"tcp\"},\n"
    "    {\"action\": \"accept\", \"src\": [\"carol@\"], \"dst\": [\"db:*\"], \"proto\": "
    "\"icmp\"},\n"
    "    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"[fd7a:1:2::9]:53\"], "
    "\"proto\": \"udp\"},\n"
    "  ],\n"
    "  \"tests\": [\n"
    "    {\"src\": \"alice@\", \"accept\": [\"tag:server:22\", \"tag:server:85\"],\n"
    "     \"deny\": [\"tag:server:23\", \"db:5432\"]},\n"
    "    {\"src\": \"tag:server\", \"accept\": [\"db:5432\"], \"deny\": [\"db:5433\"]},\n"
    "  ],\n"
    "}\n";

static void comments_trailing_commas_and_sections(void **state)
{
	struct policy *p = parse_ok(example);
	struct policy_stats st;
	policy_get_stats(p, &st);
	assert_int_equal(st.groups, 1);
	assert_int_equal(st.tags, 2);
	assert_int_equal(st.hosts, 3);
	assert_int_equal(st.rules, 4);
	assert_int_equal(st.tests, 2);
	assert_int_equal(policy_n_warnings(p), 0);
	/* The tests pass against no nodes and against nodes. */
	struct policy_error e;
	size_t passed;
	struct policy_compiled *cp = policy_compile(p, NULL, 0, &e);
	assert_non_null(cp);
	assert_int_equal(policy_run_tests(cp, &passed, &e), 0);
	assert_int_equal(passed, 6);
	policy_compiled_free(cp);
	policy_free(p);
	/* A comment marker inside a string is text; a BOM is skipped. */
	p = parse_ok(
	    "\xef\xbb\xbf{\"hosts\": {\"x\": \"100.64.0.1\"}, // \"acls\": oops\n"
	    "\"acls\": [{\"action\": \"accept\", \"src\": [\"x\"], \"dst\": "
	    "[\"x:1\"]}], /* } */ }");
	policy_free(p);
	expect_err("{\"acls\": [{\"action\": \"accept\", \"src\": [\"a//b\"], \"dst\": "
	           "[\"*:*\"]}]}",
	           1, 40, "not an address");
	/* Empty lists stay empty lists: "[,]" is not "[]". */
	expect_err("{\"acls\": [,]}", 1, 11, "not valid JSON");
}

struct bad {
	const char *text;
	int line, col;
	const char *msg;
};

static const struct bad bads[] = {
    /* the scanner */
    {"{\"acls\": [\n  \"x\n]}", 2, 3, "not closed on its line"},
    {"{\"acls\": []} /* no end", 1, 14, "comment is not closed"},
    {"{\"acls\": [] / 2}", 1, 13, "starts no comment"},
    {"{\"a\":\"x", 1, 6, "not closed"},
    /* jansson */
    {"{\"acls\": [1,,2]}", 1, 13, "not valid JSON"},
    {"{\n  \"acls\": [],\n  \"acls\": []\n}", 3, 8, "duplicate object key"},
    {"", 1, 1, "not valid JSON"},
    {"{} {}", 1, 4, "not valid JSON"},
    /* the shape */
    {"[]", 1, 1, "must be a JSON object"},
    {"{\"acl\": []}", 1, 2, "unknown section 'acl'"},
    {"{\"groups\": []}", 1, 12, "\"groups\" must be an object"},
    {"{\"groups\": {\"dev\": []}}", 1, 13, "must be group:NAME"},
    {"{\"groups\": {\"group:a\": \"alice\"}}", 1, 24, "must be a list of strings"},
    {"{\"groups\": {\"group:a\": [\"alice@\", 3]}}", 1, 35, "[1] must be a string"},
    {"{\"groups\": {\"group:a\": [], \"group:b\": [\"group:a\"]}}", 1, 40,
     "a group holds users, not groups"},
    {"{\"groups\": {\"group:a\": [\"al ice\"]}}", 1, 25, "is not a user name"},
    {"{\"hosts\": {\"1.2.3.4\": \"100.64.0.1\"}}", 1, 12, "must be a name"},
    {"{\"hosts\": {\"a\": 5}}", 1, 17, "must be an address string"},
    {"{\"hosts\": {\"a\": \"198.18.0.1\"}}", 1, 17, "not in the mesh's addresses"},
    {"{\"hosts\": {\"a\": \"100.64.1.1/24\"}}", 1, 17, "bits set after the prefix"},
    {"{\"hosts\": {\"a\": \"100.64.0.0/33\"}}", 1, 17, "over 32"},
    {"{\"hosts\": {\"a\": \"100.0.0.0/8\"}}", 1, 17, "not in the mesh's addresses"},
    {"{\"hosts\": {\"a\": \"fe80::1\"}}", 1, 17, "not in the mesh's addresses"},
    {"{\"tagOwners\": {\"server\": []}}", 1, 16, "must be tag:NAME"},
    {"{\"tagOwners\": {\"tag:a\": [\"group:x\"]}}", 1, 26,
     "unknown group 'group:x' in "
     "tagOwners[\"tag:a\"][0]"},
    {"{\"tagOwners\": {\"tag:a\": [\"*\"]}}", 1, 26, "owned by users, groups or tags"},
    {"{\"acls\": {}}", 1, 10, "\"acls\" must be a list"},
    {"{\"acls\": [7]}", 1, 11, "acls[0] must be an object"},
    {"{\"acls\": [{\"action\": \"accept\", \"users\": [], \"src\": [], \"dst\": []}]}", 1,
     32, "write users as src"},
    {"{\"acls\": [{\"action\": \"accept\", \"dst\": []}]}", 1, 11, "has no \"src\""},
    {"{\"acls\": [{\"action\": \"deny\", \"src\": [], \"dst\": []}]}", 1, 22,
     "must be \"accept\""},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [], \"dst\": [], \"proto\": "
     "\"sctp\"}]}",
     1, 63, "proto must be \"tcp\", \"udp\" or \"icmp\""},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": \"*\", \"dst\": []}]}", 1, 39,
     "acls[0].src must be a list"},
    /* selectors, on line 3 */
    {"{\"acls\": [\n  {\"action\": \"accept\",\n   \"src\": [\"*\", \"group:dev\"], "
     "\"dst\": "
     "[\"*:*\"]}]}",
     3, 17, "unknown group 'group:dev' in acls[0].src[1]"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"tag:web\"], \"dst\": []}]}", 1, 40,
     "unknown tag 'tag:web'"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": "
     "[]}]}",
     1, 40, "autogroups are not supported"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"a b\"], \"dst\": []}]}", 1, 40,
     "is not a selector"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"198.18.0.1\"], \"dst\": []}]}", 1,
     40, "not in the mesh's addresses"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"web\"]}]}", 1,
     54, "has no port"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:\"]}]}", 1, 54,
     "no ports after"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:0\"]}]}", 1,
     54, "port 0 is not a port"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:65536\"]}]}",
     1, 54, "not a number from 1 to 65535"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:90-80\"]}]}",
     1, 54, "ends before it starts"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:1-x\"]}]}", 1,
     54, "FIRST-LAST"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:22,\"]}]}", 1,
     54, "ends with a ','"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:22,,23\"]}]}",
     1, 54, "an empty entry"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:22\"], "
     "\"proto\": "
     "\"icmp\"}]}",
     1, 54, "ICMP has no ports"},
    {"{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"fd7a::9\"]}]}",
     1, 54,
     "'fd7a:' in acls[0].dst[0]: not an address (an IPv6 destination is written "
     "[ADDRESS]:PORTS)"},
    /* tests */
    {"{\"groups\": {\"group:g\": []}, \"tests\": [{\"src\": \"group:g\", \"accept\": "
     "[]}]}",
     1, 47, "a test names one user"},
    {"{\"tests\": [{\"src\": \"alice@\", \"accept\": [\"100.64.0.1:22-23\"]}]}", 1, 41,
     "a test checks one port"},
    {"{\"tests\": [{\"src\": \"alice@\"}]}", 1, 12, "neither \"accept\" nor \"deny\""},
    {"{\"tests\": [{\"src\": \"alice@\", \"allow\": []}]}", 1, 30,
     "unknown field 'allow'"},
    {"{\"tests\": [{\"accept\": []}]}", 1, 12, "has no \"src\""},
    {"{\"tests\": [{\"src\": \"100.64.0.0/24\", \"accept\": []}]}", 1, 20,
     "not a group, * or a range"},
};

static void every_error_names_its_place(void **state)
{
	for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++)
		expect_err(bads[i].text, bads[i].line, bads[i].col, bads[i].msg);
	/* Columns count characters, not bytes. */
	expect_err("{\"acls\": [{\"action\": \"accept\", \"src\": [/* "
	           "\xc3\xa9\xc3\xa9\xc3\xa9 */ "
	           "\"tag:x\"], \"dst\": []}]}",
	           1, 50, "unknown tag"); /* 53 in bytes */
}

/* A string of n bytes: "{\"acls\": [" + repeat + "]}" style builders. */
static char *repeat(const char *head, const char *item, size_t n, const char *tail)
{
	size_t hl = strlen(head), il = strlen(item), tl = strlen(tail);
	char *s = malloc(hl + il * n + tl + 1), *o = s;
	assert_non_null(s);
	memcpy(o, head, hl);
	o += hl;
	for (size_t i = 0; i < n; i++, o += il)
		memcpy(o, item, il);
	memcpy(o, tail, tl + 1);
	return s;
}

/* A NUL byte outside a string used to stop the scanner where it stood:
 * the parse never returned. */
static void nul_and_control_bytes_are_errors(void **state)
{
	static const char nul[] = "{\"acls\": [\0]}";
	struct policy_error e;
	assert_null(policy_parse(nul, sizeof nul - 1, &e));
	assert_int_equal(e.line, 1);
	assert_non_null(strstr(e.msg, "not valid JSON"));
	static const char nul2[] = "\0";
	assert_null(policy_parse(nul2, 1, &e));
	static const char in_str[] = "{\"hosts\": {\"a\0\": \"100.64.0.1\"}}";
	assert_null(policy_parse(in_str, sizeof in_str - 1, &e));
	assert_non_null(strstr(e.msg, "not valid JSON"));
}

static void limits_have_their_own_errors(void **state)
{
	struct policy_error e;
	char *s;
	/* size */
	s = repeat("{", " ", POLICY_MAX_BYTES, "}");
	assert_null(policy_parse(s, strlen(s), &e));
	assert_int_equal(e.line, 0);
	assert_non_null(strstr(e.msg, "the limit is 1048576"));
	free(s);
	/* depth: 16 levels are fine, 17 are not */
	s = repeat("{\"hosts\": {}, \"x\":", "[", 15, "");
	free(s);
	expect_err("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]", 1, 1, "must be a JSON object");
	expect_err("[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]", 1, 17, "nesting deeper than 16");
	/* values */
	s = repeat("{\"acls\": [", "0,", POLICY_MAX_VALUES, "0]}");
	assert_null(policy_parse(s, strlen(s), &e));
	assert_non_null(strstr(e.msg, "more than 200000 JSON values"));
	free(s);
	/* rules */
	s = repeat("{\"acls\": [",
	           "{\"action\":\"accept\",\"src\":[\"*\"],\"dst\":[\"*:1\"]},",
	           POLICY_MAX_RULES,
	           "{\"action\":\"accept\",\"src\":[\"*\"],\"dst\":[\"*:1\"]}]}");
	assert_null(policy_parse(s, strlen(s), &e));
	assert_int_equal(e.line, 1);
	assert_int_equal(e.column, 10);
	assert_non_null(strstr(e.msg, "holds 10001 rules; the limit is 10000"));
	free(s);
	/* selectors: 2 rules' worth short of the file limit */
	s = repeat("{\"acls\": [{\"action\":\"accept\",\"dst\":[\"*:1\"],\"src\":[",
	           "\"*\",", POLICY_MAX_SELECTORS, "\"*\"]}]}");
	assert_null(policy_parse(s, strlen(s), &e));
	assert_non_null(strstr(e.msg, "more than 100000 selectors"));
	free(s);
	/* tests */
	s = repeat("{\"tests\": [", "{\"src\":\"a@\",\"deny\":[]},", POLICY_MAX_TESTS,
	           "{\"src\":\"a@\",\"deny\":[]}]}");
	assert_null(policy_parse(s, strlen(s), &e));
	assert_non_null(strstr(e.msg, "holds 1001 tests"));
	free(s);
}

/* Places on one long line: each rule's line and column is taken as the
 * file is read (once cost the whole line each: 8 s for 10,000 rules on one
 * 645 KB line); the error after them still has its column right. */
static void places_on_one_long_line(void **state)
{
	const char *rule = "{\"action\":\"accept\",\"src\":[\"*\"],\"dst\":[\"*:1\"]},";
	char *s = repeat("{\"acls\":[", rule, 5000,
	                 "{\"action\":\"accept\",\"src\":[\"group:x\"],\"dst\":[]}]}");
	size_t col = strlen("{\"acls\":[") + 5000 * strlen(rule) +
	             strlen("{\"action\":\"accept\",\"src\":[") + 1;
	expect_err(s, 1, (int)col, "unknown group 'group:x' in acls[5000].src[0]");
	free(s);
}

static void warnings_for_plain_users_and_no_rules(void **state)
{
	struct policy *p = parse_ok(
	    "{\"hosts\": {\"web\": \"100.64.0.5\"},\n \"acls\": [{\"action\": "
	    "\"accept\", \"src\": "
	    "[\"alice\", \"alice\", \"bob@\", \"web\"], \"dst\": [\"web:80\"]}]}");
	assert_int_equal(policy_n_warnings(p),
	                 1); /* once per name; bob@ and the host are clear */
	const struct policy_error *w = policy_warning(p, 0);
	assert_int_equal(w->line, 2);
	assert_int_equal(w->column, 40);
	assert_non_null(strstr(w->msg, "'alice' is read as the user 'alice'"));
	policy_free(p);
	p = parse_ok("{}");
	assert_int_equal(policy_n_warnings(p), 1);
	assert_non_null(strstr(policy_warning(p, 0)->msg, "no acls"));
	policy_free(p);
}

/* --- compiling and matching ------------------------------------------- */

static const char *const srv_tags[] = {"tag:server"};
static const char *const ci_tags[] = {"tag:ci", "tag:server"};

/* alice's laptop, bob's laptop, a server alice tagged, carol's db, a ci box. */
static const struct policy_node nodes5[] = {
    {.id = 1, .name = "alice-laptop", .v4 = 0x64400002, .user = "alice"},
    {.id = 2, .name = "bob-laptop", .v4 = 0x64400003, .user = "bob@example.com"},
    {.id = 3,
     .name = "web",
     .v4 = 0x64400004,
     .has_v6 = true,
     .v6 = {0xfd, 0x7a, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0x64, 0x40, 0, 4},
     .user = "alice",
     .tags = srv_tags,
     .n_tags = 1},
    {.id = 4, .name = "db", .v4 = 0x64400009, .user = "carol"},
    {.id = 5,
     .name = "ci",
     .v4 = 0x64400805,
     .user = "alice", /* tag:server is group:dev's, tag:ci tag:server's */
     .tags = ci_tags,
     .n_tags = 2},
};

static struct policy_ip v4(uint32_t a)
{
	struct policy_ip ip;
	policy_ip_v4(&ip, a);
	return ip;
}

static bool ok(const struct policy_filter *f, uint8_t proto, uint32_t src, uint16_t port)
{
	struct policy_ip ip = v4(src);
	return policy_filter_match(f, proto, &ip, port) == POLICY_ACCEPT;
}

static struct policy_filter *filter_of(struct policy_compiled *cp, size_t i)
{
	struct policy_error e;
	struct policy_filter *f = policy_node_filter(cp, i, &e);
	assert_non_null(f);
	return f;
}

static void filters_match_ports_ranges_groups_tags_and_cidrs(void **state)
{
	struct policy *p = parse_ok(example);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nodes5, 5, &e);
	assert_non_null(cp);
	/* web (tag:server): group:dev on 22 and 80-90, tcp and udp and icmp. */
	struct policy_filter *f = filter_of(cp, 2);
	assert_true(ok(f, POLICY_TCP, 0x64400002, 22));
	assert_true(
	    ok(f, POLICY_UDP, 0x64400003, 22)); /* bob@example.com is in group:dev */
	assert_true(ok(f, POLICY_TCP, 0x64400002, 80));
	assert_true(ok(f, POLICY_TCP, 0x64400002, 85));
	assert_true(ok(f, POLICY_TCP, 0x64400002, 90));
	assert_false(ok(f, POLICY_TCP, 0x64400002, 91));
	assert_false(ok(f, POLICY_TCP, 0x64400002, 79));
	assert_false(ok(f, POLICY_TCP, 0x64400002, 23));
	assert_true(ok(f, POLICY_ICMP, 0x64400002, 0));
	assert_true(ok(f, POLICY_ICMPV6, 0x64400002, 0));
	assert_false(ok(f, 47, 0x64400002, 22));         /* GRE: no rule speaks of it */
	assert_false(ok(f, POLICY_TCP, 0x64400009, 22)); /* carol is not in group:dev */
	assert_false(
	    ok(f, POLICY_TCP, 0x64400004, 22)); /* web itself: tagged, not alice */
	policy_filter_free(f);
	/* db: tag:server (web, ci) and the lab /24 on tcp 5432 only; carol pings. */
	f = filter_of(cp, 3);
	assert_true(ok(f, POLICY_TCP, 0x64400004, 5432));
	assert_true(ok(f, POLICY_TCP, 0x64400805, 5432)); /* ci: in the lab and tagged */
	assert_true(ok(f, POLICY_TCP, 0x64400800, 5432)); /* the lab's first address */
	assert_true(ok(f, POLICY_TCP, 0x644008ff, 5432)); /* and its last */
	assert_false(ok(f, POLICY_TCP, 0x64400900, 5432));
	assert_false(ok(f, POLICY_TCP, 0x644007ff, 5432));
	assert_false(ok(f, POLICY_UDP, 0x64400004, 5432)); /* the rule is tcp only */
	assert_false(ok(f, POLICY_TCP, 0x64400004, 5433));
	assert_false(ok(f, POLICY_ICMP, 0x64400004, 0));
	assert_false(ok(f, POLICY_ICMP, 0x64400002, 0));
	assert_false(ok(f, POLICY_TCP, 0x64400002, 5432));
	/* web's IPv6 address is a source too */
	struct policy_ip w6;
	policy_ip_v6(&w6, nodes5[2].v6);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &w6, 5432), POLICY_ACCEPT);
	assert_int_equal(policy_filter_match(f, POLICY_TCP, &w6, 5431), POLICY_DENY);
	policy_filter_free(f);
	/* alice's laptop accepts nothing: default deny once there is a policy. */
	f = filter_of(cp, 0);
	assert_false(ok(f, POLICY_TCP, 0x64400003, 22));
	assert_false(ok(f, POLICY_ICMP, 0x64400003, 0));
	assert_int_equal(policy_filter_n_blocks(f, POLICY_TCP),
	                 1); /* one gap: everything */
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
}

static void icmp_rule_and_udp_to_ipv6_host(void **state)
{
	struct policy *p = parse_ok(example);
	struct policy_error e;
	/* carol's icmp rule: a node of carol pings db; a udp rule to an IPv6 host. */
	static const struct policy_node n2[] = {
	    {.id = 1, .name = "db", .v4 = 0x64400009, .user = "x"},
	    {.id = 2, .name = "carol-phone", .v4 = 0x64400020, .user = "carol"},
	    {.id = 3,
	     .name = "v6db",
	     .v4 = 0x64400030,
	     .has_v6 = true,
	     .v6 = {0xfd, 0x7a, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}},
	};
	struct policy_compiled *cp = policy_compile(p, n2, 3, &e);
	assert_non_null(cp);
	struct policy_filter *f = filter_of(cp, 0);
	assert_true(ok(f, POLICY_ICMP, 0x64400020, 0));
	assert_false(ok(f, POLICY_TCP, 0x64400020, 1));
	policy_filter_free(f);
	f = filter_of(cp, 2);
	assert_true(ok(f, POLICY_UDP, 0x64400020, 53));
	assert_true(ok(f, POLICY_UDP, 0x01020304, 53)); /* "*" is any source */
	assert_false(ok(f, POLICY_TCP, 0x64400020, 53));
	assert_false(ok(f, POLICY_UDP, 0x64400020, 54));
	policy_filter_free(f);
	policy_compiled_free(cp);
	policy_free(p);
}

static void no_policy_allows_all_and_everyone_sees_everyone(void **state)
{
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(NULL, nodes5, 5, &e);
	assert_non_null(cp);
	struct policy_filter *f = filter_of(cp, 1);
	assert_true(policy_filter_allows_all(f));
	assert_true(ok(f, POLICY_TCP, 0x01020304, 1));
	assert_true(ok(f, 47, 0x01020304, 1));
	policy_filter_free(f);
	size_t *v, n;
	assert_int_equal(policy_node_visible(cp, 1, &v, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0], 0);
	assert_int_equal(v[1], 2);
	free(v);
	size_t passed;
	assert_int_equal(policy_run_tests(cp, &passed, &e), 0);
	policy_compiled_free(cp);
}

static void visibility_is_both_directions(void **state)
{
	struct policy *p = parse_ok(example);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nodes5, 5, &e);
	size_t *v, n;
	/* alice's laptop may reach web (tag:server): sees web; web sees it. */
	assert_int_equal(policy_node_visible(cp, 0, &v, &n), 0);
	assert_int_equal(n, 2); /* web, ci (both tag:server) */
	assert_int_equal(v[0], 2);
	assert_int_equal(v[1], 4);
	free(v);
	/* db: reached by web and ci (tag:server), nothing else. */
	assert_int_equal(policy_node_visible(cp, 3, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0], 2);
	assert_int_equal(v[1], 4);
	free(v);
	/* web sees both laptops (they reach it) and db (it reaches db). */
	assert_int_equal(policy_node_visible(cp, 2, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0], 0);
	assert_int_equal(v[1], 1);
	assert_int_equal(v[2], 3);
	free(v);
	policy_compiled_free(cp);
	policy_free(p);
	/* No rules: nobody sees anybody. */
	p = parse_ok("{\"acls\": []}");
	cp = policy_compile(p, nodes5, 5, &e);
	assert_int_equal(policy_node_visible(cp, 0, &v, &n), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	policy_compiled_free(cp);
	policy_free(p);
}

static void host_alias_named_like_a_user_is_refused(void **state)
{
	struct policy *p =
	    parse_ok("{\"hosts\": {\"carol\": \"100.64.0.9\"}, \"acls\": []}");
	struct policy_error e;
	assert_null(policy_compile(p, nodes5, 5, &e));
	assert_non_null(strstr(e.msg,
	                       "host alias 'carol' is also the name of a user (of node "
	                       "db)"));
	struct policy_compiled *cp = policy_compile(p, NULL, 0, &e);
	assert_non_null(cp);
	policy_compiled_free(cp);
	policy_free(p);
}

/* --- the policy's tests ----------------------------------------------- */

static int policy_tests(const char *text, const struct policy_node *nodes, size_t n,
                        struct policy_error *e)
{
	struct policy *p = parse_ok(text);
	struct policy_compiled *cp = policy_compile(p, nodes, n, e);
	assert_non_null(cp);
	size_t passed;
	int r = policy_run_tests(cp, &passed, e);
	policy_compiled_free(cp);
	policy_free(p);
	return r;
}

static void failing_tests_name_the_test_and_the_rule(void **state)
{
	struct policy_error e;
	const char *head =
	    "{\"groups\": {\"group:dev\": [\"alice@\"]},\n"
	    " \"tagOwners\": {\"tag:server\": [\"group:dev\"]},\n"
	    " \"hosts\": {\"web\": \"100.64.0.4\"},\n"
	    " \"acls\": [{\"action\": \"accept\", \"src\": [\"group:dev\"], "
	    "\"dst\": [\"tag:server:22\"]},\n"
	    "          {\"action\": \"accept\", \"src\": [\"100.64.0.3\"], "
	    "\"dst\": [\"tag:server:80\"]}],\n";
	char buf[2048];
	/* An expected accept that is denied. */
	snprintf(buf, sizeof buf,
	         "%s \"tests\": [{\"src\": \"alice@\", \"accept\": "
	         "[\"tag:server:22\"]},\n {\"src\": \"alice@\", \"accept\": "
	         "[\"tag:server:23\"]}]}",
	         head);
	assert_int_equal(policy_tests(buf, NULL, 0, &e), -1);
	assert_int_equal(e.line, 7);
	assert_int_equal(e.column, 31);
	assert_non_null(
	    strstr(e.msg, "tests[1] failed: alice@ -> tag:server:23 (tcp) is denied"));
	/* An expected deny that a rule accepts: the rule is named. */
	snprintf(buf, sizeof buf,
	         "%s \"tests\": [{\"src\": \"alice@\", \"deny\": "
	         "[\"tag:server:22\"]}]}",
	         head);
	assert_int_equal(policy_tests(buf, NULL, 0, &e), -1);
	assert_non_null(strstr(e.msg, "is accepted by acls[0] (line 4)"));
	/* A user whose node's address another rule lets in: the deny of that
	 * user fails for that node, named. */
	snprintf(buf, sizeof buf,
	         "%s \"tests\": [{\"src\": \"bob@example.com\", \"deny\": "
	         "[\"tag:server:80\"]}]}",
	         head);
	assert_int_equal(policy_tests(buf, NULL, 0, &e),
	                 0); /* no nodes: bob is only bob */
	assert_int_equal(policy_tests(buf, nodes5, 5, &e), -1);
	assert_non_null(
	    strstr(e.msg, "bob@example.com node bob-laptop from 100.64.0.3 -> tag:server "
	                   "node web"));
	assert_non_null(strstr(e.msg, "acls[1]"));
	/* A host alias tested against its node: web is tag:server. */
	snprintf(buf, sizeof buf,
	         "%s \"tests\": [{\"src\": \"alice@\", \"accept\": "
	         "[\"web:22\"], \"deny\": [\"web:80\"]}]}",
	         head);
	assert_int_equal(policy_tests(buf, NULL, 0, &e),
	                 -1); /* no node: an address alone */
	assert_non_null(strstr(e.msg, "an address no node holds"));
	assert_int_equal(policy_tests(buf, nodes5, 5, &e), 0);
	/* proto in tests */
	snprintf(buf, sizeof buf,
	         "%s \"tests\": [{\"src\": \"alice@\", \"proto\": \"udp\", "
	         "\"accept\": [\"tag:server:22\"]}, {\"src\": \"alice@\", "
	         "\"proto\": \"icmp\", \"accept\": [\"tag:server:*\"]}]}",
	         head);
	assert_int_equal(policy_tests(buf, nodes5, 5, &e), 0);
}

/* --- a 1,000-rule random policy against a plain model ----------------- */

#define R_USERS  10
#define R_GROUPS 4
#define R_TAGS   5
#define R_NODES  60
#define R_RULES  1000

enum { M_ANY, M_USER, M_GROUP, M_TAG, M_PREFIX };
struct msel {
	int kind, k;
	uint32_t lo, hi;
};
struct mdst {
	struct msel s;
	int nports;
	uint16_t plo[3], phi[3];
};
struct mrule {
	int protos; /* 1 tcp 2 udp 4 icmp */
	int nsrc, ndst;
	struct msel src[3];
	struct mdst dst[2];
};
struct model {
	bool group[R_GROUPS][R_USERS];
	int user[R_NODES];
	bool tag[R_NODES][R_TAGS];
	bool tagged[R_NODES];
	bool owner[R_TAGS][R_USERS]; /* tagOwners */
	uint32_t addr[R_NODES];
	bool has6[R_NODES]; /* fd7a:115c:a1e0::addr */
	struct mrule rules[R_RULES];
	int n_rules; /* in use */
};

static unsigned rs = 42;
static unsigned rnd(unsigned n)
{
	rs = rs * 1103515245u + 12345u;
	return (rs >> 8) % n;
}

static bool m_node(const struct model *m, const struct msel *s, int i)
{
	switch (s->kind) {
	case M_ANY:
		return true;
	case M_USER:
		return !m->tagged[i] && m->user[i] == s->k;
	case M_GROUP:
		return !m->tagged[i] && m->group[s->k][m->user[i]];
	case M_TAG:
		return m->tag[i][s->k];
	default:
		return m->addr[i] >= s->lo && m->addr[i] <= s->hi;
	}
}

static bool m_src(const struct model *m, const struct msel *s, uint32_t a)
{
	if (s->kind == M_ANY)
		return true;
	if (s->kind == M_PREFIX)
		return a >= s->lo && a <= s->hi;
	for (int i = 0; i < R_NODES; i++)
		if (m->addr[i] == a && m_node(m, s, i))
			return true;
	return false;
}

/* From node j's IPv6 address: the prefixes are IPv4 ones. */
static bool m_src6(const struct model *m, const struct msel *s, int j)
{
	return s->kind == M_ANY || (s->kind != M_PREFIX && m_node(m, s, j));
}

/* From a (IPv4), or from node src6's IPv6 address when src6 >= 0. */
static bool m_accept(const struct model *m, int node, int proto, uint32_t a,
                     uint16_t port, int src6)
{
	if (proto != 4 && port == 0) /* TCP and UDP ports are 1-65535 */
		return false;
	for (int r = 0; r < m->n_rules; r++) {
		const struct mrule *ru = &m->rules[r];
		if (!(ru->protos & proto))
			continue;
		bool s = false;
		for (int k = 0; k < ru->nsrc && !s; k++)
			s = src6 >= 0 ? m_src6(m, &ru->src[k], src6)
			              : m_src(m, &ru->src[k], a);
		if (!s)
			continue;
		for (int d = 0; d < ru->ndst; d++) {
			if (!m_node(m, &ru->dst[d].s, node))
				continue;
			if (proto == 4)
				return true;
			for (int q = 0; q < ru->dst[d].nports; q++)
				if (port >= ru->dst[d].plo[q] &&
				    port <= ru->dst[d].phi[q])
					return true;
		}
	}
	return false;
}

static void rand_sel(struct model *m, struct msel *s, char *out, size_t cap, bool any_ok)
{
	int kind = (int)rnd(100);
	kind = kind < (any_ok ? 2 : 0) ? M_ANY
	       : kind < 30             ? M_USER
	       : kind < 50             ? M_GROUP
	       : kind < 75             ? M_TAG
	                               : M_PREFIX;
	s->kind = kind;
	switch (kind) {
	case M_ANY:
		snprintf(out, cap, "*");
		break;
	case M_USER:
		s->k = (int)rnd(R_USERS);
		snprintf(out, cap, "u%d@", s->k);
		break;
	case M_GROUP:
		s->k = (int)rnd(R_GROUPS);
		snprintf(out, cap, "group:g%d", s->k);
		break;
	case M_TAG:
		s->k = (int)rnd(R_TAGS);
		snprintf(out, cap, "tag:t%d", s->k);
		break;
	default: {
		unsigned bits = 26 + rnd(7); /* /26 .. /32 inside 100.64.0.0/24 */
		uint32_t size = 1u << (32 - bits);
		s->lo = (0x64400000u + rnd(256)) & ~(size - 1);
		s->hi = s->lo + size - 1;
		snprintf(out, cap, "100.64.0.%u/%u", s->lo & 255, bits);
	}
	}
}

static char *random_policy(struct model *m)
{
	size_t cap = 1 << 20, o = 0;
	char *t = malloc(cap);
	assert_non_null(t);
	o += (size_t)snprintf(t + o, cap - o, "{\"groups\": {");
	for (int g = 0; g < R_GROUPS; g++) {
		o += (size_t)snprintf(t + o, cap - o, "%s\"group:g%d\": [", g ? "," : "",
		                      g);
		bool first = true;
		for (int u = 0; u < R_USERS; u++)
			if ((m->group[g][u] = rnd(3) == 0)) {
				o += (size_t)snprintf(t + o, cap - o, "%s\"u%d@\"",
				                      first ? "" : ",", u);
				first = false;
			}
		o += (size_t)snprintf(t + o, cap - o, "]");
	}
	o += (size_t)snprintf(t + o, cap - o, "}, \"tagOwners\": {");
	for (int k = 0; k < R_TAGS; k++) {
		o += (size_t)snprintf(t + o, cap - o, "%s\"tag:t%d\": [", k ? "," : "",
		                      k);
		bool first = true;
		for (int u = 0; u < R_USERS; u++)
			if ((m->owner[k][u] = rnd(3) != 0)) {
				o += (size_t)snprintf(t + o, cap - o, "%s\"u%d@\"",
				                      first ? "" : ",", u);
				first = false;
			}
		o += (size_t)snprintf(t + o, cap - o, "]");
	}
	o += (size_t)snprintf(t + o, cap - o, "}, \"acls\": [\n");
	for (int r = 0; r < m->n_rules; r++) {
		struct mrule *ru = &m->rules[r];
		static const char *const pn[] = {"", "tcp", "udp", "icmp"};
		int pk = (int)rnd(6);
		pk = pk > 3 ? 0 : pk;
		ru->protos = pk == 0 ? 7 : pk == 1 ? 1 : pk == 2 ? 2 : 4;
		ru->nsrc = 1 + (int)rnd(3);
		ru->ndst = 1 + (int)rnd(2);
		o += (size_t)snprintf(
		    t + o, cap - o, "{\"action\": \"accept\", %s%s%s\"src\": [",
		    pk ? "\"proto\": \"" : "", pn[pk], pk ? "\", " : "");
		for (int k = 0; k < ru->nsrc; k++) {
			char sel[64];
			rand_sel(m, &ru->src[k], sel, sizeof sel, true);
			o += (size_t)snprintf(t + o, cap - o, "%s\"%s\"", k ? "," : "",
			                      sel);
		}
		o += (size_t)snprintf(t + o, cap - o, "], \"dst\": [");
		for (int d = 0; d < ru->ndst; d++) {
			struct mdst *md = &ru->dst[d];
			char sel[64], ports[64];
			rand_sel(m, &md->s, sel, sizeof sel, true);
			if (ru->protos == 4 || rnd(8) == 0) {
				md->nports = 1;
				md->plo[0] = 0;
				md->phi[0] = 65535;
				snprintf(ports, sizeof ports, "*");
			} else {
				size_t po = 0;
				md->nports = 1 + (int)rnd(3);
				for (int q = 0; q < md->nports; q++) {
					md->plo[q] = (uint16_t)(1 + rnd(100));
					md->phi[q] = (uint16_t)(md->plo[q] +
					                        (rnd(2) ? rnd(20) : 0));
					po += (size_t)snprintf(ports + po,
					                       sizeof ports - po, "%s%u",
					                       q ? "," : "", md->plo[q]);
					if (md->phi[q] != md->plo[q])
						po += (size_t)snprintf(ports + po,
						                       sizeof ports - po,
						                       "-%u", md->phi[q]);
				}
			}
			o += (size_t)snprintf(t + o, cap - o, "%s\"%s:%s\"", d ? "," : "",
			                      sel, ports);
		}
		o += (size_t)snprintf(t + o, cap - o, "]}%s\n",
		                      r + 1 < m->n_rules ? "," : "");
	}
	snprintf(t + o, cap - o, "]}");
	return t;
}

/* A random policy of n_rules rules over R_NODES nodes: every node's filter
 * for every node address (and some between), protocol and a few ports, and
 * every node's visibility set, against the model; dense: the policy must
 * be neither all-accept nor all-deny. */
static void random_policy_matches_the_model(int n_rules, bool dense)
{
	struct model *m = calloc(1, sizeof *m);
	assert_non_null(m);
	m->n_rules = n_rules;
	struct policy_node nodes[R_NODES];
	static const char *const tagnames[R_TAGS] = {"tag:t0", "tag:t1", "tag:t2",
	                                             "tag:t3", "tag:t4"};
	const char *tagv[R_NODES][R_TAGS];
	char users[R_USERS][16], names[R_NODES][16];
	for (int u = 0; u < R_USERS; u++)
		snprintf(users[u], sizeof users[u], "u%d", u);
	for (int i = 0; i < R_NODES; i++) {
		memset(&nodes[i], 0, sizeof nodes[i]);
		m->user[i] = (int)rnd(R_USERS);
		m->addr[i] = 0x64400000u + (uint32_t)(i * 4 + 1);
		snprintf(names[i], sizeof names[i], "n%d", i);
		nodes[i] = (struct policy_node){.id = (uint64_t)i + 1,
		                                .name = names[i],
		                                .v4 = m->addr[i],
		                                .user = users[m->user[i]]};
		if ((m->has6[i] = i % 2 == 0)) {
			static const uint8_t pre[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
			memcpy(nodes[i].v6, pre, sizeof pre);
			nodes[i].v6[12] = (uint8_t)(m->addr[i] >> 24);
			nodes[i].v6[13] = (uint8_t)(m->addr[i] >> 16);
			nodes[i].v6[14] = (uint8_t)(m->addr[i] >> 8);
			nodes[i].v6[15] = (uint8_t)m->addr[i];
			nodes[i].has_v6 = true;
		}
		if (rnd(3) == 0) {
			for (int k = 0; k < R_TAGS; k++)
				if ((m->tag[i][k] = rnd(3) == 0))
					tagv[i][nodes[i].n_tags++] = tagnames[k];
			m->tagged[i] = nodes[i].n_tags > 0;
			nodes[i].tags = tagv[i];
		}
	}
	char *text = random_policy(m);
	struct policy *p = parse_ok(text);
	free(text);
	/* A tag counts only where the node's user owns it. */
	for (int i = 0; i < R_NODES; i++) {
		m->tagged[i] = false;
		for (int k = 0; k < R_TAGS; k++) {
			m->tag[i][k] = m->tag[i][k] && m->owner[k][m->user[i]];
			m->tagged[i] |= m->tag[i][k];
		}
	}
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nodes, R_NODES, &e);
	assert_non_null(cp);
	static const int protos[3] = {POLICY_TCP, POLICY_UDP, POLICY_ICMP};
	static const int bits[3] = {1, 2, 4};
	size_t accepted = 0, checked = 0;
	for (int i = 0; i < R_NODES; i++) {
		struct policy_filter *f = filter_of(cp, (size_t)i);
		/* every node address, the addresses between them, and one outside */
		for (uint32_t a = 0x64400000u; a < 0x64400000u + R_NODES * 4 + 2;
		     a += a % 4 == 1 ? 1 : 1 + rnd(4))
			for (int t = 0; t < 3; t++)
				for (int q = 0; q < 4; q++) {
					uint16_t port = q == 0   ? 1
					                : q == 1 ? 65535
					                         : (uint16_t)rnd(125);
					struct policy_ip ip = v4(a);
					bool got = policy_filter_match(
					               f, (uint8_t)protos[t], &ip,
					               port) == POLICY_ACCEPT;
					bool want = m_accept(m, i, bits[t], a, port, -1);
					if (got != want)
						fail_msg(
						    "node %d proto %d src 100.64.%u.%u "
						    "port %u: got %d want %d",
						    i, protos[t], (a >> 8) & 255, a & 255,
						    port, got, want);
					accepted += got;
					checked++;
				}
		/* every node's IPv6 address */
		for (int j = 0; j < R_NODES; j++)
			for (int t = 0; t < 3 && m->has6[j]; t++)
				for (int q = 0; q < 3; q++) {
					uint16_t port = q == 0   ? 1
					                : q == 1 ? 65535
					                         : (uint16_t)rnd(125);
					struct policy_ip ip;
					policy_ip_v6(&ip, nodes[j].v6);
					bool got = policy_filter_match(
					               f, (uint8_t)protos[t], &ip,
					               port) == POLICY_ACCEPT;
					bool want = m_accept(m, i, bits[t], 0, port, j);
					if (got != want)
						fail_msg("node %d proto %d from node %d's "
						         "IPv6 port %u: got %d want %d",
						         i, protos[t], j, port, got, want);
				}
		policy_filter_free(f);
		/* visibility: the nodes that may reach i or that i may reach */
		size_t *v, n, k = 0;
		assert_int_equal(policy_node_visible(cp, (size_t)i, &v, &n), 0);
		for (int j = 0; j < R_NODES; j++) {
			bool want = false;
			for (int r = 0; r < m->n_rules && !want && j != i; r++) {
				const struct mrule *ru = &m->rules[r];
				bool si = false, sj = false, di = false, dj = false;
				for (int s = 0; s < ru->nsrc; s++) {
					si |= m_node(m, &ru->src[s], i);
					sj |= m_node(m, &ru->src[s], j);
				}
				for (int d = 0; d < ru->ndst; d++) {
					di |= m_node(m, &ru->dst[d].s, i);
					dj |= m_node(m, &ru->dst[d].s, j);
				}
				want = (si && dj) || (di && sj);
			}
			bool got = k < n && v[k] == (size_t)j;
			k += got;
			if (got != want)
				fail_msg("node %d sees %d: got %d want %d", i, j, got,
				         want);
		}
		free(v);
	}
	if (dense) {
		assert_true(accepted > checked / 20);
		assert_true(accepted < checked - checked / 20);
	} else {
		assert_true(accepted > 0);
	}
	policy_compiled_free(cp);
	policy_free(p);
	free(m);
}

static void thousand_rules_match_the_model(void **state)
{
	random_policy_matches_the_model(R_RULES, true);
}

/* Few rules: most pairs of nodes see each other one way only, or not. */
static void sparse_policy_matches_the_model(void **state)
{
	for (int k = 0; k < 5; k++)
		random_policy_matches_the_model(8, false);
}

/* A filter that would hold too many ranges is refused, naming the node. */
static void oversized_filter_is_refused(void **state)
{
	size_t cap = 4 << 20, o = 0;
	char *t = malloc(cap);
	assert_non_null(t);
	/* 1,100 ports from anywhere, and 1,100 single sources with a port each:
	 * every source block holds about 1,100 ranges: over a million. */
	o += (size_t)snprintf(
	    t + o, cap - o,
	    "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [");
	for (int i = 0; i < 1100; i++)
		o += (size_t)snprintf(t + o, cap - o, "%s\"*:%d\"", i ? "," : "",
		                      2 * i + 1);
	o += (size_t)snprintf(t + o, cap - o, "]}");
	for (int i = 0; i < 1100; i++)
		o += (size_t)snprintf(
		    t + o, cap - o,
		    ",{\"action\": \"accept\", \"src\": [\"100.64.%d.%d\"], "
		    "\"dst\": [\"*:%d\"]}",
		    i / 250, 1 + i % 250, 2 * i + 2);
	snprintf(t + o, cap - o, "]}");
	struct policy *p = parse_ok(t);
	free(t);
	struct policy_error e;
	struct policy_compiled *cp = policy_compile(p, nodes5, 1, &e);
	assert_non_null(cp);
	assert_null(policy_node_filter(cp, 0, &e));
	assert_non_null(
	    strstr(e.msg, "node alice-laptop: its filter would hold more than"));
	policy_compiled_free(cp);
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(comments_trailing_commas_and_sections),
	    cmocka_unit_test(every_error_names_its_place),
	    cmocka_unit_test(nul_and_control_bytes_are_errors),
	    cmocka_unit_test(limits_have_their_own_errors),
	    cmocka_unit_test(places_on_one_long_line),
	    cmocka_unit_test(warnings_for_plain_users_and_no_rules),
	    cmocka_unit_test(filters_match_ports_ranges_groups_tags_and_cidrs),
	    cmocka_unit_test(icmp_rule_and_udp_to_ipv6_host),
	    cmocka_unit_test(no_policy_allows_all_and_everyone_sees_everyone),
	    cmocka_unit_test(visibility_is_both_directions),
	    cmocka_unit_test(host_alias_named_like_a_user_is_refused),
	    cmocka_unit_test(failing_tests_name_the_test_and_the_rule),
	    cmocka_unit_test(thousand_rules_match_the_model),
	    cmocka_unit_test(sparse_policy_matches_the_model),
	    cmocka_unit_test(oversized_filter_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
