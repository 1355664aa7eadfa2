/* The agent's download allowlist: host normalisation and "host[:port]"
 * entries (common/hostport.c), URL hosts as libcurl reads them, matching,
 * the refusal message, and the plan's image.repo_hosts. Tables of vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/hosts.h"
#include "agent/plan.h"
#include "common/hostport.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void test_hostport_parse(void **state)
{
	static const struct {
		const char *in, *host;
		unsigned port;
	} good[] = {
		{ "repo.example", "repo.example", 0 },
		{ "Repo.EXAMPLE", "repo.example", 0 },
		{ "repo.example.", "repo.example", 0 },
		{ "cache1.rack3.example:8080", "cache1.rack3.example", 8080 },
		{ "10.0.0.5:8080", "10.0.0.5", 8080 },
		{ "10.0.0.5", "10.0.0.5", 0 },
		{ "[fd00::5]:8080", "fd00::5", 8080 },
		{ "[FD00:0::0005]", "fd00::5", 0 },
		{ "fd00::5", "fd00::5", 0 },
		{ "under_score-1.example:1", "under_score-1.example", 1 },
		{ "h:65535", "h", 65535 },
	};
	static const char *const bad[] = {
		"",
		":80",
		"http://repo.example",
		"repo.example/",
		"repo.example/repo",
		"user@repo.example",
		"repo@evil",
		"repo.example:0",
		"repo.example:65536",
		"repo.example:+80",
		"repo.example: 80",
		"repo.example:80:",
		"repo .example",
		"repo..example",
		".repo.example",
		"repo.example..",
		"127.1",
		"1.2.3.4.5",
		"01.2.3.4",
		"256.0.0.1",
		"[fd00::5",
		"[fd00::5]x",
		"[fd00::5]:",
		"[repo.example]",
		"fe80::1%eth0",
		"[::1]:8080:1",
		"r\xc3\xa9po.example",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
	};
	char host[RB_HOST_MAX];
	unsigned port;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		port = 99;
		assert_int_equal(rb_hostport_parse(good[i].in, host, &port), 0);
		assert_string_equal(host, good[i].host);
		assert_int_equal(port, good[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (rb_hostport_parse(bad[i], host, &port) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(rb_hostport_parse(NULL, host, &port), -EINVAL);
}

static void test_url_host(void **state)
{
	static const struct {
		const char *url, *host;
		unsigned port;
	} good[] = {
		{ "http://repo.example/repo", "repo.example", 80 },
		{ "https://repo.example/repo", "repo.example", 443 },
		{ "HTTP://REPO.Example:8080/x", "repo.example", 8080 },
		{ "http://repo.example.:80/x", "repo.example", 80 },
		/* userinfo is not the host */
		{ "http://repo.example@evil/x", "evil", 80 },
		{ "http://repo.example:8080@evil:81/x", "evil", 81 },
		{ "http://user:pw@repo.example/x", "repo.example", 80 },
		{ "http://[::1]:8080/x", "::1", 8080 },
		{ "http://[0:0::1]/x", "::1", 80 },
		{ "https://[FD00::5]/x", "fd00::5", 443 },
		{ "http://10.0.0.5:8080/repo", "10.0.0.5", 8080 },
		/* libcurl reads numeric shorthands as the address they mean */
		{ "http://127.1:8080/", "127.0.0.1", 8080 },
		{ "http://0x7f.0.0.1/", "127.0.0.1", 80 },
		/* a query or fragment holding '@' or '/' changes nothing */
		{ "http://repo.example/x?u=http://evil/", "repo.example", 80 },
		{ "http://repo.example#@evil/", "repo.example", 80 },
	};
	struct agent_host h;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&h, 0, sizeof(h));
		if (agent_url_host(good[i].url, &h) != 0)
			fail_msg("refused %s", good[i].url);
		assert_string_equal(h.name, good[i].host);
		assert_int_equal(h.port, good[i].port);
	}
	assert_int_equal(agent_url_host("file:///etc/passwd", &h), -EPROTONOSUPPORT);
	assert_int_equal(agent_url_host("ftp://repo.example/x", &h), -EPROTONOSUPPORT);
	assert_int_equal(agent_url_host("FILE://localhost/etc/passwd", &h), -EPROTONOSUPPORT);
	assert_int_equal(agent_url_host("http://", &h), -EINVAL);
	assert_int_equal(agent_url_host("not a url", &h), -EINVAL);
	assert_int_equal(agent_url_host("http://repo.example:99999/", &h), -EINVAL);
}

