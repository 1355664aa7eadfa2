/* Unit tests for pxe/ui.c: which paths are the dashboard's, the redirect,
 * the files and their types (byte for byte the ones in templates/web/),
 * 404 for anything else, the security and caching headers on every reply,
 * ETag revalidation (304) with the If-None-Match forms browsers send, and
 * that the built-in page keeps to its own Content-Security-Policy (no
 * inline script, style attributes or event handlers; no HTML built from
 * strings in app.js; nothing loaded from another origin). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pxe/ui.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *header(const struct ui_reply *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static char *slurp(const char *rel, size_t *ret_len)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", RB_SRCDIR, rel);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

static void assert_security_headers(const struct ui_reply *r)
{
	const char *csp = header(r, "Content-Security-Policy");

	assert_non_null(csp);
	assert_non_null(strstr(csp, "default-src 'none'"));
	assert_non_null(strstr(csp, "script-src 'self';"));
	assert_non_null(strstr(csp, "style-src 'self';"));
	assert_non_null(strstr(csp, "connect-src 'self'"));
	assert_non_null(strstr(csp, "frame-ancestors 'none'"));
	assert_null(strstr(csp, "unsafe"));
	assert_string_equal(header(r, "X-Content-Type-Options"), "nosniff");
	assert_string_equal(header(r, "Referrer-Policy"), "no-referrer");
	assert_string_equal(header(r, "X-Frame-Options"), "DENY");
	assert_non_null(header(r, "Cache-Control"));
}

static void test_path_matches(void **state)
{
	static const struct {
		const char *path;
		bool want;
	} cases[] = {
		{ "/ui", true },     { "/ui/", true },        { "/ui/app.js", true },
		{ "/ui/a/b", true }, { "/uix", false },       { "/ui.html", false },
		{ "/", false },      { "/api/v1/ui", false }, { "ui/", false },
		{ "", false },       { "/UI/", false },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++)
		assert_int_equal(ui_path_matches(cases[i].path), cases[i].want);
	assert_false(ui_path_matches(NULL));
}

static void test_redirect(void **state)
{
	struct ui_reply r;

	(void)state;
	ui_handle("/ui", NULL, &r);
	assert_int_equal(r.status, 301);
	assert_string_equal(header(&r, "Location"), "/ui/");
	assert_int_equal(r.len, 0);
	assert_security_headers(&r);
}

static void test_files(void **state)
{
	static const struct {
		const char *path, *file, *type;
	} cases[] = {
		{ "/ui/", "templates/web/index.html", "text/html; charset=utf-8" },
		{ "/ui/index.html", "templates/web/index.html", "text/html; charset=utf-8" },
		{ "/ui/app.js", "templates/web/app.js", "text/javascript; charset=utf-8" },
		{ "/ui/app.css", "templates/web/app.css", "text/css; charset=utf-8" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct ui_reply r;
		size_t len;
		char *want = slurp(cases[i].file, &len);

		ui_handle(cases[i].path, NULL, &r);
		assert_int_equal(r.status, 200);
		assert_string_equal(header(&r, "Content-Type"), cases[i].type);
		assert_string_equal(header(&r, "Cache-Control"), "no-cache");
		assert_int_equal(r.len, len);
		assert_memory_equal(r.body, want, len);
		assert_security_headers(&r);
		free(want);
	}
}

static void test_not_found(void **state)
{
	static const char *paths[] = {
		"/ui/nope.js", "/ui/x/app.js", "/ui/../app.js", "/ui//",
		"/ui/app.js/", "/ui/APP.JS",   "/ui/.",         "/ui/app.js.",
	};

	(void)state;
	for (size_t i = 0; i < N(paths); i++) {
		struct ui_reply r;

		ui_handle(paths[i], NULL, &r);
		assert_int_equal(r.status, 404);
		assert_string_equal(header(&r, "Content-Type"), "text/plain; charset=utf-8");
		assert_string_equal(header(&r, "Cache-Control"), "no-store");
		assert_null(header(&r, "ETag"));
		assert_true(r.len > 0);
		assert_security_headers(&r);
	}
}

static void test_etag(void **state)
{
	struct ui_reply a, b, c;
	char inm[160];

	(void)state;
	ui_handle("/ui/app.js", NULL, &a);
	ui_handle("/ui/app.css", NULL, &b);
	assert_non_null(header(&a, "ETag"));
	assert_int_equal(strlen(a.etag), 18); /* "<16 hex>" */
	assert_string_not_equal(a.etag, b.etag);
	ui_handle("/ui/app.js", NULL, &c);
	assert_string_equal(a.etag, c.etag); /* stable */

	{
		/* If-None-Match = pre + (the ETag if with_tag) + post */
		static const struct {
			const char *pre, *post;
			bool with_tag, hit;
		} cases[] = {
			{ "", "", true, true },          { "W/", "", true, true },
			{ "\"x\", ", "", true, true },   { "\"x\",", " , \"y\"", true, true },
			{ "*", "", false, true },        { " ", " ", true, true },
			{ "", "", false, false },        { "\"x\"", "", false, false },
			{ "W/\"x\"", "", false, false }, { "", "-", true, false },
			{ "\"\"", "", false, false },    { ",", "", false, false },
		};

		for (size_t i = 0; i < N(cases); i++) {
			snprintf(inm, sizeof(inm), "%s%s%s", cases[i].pre,
			         cases[i].with_tag ? a.etag : "", cases[i].post);
			ui_handle("/ui/app.js", inm, &c);
			if (!cases[i].hit) {
				assert_int_equal(c.status, 200);
				continue;
			}
			assert_int_equal(c.status, 304);
			assert_int_equal(c.len, 0);
			assert_string_equal(header(&c, "ETag"), a.etag);
			assert_security_headers(&c);
		}
	}
	/* Another file's tag does not revalidate this one. */
	snprintf(inm, sizeof(inm), "%s", b.etag);
	ui_handle("/ui/app.js", inm, &c);
	assert_int_equal(c.status, 200);
}

