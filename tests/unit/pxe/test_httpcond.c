/* Unit tests for pxe/httpcond.c: If-None-Match lists (strong, weak, "*",
 * spaces, tags that only share a prefix), the three HTTP-date forms and
 * what is refused, and the RFC 9110 order: If-None-Match decides when it
 * is present, If-Modified-Since only without it and only when valid and
 * not in the future. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "pxe/httpcond.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_etag_matches(void **state)
{
	static const struct {
		const char *inm, *etag;
		bool want;
	} v[] = {
		{ "\"a1-b2\"", "\"a1-b2\"", true },
		{ "W/\"a1-b2\"", "\"a1-b2\"", true },
		{ "*", "\"a1-b2\"", true },
		{ " W/* ", "\"x\"", true },
		{ "\"x\", \"a1-b2\"", "\"a1-b2\"", true },
		{ "\"x\",W/\"a1-b2\"  ,\"y\"", "\"a1-b2\"", true },
		{ "\"a1-b2\"\t", "\"a1-b2\"", true },
		{ "\"a1-b\"", "\"a1-b2\"", false },   /* a prefix */
		{ "\"a1-b2x\"", "\"a1-b2\"", false }, /* longer */
		{ "a1-b2", "\"a1-b2\"", false },      /* no quotes */
		{ "", "\"a1-b2\"", false },
		{ ",,, ,", "\"a1-b2\"", false },
		{ "\"x\", \"y\"", "\"a1-b2\"", false },
		{ "\"a1-b2\"", "", false }, /* no tag to match */
	};

	(void)state;
	for (size_t i = 0; i < N(v); i++) {
		if (http_etag_matches(v[i].inm, v[i].etag) != v[i].want)
			fail_msg("If-None-Match '%s' vs %s: want %d", v[i].inm, v[i].etag,
			         v[i].want);
	}
	assert_false(http_etag_matches(NULL, "\"a\""));
	assert_false(http_etag_matches("*", NULL));
}

static void test_parse_date(void **state)
{
	static const struct {
		const char *s;
		int want;
		time_t t;
	} v[] = {
		{ "Sun, 06 Nov 1994 08:49:37 GMT", 0, 784111777 },
		{ "Sunday, 06-Nov-94 08:49:37 GMT", 0, 784111777 },
		{ "Sun Nov  6 08:49:37 1994", 0, 784111777 },
		{ "Thu, 01 Jan 1970 00:00:00 GMT", 0, 0 },
		{ "Tue, 19 Jan 2038 03:14:08 GMT", 0, (time_t)2147483648LL },
		{ "Sun, 06 Nov 1994 08:49:37 GMT junk", -EINVAL, 0 },
		{ "Sun, 06 Nov 1994 08:49:37", -EINVAL, 0 },
		{ "Sun, 06 Nov 1994 08:49:37 PST", -EINVAL, 0 },
		{ "Sun, 06 Foo 1994 08:49:37 GMT", -EINVAL, 0 },
		{ "784111777", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
	};
	time_t t;

	(void)state;
	for (size_t i = 0; i < N(v); i++) {
		t = 42;
		if (http_parse_date(v[i].s, &t) != v[i].want)
			fail_msg("'%s': want %d", v[i].s, v[i].want);
		if (v[i].want == 0 && t != v[i].t)
			fail_msg("'%s': %lld, want %lld", v[i].s, (long long)t, (long long)v[i].t);
		if (v[i].want != 0 && t != 42)
			fail_msg("'%s': ret_t written on failure", v[i].s);
	}
	assert_int_equal(http_parse_date(NULL, &t), -EINVAL);
}

static void test_not_modified(void **state)
{
	const char *etag = "\"10-5f-0\"";
	const char *at = "Sun, 06 Nov 1994 08:49:37 GMT"; /* 784111777 */
	const time_t mtime = 784111777, now = 784200000;

	(void)state;
	assert_false(http_not_modified(NULL, NULL, etag, mtime, now));
	assert_true(http_not_modified(etag, NULL, etag, mtime, now));
	assert_false(http_not_modified("\"other\"", NULL, etag, mtime, now));
	/* If-Modified-Since: mtime no later than the date */
	assert_true(http_not_modified(NULL, at, etag, mtime, now));
	assert_true(http_not_modified(NULL, at, etag, mtime - 100, now));
	assert_false(http_not_modified(NULL, at, etag, mtime + 1, now));
	/* If-None-Match present: If-Modified-Since is not looked at */
	assert_false(http_not_modified("\"other\"", at, etag, mtime, now));
	assert_true(http_not_modified(etag, "Thu, 01 Jan 1970 00:00:00 GMT", etag, mtime, now));
	/* an invalid date, or one in the future, is ignored */
	assert_false(http_not_modified(NULL, "yesterday", etag, mtime, now));
	assert_false(http_not_modified(NULL, at, etag, mtime, mtime - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_etag_matches),
		cmocka_unit_test(test_parse_date),
		cmocka_unit_test(test_not_modified),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