static void test_match_and_check(void **state)
{
	struct agent_hosts hs;
	char err[600];
	static const char *const allowed[] = {
		"http://10.77.0.1:8080/repo/packs/a.pack", /* the repository's own */
		"http://10.77.0.1:8080@cache1.rack3.example/x",
		"http://CACHE1.rack3.example./x",
		"https://cache1.rack3.example:8443/x", /* no port in the entry: any */
		"http://10.0.0.5:8080/x",
		"http://[fd00::5]:8080/x",
		"http://[fd00:0::5]:8080/x",
	};
	static const char *const refused[] = {
		"http://10.77.0.1/repo/x",      /* the repository's host, port 80 */
		"https://10.77.0.1:8443/repo/", /* another port of it */
		"http://evil/x",
		"http://cache1.rack3.example@evil/x",
		"http://cache1.rack3.example.evil/x",
		"http://rack3.example/x",
		"http://10.0.0.5/x", /* 10.0.0.5 is allowed on 8080 only */
		"http://10.0.0.5:8081/x",
		"http://[fd00::5]/x",
		"http://[fd00::6]:8080/x",
		"http://[::ffff:10.0.0.5]:8080/x",
		"file:///etc/passwd",
		"gopher://10.77.0.1:8080/",
	};

	(void)state;
	assert_int_equal(agent_hosts_init(&hs, "http://10.77.0.1:8080/repo", AGENT_HOSTS_HINT_PLAN),
	                 0);
	assert_int_equal(agent_hosts_add(&hs, "cache1.rack3.example"), 0);
	assert_int_equal(agent_hosts_add(&hs, "10.0.0.5:8080"), 0);
	assert_int_equal(agent_hosts_add(&hs, "[fd00::5]:8080"), 0);
	assert_int_equal(agent_hosts_add(&hs, "http://evil/"), -EINVAL);
	assert_int_equal(hs.n, 4);
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x", allowed[i], true, err,
		                      sizeof(err)) != 0)
			fail_msg("refused %s: %s", allowed[i], err);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x", refused[i], true, err,
		                      sizeof(err)) != -EACCES)
			fail_msg("allowed %s", refused[i]);

	/* the message names the URL, the host with its port and the fix */
	assert_int_equal(agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x", "http://evil/p",
	                                   true, err, sizeof(err)),
	                 -EACCES);
	assert_string_equal(err, "redirect to http://evil/p refused: host evil:80 is not the "
	                         "repository's nor in the plan's repo_hosts (rackbootd.conf "
	                         "http.repo_hosts)");
	assert_int_equal(agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x",
	                                   "http://[fd00::6]:8080/p", false, err, sizeof(err)),
	                 -EACCES);
	assert_non_null(
	        strstr(err, "request to http://[fd00::6]:8080/p refused: host [fd00::6]:8080"));
	assert_int_equal(agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x",
	                                   "file:///etc/passwd", true, err, sizeof(err)),
	                 -EACCES);
	assert_string_equal(err, "redirect to file:///etc/passwd refused: only http:// and "
	                         "https:// are allowed");

	/* no list: only the host and port of the URL asked for */
	assert_int_equal(agent_hosts_check(NULL, "http://repo:8080/a", "http://REPO:8080/b", true,
	                                   err, sizeof(err)),
	                 0);
	assert_int_equal(agent_hosts_check(NULL, "http://repo:8080/a", "http://repo/b", true, err,
	                                   sizeof(err)),
	                 -EACCES);
	assert_non_null(strstr(err, "redirects must stay on it"));

	/* https asked for: never continued over plain http, even on an
	 * allowed host; https to https on an allowed host is fine */
	assert_int_equal(agent_hosts_check(&hs, "https://10.77.0.1:8080/repo/x",
	                                   "http://10.77.0.1:8080/repo/x", true, err, sizeof(err)),
	                 -EACCES);
	assert_string_equal(err, "redirect to http://10.77.0.1:8080/repo/x refused: "
	                         "https://10.77.0.1:8080/repo/x was asked for over https, and a "
	                         "redirect may not drop TLS (serve the target over https)");
	assert_int_equal(agent_hosts_check(&hs, "HTTPS://10.77.0.1:8080/repo/x",
	                                   "HTTP://cache1.rack3.example/x", true, err, sizeof(err)),
	                 -EACCES);
	assert_int_equal(agent_hosts_check(&hs, "https://10.77.0.1:8080/repo/x",
	                                   "https://cache1.rack3.example/x", true, err,
	                                   sizeof(err)),
	                 0);
	assert_int_equal(agent_hosts_check(&hs, "http://10.77.0.1:8080/repo/x",
	                                   "https://cache1.rack3.example/x", true, err,
	                                   sizeof(err)),
	                 0);

	/* the list is bounded */
	assert_int_equal(agent_hosts_init(&hs, "https://repo.example/r", AGENT_HOSTS_HINT_CMD), 0);
	for (int i = 1; i < AGENT_HOSTS_MAX; i++)
		assert_int_equal(agent_hosts_add(&hs, "h.example"), 0);
	assert_int_equal(agent_hosts_add(&hs, "h.example"), -E2BIG);
	assert_int_equal(agent_hosts_init(&hs, "file:///srv/repo", AGENT_HOSTS_HINT_CMD),
	                 -EPROTONOSUPPORT);
}