/* The page must work under its own CSP: a browser silently drops inline
 * script, style attributes and on* handlers, so they must not be there. */
static void test_page_obeys_csp(void **state)
{
	static const char *html_banned[] = {
		"<script>",   "<script type", " style=", " onclick=", " onload=", " onsubmit=",
		" onchange=", "javascript:",  "http://", "https://",  "<style"
	};
	static const char *js_banned[] = { ".innerHTML",     ".outerHTML",   "insertAdjacentHTML",
		                           "document.write", "eval(",        "new Function",
		                           "EventSource(",   "access_token", "localStorage.setItem",
		                           "http://",        "https://" };
	static const char *css_banned[] = { "@import", "url(http", "url(//" };
	struct ui_reply r;
	char *s;

	(void)state;
	ui_handle("/ui/", NULL, &r);
	s = strndup(r.body, r.len);
	assert_non_null(s);
	for (size_t i = 0; i < N(html_banned); i++)
		if (strstr(s, html_banned[i]))
			fail_msg("index.html holds \"%s\", which the CSP blocks or forbids",
			         html_banned[i]);
	assert_non_null(strstr(s, "<script src=\"app.js\" defer></script>"));
	free(s);
	ui_handle("/ui/app.js", NULL, &r);
	s = strndup(r.body, r.len);
	assert_non_null(s);
	for (size_t i = 0; i < N(js_banned); i++)
		if (strstr(s, js_banned[i]))
			fail_msg("app.js holds \"%s\"", js_banned[i]);
	free(s);
	ui_handle("/ui/app.css", NULL, &r);
	s = strndup(r.body, r.len);
	assert_non_null(s);
	for (size_t i = 0; i < N(css_banned); i++)
		if (strstr(s, css_banned[i]))
			fail_msg("app.css holds \"%s\"", css_banned[i]);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_matches), cmocka_unit_test(test_redirect),
		cmocka_unit_test(test_files),        cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_etag),         cmocka_unit_test(test_page_obeys_csp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
