/* Conditional requests: If-None-Match and If-Modified-Since evaluated as
 * RFC 9110 13.1.2, 13.1.3 and 13.2.2 order them for GET and HEAD.
 *
 * Owns nothing and allocates nothing: both headers are read in place, the
 * caller keeps them. Must never touch a socket or a file, and never read
 * past a header's terminating NUL (the input is the client's). */
#include "pxe/httpcond.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"

bool http_etag_matches(const char *if_none_match, const char *etag)
{
	const char *p = if_none_match;
	size_t n;

	if (!p || !etag || !*etag)
		return false;
	n = strlen(etag);
	while (*p) {
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (*p == '*')
			return true;
		end = p;
		while (*end && *end != ',')
			end++;
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t)(end - p) == n && memcmp(p, etag, n) == 0)
			return true;
		p = end;
		while (*p && *p != ',')
			p++;
	}
	return false;
}

int http_parse_date(const char *s, time_t *ret_t)
{
	/* The three forms of RFC 9110 5.6.7; strptime's %a/%b/%A are the C
	 * locale's names, which rackbootd runs in. */
	static const char *const forms[] = {
		"%a, %d %b %Y %H:%M:%S GMT",
		"%A, %d-%b-%y %H:%M:%S GMT",
		"%a %b %e %H:%M:%S %Y",
	};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < RB_ARRAY_SIZE(forms); i++) {
		struct tm tm;
		const char *end;
		time_t t;

		memset(&tm, 0, sizeof(tm));
		end = strptime(s, forms[i], &tm);
		if (!end || *end != '\0')
			continue;
		t = timegm(&tm);
		if (t == (time_t)-1)
			return -EINVAL;
		*ret_t = t;
		return 0;
	}
	return -EINVAL;
}

bool http_not_modified(const char *if_none_match, const char *if_modified_since, const char *etag,
                       time_t mtime, time_t now)
{
	time_t since;

	if (if_none_match)
		return http_etag_matches(if_none_match, etag);
	if (!if_modified_since || http_parse_date(if_modified_since, &since) < 0)
		return false;
	if (since > now) /* a date in the future says nothing (RFC 7232 3.3) */
		return false;
	return mtime <= since;
}