static void test_hop_guard_header(void **state)
{
	struct agent_hop_guard g;

	(void)state;
	/* headers of a non-3xx response are never a hop; the guard needs no
	 * curl handle until a 3xx Location arrives */
	agent_hop_guard_reset(&g, NULL, "http://repo/x");
	assert_true(agent_hop_guard_header(&g, NULL, "HTTP/1.1 200 OK\r\n", 17));
	assert_int_equal(g.status, 200);
	assert_true(agent_hop_guard_header(&g, NULL, "Location: http://evil/\r\n", 24));
	assert_int_equal(g.refused, 0);
	assert_true(agent_hop_guard_header(&g, NULL, "HTTP/2 302\r\n", 12));
	assert_int_equal(g.status, 302);
}

#define MAC "52:54:00:12:34:56"
#define HEAD                                                                                       \
	"{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"state\":\"provisioning\",\"action\":"       \
	"\"image\",\"disk\":\"\",\"wipe\":\"none\",\"grow_last_partition\":false,\"after\":"       \
	"\"none\",\"image\":{\"repo\":\"http://10.77.0.1:8080/repo\",\"name\":\"n\",\"version\":"  \
	"\"1\",\"type\":\"rackboot\""

static void test_plan_repo_hosts(void **state)
{
	static const char *const bad[] = {
		HEAD ",\"repo_hosts\":\"cache1\"}}",
		HEAD ",\"repo_hosts\":[1]}}",
		HEAD ",\"repo_hosts\":[\"http://cache1/\"]}}",
		HEAD ",\"repo_hosts\":[\"cache1\",\"repo@evil\"]}}",
		HEAD ",\"repo_hosts\":[\"cache1:0\"]}}",
		HEAD ",\"repo_hosts\":[\"cache\\t1\"]}}",
	};
	struct agent_plan p;
	char err[300], doc[4096];
	size_t n;

	(void)state;
	snprintf(doc, sizeof(doc), "%s", HEAD "}}");
	assert_int_equal(agent_plan_parse(doc, strlen(doc), MAC, &p, err, sizeof(err)), 0);
	assert_int_equal(p.image.n_repo_hosts, 0);
	agent_plan_fini(&p);
	snprintf(doc, sizeof(doc), "%s",
	         HEAD
	         ",\"repo_hosts\":[\"cache1.rack3.example\",\"10.0.0.5:8080\",\"[fd00::5]\"]}}");
	assert_int_equal(agent_plan_parse(doc, strlen(doc), MAC, &p, err, sizeof(err)), 0);
	assert_int_equal(p.image.n_repo_hosts, 3);
	assert_string_equal(p.image.repo_hosts[1], "10.0.0.5:8080");
	agent_plan_fini(&p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (agent_plan_parse(bad[i], strlen(bad[i]), MAC, &p, err, sizeof(err)) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
		if (!strstr(err, "image.repo_hosts"))
			fail_msg("%zu: %s", i, err);
	}
	/* more entries than a plan may carry */
	n = (size_t)snprintf(doc, sizeof(doc), "%s", HEAD ",\"repo_hosts\":[");
	for (int i = 0; i <= AGENT_PLAN_HOSTS_MAX; i++)
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s\"h%d\"", i ? "," : "", i);
	snprintf(doc + n, sizeof(doc) - n, "]}}");
	assert_int_equal(agent_plan_parse(doc, strlen(doc), MAC, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 31"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostport_parse),  cmocka_unit_test(test_url_host),
		cmocka_unit_test(test_match_and_check), cmocka_unit_test(test_hop_guard_header),
		cmocka_unit_test(test_plan_repo_hosts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
