/* The web dashboard: templates/web/ built into rackbootd and served under
 * /ui/. Independent of the HTTP library: http.c passes the decoded path and
 * the If-None-Match header and sends back what this returns. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define UI_HEADERS_MAX 10

struct ui_header {
	const char *name, *value;
};

struct ui_reply {
	unsigned status;  /* 200, 301, 304 or 404 */
	const char *body; /* static: never freed; "" when there is none */
	size_t len;
	struct ui_header headers[UI_HEADERS_MAX]; /* Content-Type, CSP, caching, ... */
	size_t n_headers;
	char etag[24]; /* the ETag header's value points here: do not copy the reply */
};

/* True for "/ui" and every path below "/ui/". */
bool ui_path_matches(const char *path);

/* Answers a GET or HEAD of path (one ui_path_matches() accepts):
 * "/ui" is 301 to "/ui/", "/ui/" the page, "/ui/<file>" one of its files,
 * anything else 404. A matching If-None-Match (may be NULL) is 304. Every
 * reply carries the security headers. Pure and thread-safe; allocates
 * nothing. */
void ui_handle(const char *path, const char *if_none_match, struct ui_reply *ret);
