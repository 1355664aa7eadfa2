/* Conditional requests (RFC 9110 section 13): If-None-Match against an
 * entity tag, If-Modified-Since against a modification time. Pure
 * parsing of two request headers; no I/O, no HTTP library. Used by the
 * static files (http.c), the dashboard (ui.c) and /desired (api.c). */
#pragma once
#include <stdbool.h>
#include <time.h>

/* Whether an If-None-Match value ("*", or a comma-separated list of
 * entity tags, weak ones (W/"...") too: the weak comparison is the one for
 * GET and HEAD) names etag, quotes included. False when either is NULL
 * or etag is empty. */
bool http_etag_matches(const char *if_none_match, const char *etag);

/* Parses an HTTP-date in any of the three forms a recipient must accept:
 * IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850
 * ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37
 * 1994"). 0 and *ret_t (seconds since the epoch, UTC) on success,
 * -EINVAL for anything else, trailing bytes included. */
int http_parse_date(const char *s, time_t *ret_t);

/* Whether a GET or HEAD of a representation with this etag and mtime
 * is answered 304 Not Modified: when If-None-Match is present it alone
 * decides (http_etag_matches()); otherwise If-Modified-Since does, when it
 * is a valid date no later than now: not modified when mtime is no later
 * than it (HTTP dates have whole seconds). Either header may be NULL. */
bool http_not_modified(const char *if_none_match, const char *if_modified_since, const char *etag,
                       time_t mtime, time_t now);
