/* "host[:port]" entries of a download allowlist (rackbootd.conf
 * http.repo_hosts, the plan's repo_hosts, rackboot-agent --allow-host).
 * Pure parsing; see common/hostport.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define RB_HOST_MAX       256 /* a normalised host name with its NUL */
#define RB_REPO_HOSTS_MAX 31  /* http.repo_hosts entries (the plan's image.repo_hosts) */

/* Puts a host name in the one form two spellings of a host share: lower
 * case, without one trailing '.', an IPv6 literal without brackets in
 * inet_ntop() form. -EINVAL for "" or anything that is neither a DNS name
 * (letters, digits, '-', '_', '.'; labels of 1 to 63) nor an IPv4/IPv6
 * literal. len is the name's length (it need not be NUL-terminated). */
int rb_host_normalize(const char *name, size_t len, char ret[RB_HOST_MAX]);

/* Parses an allowlist entry: "host", "host:port", "[v6]", "[v6]:port" or a
 * bare IPv6 literal. *ret_port is 0 when no port is given (any port).
 * -EINVAL for anything else (a scheme, a path, userinfo, port 0 or over
 * 65535, spaces). */
int rb_hostport_parse(const char *s, char ret_host[RB_HOST_MAX], unsigned *ret_port);
