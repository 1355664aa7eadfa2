/* hostport: the host names and "host[:port]" entries of the agent's
 * download allowlist, in one normalised form so that two spellings of one
 * host compare equal and no spelling of another host does.
 *
 * A name is compared as text after normalisation: lower case, one trailing
 * '.' dropped (a fully qualified name is the same host), IPv6 literals
 * without brackets in inet_ntop() form ("::0001" is "::1"). Numeric IPv4
 * must be a plain dotted quad: "127.1" or "0x7f.1" are refused as entries
 * (libcurl rewrites such URL hosts to the dotted quad, so an entry spelled
 * that way could never match and would only mislead).
 *
 * Owns nothing; pure parsing, no I/O, no DNS: a name and the address it
 * resolves to are different entries. Never accepts userinfo, a scheme, a
 * path or an IPv6 zone: an entry is a host and maybe a port, nothing else. */
#include "common/hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/util.h"

static int v6_normalize(const char *name, size_t len, char ret[RB_HOST_MAX])
{
	struct in6_addr a;
	char buf[INET6_ADDRSTRLEN];

	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, name, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, &a) != 1 || !inet_ntop(AF_INET6, &a, ret, RB_HOST_MAX))
		return -EINVAL;
	return 0;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

int rb_host_normalize(const char *name, size_t len, char ret[RB_HOST_MAX])
{
	char out[RB_HOST_MAX];
	bool numeric = true;
	size_t label = 0;
	struct in_addr a4;

	if (len >= 2 && name[0] == '[' && name[len - 1] == ']')
		return v6_normalize(name + 1, len - 2, ret);
	if (memchr(name, ':', len))
		return v6_normalize(name, len, ret);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!name_char(c))
			return -EINVAL;
		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else if (++label > 63) {
			return -EINVAL;
		}
		if (c != '.' && (c < '0' || c > '9'))
			numeric = false;
		out[i] = c;
	}
	if (label == 0)
		return -EINVAL;
	out[len] = '\0';
	/* All digits and dots: an IPv4 literal, and only the dotted quad. */
	if (numeric && inet_pton(AF_INET, out, &a4) != 1)
		return -EINVAL;
	memcpy(ret, out, len + 1);
	return 0;
}

static int port_parse(const char *s, unsigned *ret)
{
	long long v;

	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5 ||
	    rb_strtonum(s, 1, 65535, &v) < 0)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

int rb_hostport_parse(const char *s, char ret_host[RB_HOST_MAX], unsigned *ret_port)
{
	char host[RB_HOST_MAX];
	const char *colon, *end;
	unsigned port = 0;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || rb_host_normalize(s, (size_t)(end - s) + 1, host) < 0)
			return -EINVAL;
		if (end[1] != '\0' && (end[1] != ':' || port_parse(end + 2, &port) < 0))
			return -EINVAL;
	} else if ((colon = strchr(s, ':')) && strchr(colon + 1, ':')) {
		/* two colons or more: a bare IPv6 literal, no port */
		if (rb_host_normalize(s, strlen(s), host) < 0)
			return -EINVAL;
	} else {
		size_t n = colon ? (size_t)(colon - s) : strlen(s);

		if (rb_host_normalize(s, n, host) < 0 ||
		    (colon && port_parse(colon + 1, &port) < 0))
			return -EINVAL;
	}
	memcpy(ret_host, host, strlen(host) + 1);
	*ret_port = port;
	return 0;
}
