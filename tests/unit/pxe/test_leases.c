/* The full-DHCP address pool: address choice, reservations, offer hold,
 * ACK/NAK decisions, release/decline, expiry, the lease file's text form
 * and its atomic save/load across a "restart". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/leases.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1700000000

static const uint8_t A[6] = { 2, 0, 0, 0, 0, 0xa };
static const uint8_t B[6] = { 2, 0, 0, 0, 0, 0xb };
static const uint8_t C[6] = { 2, 0, 0, 0, 0, 0xc };
static const uint8_t R[6] = { 2, 0, 0, 0, 0, 0x1 }; /* reserved .11, in the pool */
static const uint8_t S[6] = { 2, 0, 0, 0, 0, 0x2 }; /* reserved .50, outside */

static struct rb_dhcp_host hosts[2];
static struct rb_config cfg;

static struct in_addr ip(const char *s)
{
	struct in_addr a = { inet_addr(s) };

	return a;
}

static const char *str(struct in_addr a)
{
	static char buf[4][INET_ADDRSTRLEN];
	static int k;

	k = (k + 1) % 4;
	return inet_ntop(AF_INET, &a, buf[k], sizeof(buf[k]));
}

/* Pool 10.0.0.10 .. 10.0.0.12 with .11 reserved for R: two dynamic addresses. */
static struct lease_pool *small_pool(void)
{
	struct lease_pool *p;

	memset(&cfg, 0, sizeof(cfg));
	memset(hosts, 0, sizeof(hosts));
	cfg.pool_start = ip("10.0.0.10");
	cfg.pool_end = ip("10.0.0.12");
	memcpy(hosts[0].mac, R, 6);
	hosts[0].addr = ip("10.0.0.11");
	memcpy(hosts[1].mac, S, 6);
	hosts[1].addr = ip("10.0.0.50");
	snprintf(hosts[1].hostname, sizeof(hosts[1].hostname), "node-s");
	cfg.hosts = hosts;
	cfg.n_hosts = 2;
	assert_int_equal(lease_pool_new(&cfg, &p), 0);
	return p;
}

static void test_bad_pool(void **state)
{
	struct lease_pool *p = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.pool_start = ip("10.0.0.20");
	cfg.pool_end = ip("10.0.0.10");
	assert_int_equal(lease_pool_new(&cfg, &p), -EINVAL);
	cfg.pool_start = ip("10.0.0.0");
	cfg.pool_end = ip("10.255.255.255");
	assert_int_equal(lease_pool_new(&cfg, &p), -EINVAL);
	assert_null(p);
	lease_pool_free(NULL);
}

