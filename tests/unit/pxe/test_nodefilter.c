/* Node list filters (nodefilter.c): query decoding (escapes, '+', %00,
 * bounds), the filters each key makes, unknown keys refused, and the
 * matching of node documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/nodefilter.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_query_next(void **state)
{
	const char *cur = "a=1&&b=x%20y+z&c&d=%41%3d";
	char k[16], v[16], err[100];

	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 1);
	assert_string_equal(k, "a");
	assert_string_equal(v, "1");
	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 1);
	assert_string_equal(k, "b");
	assert_string_equal(v, "x y z");
	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 1);
	assert_string_equal(k, "c");
	assert_string_equal(v, "");
	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 1);
	assert_string_equal(v, "A=");
	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 0);
	assert_int_equal(query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)), 0);
}

static void test_query_bad(void **state)
{
	static const char *const bad[] = { "a=%",
		                           "a=%4",
		                           "a=%zz",
		                           "a=%00",
		                           "%=1",
		                           "a=%g1",
		                           "a=0123456789abcdef" /* too long */ };
	char k[16], v[16], err[100];

	for (size_t i = 0; i < N(bad); i++) {
		const char *cur = bad[i];

		if (query_next(&cur, k, sizeof(k), v, sizeof(v), err, sizeof(err)) != -EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(strstr(err, "query:"));
	}
}

static void test_parse(void **state)
{
	struct node_filter f;
	char err[200];

	assert_int_equal(node_filter_parse(NULL, &f, err, sizeof(err)), 0);
	assert_int_equal(f.n_states + f.n_profiles + f.n_racks + f.n_labels, 0);
	assert_int_equal(f.held, -1);
	assert_int_equal(node_filter_parse("state=ready,failed&profile=gpu&profile=&rack=r1"
	                                   "&label=tenant=a%3Db&label=gpu&held=true",
	                                   &f, err, sizeof(err)),
	                 0);
	assert_int_equal(f.n_states, 2);
	assert_string_equal(f.states[1], "failed");
	assert_int_equal(f.n_profiles, 2);
	assert_string_equal(f.profiles[1], ""); /* "no profile set" */
	assert_string_equal(f.racks[0], "r1");
	assert_int_equal(f.n_labels, 2);
	assert_string_equal(f.labels[0].key, "tenant");
	assert_string_equal(f.labels[0].value, "a=b");
	assert_false(f.labels[0].any_value);
	assert_true(f.labels[1].any_value);
	assert_int_equal(f.held, 1);
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *q, *want;
	} bad[] = {
		{ "colour=red", "unknown filter \"colour\"" },
		{ "held=maybe", "held must be true or false" },
		{ "label==x", "label must be KEY=VALUE" },
		{ "label=", "label must be KEY=VALUE" },
		{ "state=%zz", "bad %-escape" },
		{ "state=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "longer than 23 bytes" },
		{ "state=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 values" },
	};
	struct node_filter f;
	char err[200], big[NODE_FILTER_QUERY_MAX + 10];

	for (size_t i = 0; i < N(bad); i++) {
		err[0] = '\0';
		if (node_filter_parse(bad[i].q, &f, err, sizeof(err)) != -EINVAL ||
		    !strstr(err, bad[i].want))
			fail_msg("\"%s\": \"%s\", want \"%s\"", bad[i].q, err, bad[i].want);
	}
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "state=", 6);
	assert_int_equal(node_filter_parse(big, &f, err, sizeof(err)), -EINVAL);
}

static void test_match(void **state)
{
	json_t *a =
	        json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:b}", "state", "ready", "profile", "gpu",
	                  "rack", "r1", "labels", "tenant", "a", "role", "db", "held", 0);
	json_t *b = json_pack("{s:s, s:s, s:s, s:{}, s:b}", "state", "imaging", "profile", "",
	                      "rack", "", "labels", "held", 1);
	static const struct {
		const char *q;
		bool a, b;
	} vecs[] = {
		{ "", true, true },
		{ "state=ready", true, false },
		{ "state=imaging,ready", true, true },
		{ "profile=gpu", true, false },
		{ "profile=", false, true },
		{ "rack=r1", true, false },
		{ "label=tenant=a", true, false },
		{ "label=tenant=b", false, false },
		{ "label=role", true, false },
		{ "label=tenant=a&label=role=db", true, false },
		{ "label=tenant=a&label=role=web", false, false },
		{ "held=true", false, true },
		{ "held=0", true, false },
		{ "state=ready&held=true", false, false },
	};
	char err[200];

	assert_non_null(a);
	assert_non_null(b);
	for (size_t i = 0; i < N(vecs); i++) {
		struct node_filter f;

		assert_int_equal(node_filter_parse(vecs[i].q, &f, err, sizeof(err)), 0);
		if (node_filter_match(&f, a) != vecs[i].a || node_filter_match(&f, b) != vecs[i].b)
			fail_msg("\"%s\": matched a=%d b=%d", vecs[i].q, node_filter_match(&f, a),
			         node_filter_match(&f, b));
	}
	json_decref(a);
	json_decref(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_next), cmocka_unit_test(test_query_bad),
		cmocka_unit_test(test_parse),      cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