static void test_offer_order(void **state)
{
	struct lease_pool *p = small_pool();
	struct in_addr a;

	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	/* the same client is offered the same address again */
	assert_int_equal(lease_pool_offer(p, A, NULL, T0 + 1, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	/* the reserved .11 is skipped */
	assert_int_equal(lease_pool_offer(p, B, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.12");
	/* reservations, in and out of the pool */
	assert_int_equal(lease_pool_offer(p, R, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.11");
	assert_int_equal(lease_pool_offer(p, S, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.50");
	assert_string_equal(lease_pool_hostname(p, S), "node-s");
	assert_null(lease_pool_hostname(p, A));
	/* offers are held: C finds nothing until A's hold runs out */
	assert_int_equal(lease_pool_offer(p, C, NULL, T0 + 10, &a), -ENOSPC);
	assert_int_equal(lease_pool_offer(p, C, NULL, T0 + 1 + LEASE_OFFER_HOLD_S, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	/* A lost it; A now gets nothing (B's hold still runs: it began at T0) */
	assert_int_equal(lease_pool_offer(p, A, NULL, T0 + LEASE_OFFER_HOLD_S - 1, &a), -ENOSPC);
	lease_pool_free(p);
}

static void test_requested(void **state)
{
	struct lease_pool *p = small_pool();
	struct in_addr a, want = ip("10.0.0.12"), reserved = ip("10.0.0.11"),
	                  outside = ip("10.0.0.99");

	assert_int_equal(lease_pool_offer(p, A, &want, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.12");
	/* taken, reserved or outside: the next free one instead */
	assert_int_equal(lease_pool_offer(p, B, &want, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	lease_pool_free(p);
	p = small_pool();
	assert_int_equal(lease_pool_offer(p, A, &reserved, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	assert_int_equal(lease_pool_offer(p, B, &outside, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.12");
	lease_pool_free(p);
}

static void test_ack_nak(void **state)
{
	struct lease_pool *p = small_pool();
	struct lease_info li;
	struct in_addr a;

	assert_false(lease_pool_dirty(p));
	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_int_equal(lease_pool_lookup(p, A, &li), 0);
	assert_false(li.bound);
	assert_int_equal(lease_pool_ack(p, A, a, T0 + 1, 3600), 0);
	assert_true(lease_pool_dirty(p));
	assert_int_equal(lease_pool_lookup(p, A, &li), 0);
	assert_true(li.bound);
	assert_int_equal(li.expires, T0 + 1 + 3600);
	assert_string_equal(str(li.addr), "10.0.0.10");

	/* B asks for A's address: in use */
	assert_int_equal(lease_pool_ack(p, B, a, T0 + 2, 3600), -EADDRINUSE);
	/* anyone but R asking for R's address, R asking for another one */
	assert_int_equal(lease_pool_ack(p, B, ip("10.0.0.11"), T0, 3600), -EPERM);
	assert_int_equal(lease_pool_ack(p, B, ip("10.0.0.50"), T0, 3600), -EPERM);
	assert_int_equal(lease_pool_ack(p, R, ip("10.0.0.12"), T0, 3600), -EPERM);
	assert_int_equal(lease_pool_ack(p, R, ip("10.0.0.11"), T0, 3600), 0);
	assert_int_equal(lease_pool_lookup(p, R, &li), 0);
	assert_true(li.reserved && li.bound);
	/* not ours at all */
	assert_int_equal(lease_pool_ack(p, B, ip("192.168.1.5"), T0, 3600), -EADDRNOTAVAIL);
	/* INIT-REBOOT for a free address without an offer: granted */
	assert_int_equal(lease_pool_ack(p, B, ip("10.0.0.12"), T0, 3600), 0);
	/* renewal extends */
	assert_int_equal(lease_pool_ack(p, A, a, T0 + 1800, 3600), 0);
	assert_int_equal(lease_pool_lookup(p, A, &li), 0);
	assert_int_equal(li.expires, T0 + 1800 + 3600);
	/* after expiry the address is reclaimable by others */
	assert_int_equal(lease_pool_ack(p, C, a, T0 + 5399, 3600), -EADDRINUSE);
	assert_int_equal(lease_pool_ack(p, C, a, T0 + 5401, 3600), 0);
	assert_int_equal(lease_pool_lookup(p, A, &li), -ENOENT);
	lease_pool_free(p);
}

static void test_one_address_per_client(void **state)
{
	struct lease_pool *p = small_pool();
	struct lease_info li;
	struct in_addr a;

	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	/* A requests the other address (INIT-REBOOT): it moves, .10 is freed */
	assert_int_equal(lease_pool_ack(p, A, ip("10.0.0.12"), T0, 3600), 0);
	assert_int_equal(lease_pool_lookup(p, A, &li), 0);
	assert_string_equal(str(li.addr), "10.0.0.12");
	assert_int_equal(lease_pool_offer(p, B, NULL, T0, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	lease_pool_free(p);
}

static void test_release_decline(void **state)
{
	struct lease_pool *p = small_pool();
	struct lease_info li;
	struct in_addr a, b;

	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_int_equal(lease_pool_ack(p, A, a, T0, 3600), 0);
	assert_int_equal(lease_pool_release(p, B, a), -ENOENT);
	assert_int_equal(lease_pool_release(p, A, ip("10.0.0.12")), -ENOENT);
	assert_int_equal(lease_pool_release(p, A, a), 0);
	assert_int_equal(lease_pool_lookup(p, A, &li), -ENOENT);
	/* remembered: A comes back to the same address */
	assert_int_equal(lease_pool_offer(p, A, NULL, T0 + 5, &b), 0);
	assert_int_equal(b.s_addr, a.s_addr);
	assert_int_equal(lease_pool_release(p, A, a), 0);
	/* but it is free for others */
	assert_int_equal(lease_pool_offer(p, B, NULL, T0 + 6, &b), 0);
	assert_int_equal(lease_pool_offer(p, C, NULL, T0 + 6, &b), 0);
	assert_string_equal(str(b), "10.0.0.10");

	/* decline: the address is out of use for a while */
	assert_int_equal(lease_pool_decline(p, C, b, T0 + 7), 0);
	assert_int_equal(lease_pool_offer(p, C, NULL, T0 + 8, &b), -ENOSPC);
	assert_int_equal(lease_pool_offer(p, C, NULL, T0 + 8 + LEASE_DECLINE_HOLD_S, &b), 0);
	assert_int_equal(lease_pool_decline(p, A, ip("10.0.0.99"), T0), -ENOENT);
	lease_pool_free(p);
}

static char *write_mem(struct lease_pool *p)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	assert_non_null(f);
	assert_int_equal(lease_pool_write(p, f), 0);
	fclose(f);
	return buf;
}

static int read_mem(struct lease_pool *p, const char *text, unsigned *skipped)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int n;

	assert_non_null(f);
	n = lease_pool_read(p, f, skipped);
	fclose(f);
	return n;
}

static void test_text_roundtrip(void **state)
{
	struct lease_pool *p = small_pool(), *q;
	struct lease_info li;
	struct in_addr a;
	unsigned skipped;
	char *text;

	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_int_equal(lease_pool_ack(p, A, a, T0, 3600), 0);
	assert_int_equal(lease_pool_ack(p, S, ip("10.0.0.50"), T0, 3600), 0);
	assert_int_equal(lease_pool_offer(p, B, NULL, T0, &a), 0); /* only offered: not saved */
	text = write_mem(p);
	assert_non_null(strstr(text, "02:00:00:00:00:0a 10.0.0.10 1700003600\n"));
	assert_non_null(strstr(text, "02:00:00:00:00:02 10.0.0.50 1700003600\n"));
	assert_null(strstr(text, "02:00:00:00:00:0b"));

	q = small_pool();
	assert_int_equal(read_mem(q, text, &skipped), 2);
	assert_int_equal(skipped, 0);
	assert_false(lease_pool_dirty(q));
	assert_int_equal(lease_pool_lookup(q, A, &li), 0);
	assert_true(li.bound);
	assert_string_equal(str(li.addr), "10.0.0.10");
	assert_int_equal(li.expires, T0 + 3600);
	/* B cannot get A's loaded address */
	assert_int_equal(lease_pool_offer(q, B, NULL, T0 + 1, &a), 0);
	assert_string_equal(str(a), "10.0.0.12");
	lease_pool_free(q);
	free(text);
	lease_pool_free(p);
}

static void test_text_garbage(void **state)
{
	struct lease_pool *p = small_pool();
	struct lease_info li;
	unsigned skipped;
	char longline[600];
	char *text;

	memset(longline, 'x', sizeof(longline));
	memcpy(longline + sizeof(longline) - 2, "\n", 2);
	assert_int_equal(asprintf(&text,
	                          "# comment\n"
	                          "\n"
	                          "02:00:00:00:00:0a 10.0.0.10 1700003600\n"
	                          "02:00:00:00:00:0b 10.0.0.10 1700003600\n" /* same address */
	                          "02:00:00:00:00:0c 10.0.0.11 1700003600\n" /* reserved for R */
	                          "02:00:00:00:00:0c 10.9.0.1 1700003600\n"  /* out of pool */
	                          "02:00:00:00:00:01 10.0.0.12 1700003600\n" /* R, wrong addr */
	                          "zz:00:00:00:00:0c 10.0.0.12 1700003600\n"
	                          "02:00:00:00:00:0c 10.0.0.312 1700003600\n"
	                          "02:00:00:00:00:0c 10.0.0.12 -5\n"
	                          "02:00:00:00:00:0c 10.0.0.12 17000036001700003600\n"
	                          "02:00:00:00:00:0c 10.0.0.12\n"
	                          "02:00:00:00:00:0c 10.0.0.12 1 extra\n"
	                          "%s"
	                          "02:00:00:00:00:0c 10.0.0.12 1700003600", /* no final newline */
	                          longline) > 0,
	                 1);
	assert_int_equal(read_mem(p, text, &skipped), 2);
	assert_int_equal(skipped, 11);
	assert_int_equal(lease_pool_lookup(p, A, &li), 0);
	assert_int_equal(lease_pool_lookup(p, B, &li), -ENOENT);
	assert_int_equal(lease_pool_lookup(p, C, &li), 0);
	assert_string_equal(str(li.addr), "10.0.0.12");
	free(text);
	lease_pool_free(p);
}

static void test_save_load_restart(void **state)
{
	char dir[] = "/tmp/rbleaseXXXXXX";
	struct lease_pool *p = small_pool(), *q;
	struct lease_info li;
	struct in_addr a;
	struct stat st;
	unsigned skipped;
	int dfd;

	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(lease_pool_load(p, dfd, "dhcp.leases", &skipped), -ENOENT);

	assert_int_equal(lease_pool_offer(p, A, NULL, T0, &a), 0);
	assert_int_equal(lease_pool_ack(p, A, a, T0, 3600), 0);
	assert_true(lease_pool_dirty(p));
	assert_int_equal(lease_pool_save(p, dfd, "dhcp.leases"), 0);
	assert_false(lease_pool_dirty(p));
	assert_int_equal(fstatat(dfd, "dhcp.leases", &st, 0), 0);
	assert_true(st.st_size > 0);
	assert_int_equal(fstatat(dfd, "dhcp.leases.tmp", &st, 0), -1);

	/* "restart": a fresh pool from the file gives A the same address */
	q = small_pool();
	assert_int_equal(lease_pool_load(q, dfd, "dhcp.leases", &skipped), 1);
	assert_int_equal(lease_pool_offer(q, A, NULL, T0 + 100, &a), 0);
	assert_string_equal(str(a), "10.0.0.10");
	assert_int_equal(lease_pool_lookup(q, A, &li), 0);
	assert_true(li.bound); /* still bound: offering did not shorten it */
	assert_int_equal(lease_pool_offer(q, B, NULL, T0 + 100, &a), 0);
	assert_string_equal(str(a), "10.0.0.12");

	/* saving replaces the file whole */
	assert_int_equal(lease_pool_release(q, A, ip("10.0.0.10")), 0);
	assert_int_equal(lease_pool_save(q, dfd, "dhcp.leases"), 0);
	lease_pool_free(p);
	p = small_pool();
	assert_int_equal(lease_pool_load(p, dfd, "dhcp.leases", &skipped), 0);

	/* a save that cannot write leaves the old file alone */
	assert_int_equal(mkdirat(dfd, "dir.leases.tmp", 0700), 0);
	assert_true(lease_pool_save(q, dfd, "dir.leases") < 0);
	assert_int_equal(fstatat(dfd, "dir.leases", &st, 0), -1);

	unlinkat(dfd, "dir.leases.tmp", AT_REMOVEDIR);
	unlinkat(dfd, "dhcp.leases", 0);
	close(dfd);
	rmdir(dir);
	lease_pool_free(p);
	lease_pool_free(q);
}

/* Many clients through a /22 pool: distinct addresses, exhaustion, and
 * churn that exercises the MAC hash's deletions and rehashing. */
static void test_many_clients(void **state)
{
	struct lease_pool *p;
	static uint8_t seen[1024];
	uint8_t mac[6] = { 2, 1, 0, 0, 0, 0 };
	struct in_addr a;

	memset(&cfg, 0, sizeof(cfg));
	cfg.pool_start = ip("10.1.0.0");
	cfg.pool_end = ip("10.1.3.255");
	assert_int_equal(lease_pool_new(&cfg, &p), 0);
	memset(seen, 0, sizeof(seen));
	for (uint32_t i = 0; i < 1024; i++) {
		mac[3] = (uint8_t)(i >> 16);
		mac[4] = (uint8_t)(i >> 8);
		mac[5] = (uint8_t)i;
		assert_int_equal(lease_pool_offer(p, mac, NULL, T0, &a), 0);
		assert_int_equal(lease_pool_ack(p, mac, a, T0, 60), 0);
		uint32_t off = ntohl(a.s_addr) - ntohl(cfg.pool_start.s_addr);
		assert_true(off < 1024);
		assert_int_equal(seen[off], 0);
		seen[off] = 1;
	}
	mac[3] = 0xff;
	assert_int_equal(lease_pool_offer(p, mac, NULL, T0, &a), -ENOSPC);
	/* 50 generations of 1024 new clients each, every lease expired */
	for (uint32_t g = 1; g <= 50; g++) {
		int64_t now = T0 + 61 * (int64_t)g;

		memset(seen, 0, sizeof(seen));
		for (uint32_t i = 0; i < 1024; i++) {
			struct lease_info li;

			mac[3] = (uint8_t)g;
			mac[4] = (uint8_t)(i >> 8);
			mac[5] = (uint8_t)i;
			assert_int_equal(lease_pool_offer(p, mac, NULL, now, &a), 0);
			assert_int_equal(lease_pool_ack(p, mac, a, now, 60), 0);
			assert_int_equal(lease_pool_lookup(p, mac, &li), 0);
			assert_int_equal(li.addr.s_addr, a.s_addr);
			uint32_t off = ntohl(a.s_addr) - ntohl(cfg.pool_start.s_addr);
			assert_int_equal(seen[off], 0);
			seen[off] = 1;
		}
	}
	lease_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_pool),
		cmocka_unit_test(test_offer_order),
		cmocka_unit_test(test_requested),
		cmocka_unit_test(test_ack_nak),
		cmocka_unit_test(test_one_address_per_client),
		cmocka_unit_test(test_release_decline),
		cmocka_unit_test(test_text_roundtrip),
		cmocka_unit_test(test_text_garbage),
		cmocka_unit_test(test_save_load_restart),
		cmocka_unit_test(test_many_clients),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
