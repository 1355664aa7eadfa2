/* TFTP packets and window arithmetic: table-driven vectors, including the
 * real read requests of OVMF's EDK2 PXE client (tests/data/pcap/
 * ovmf-edk2-pxe-tftp-dnsmasq.pcap, frames 5 and 8) and dnsmasq's OACK. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/tftp_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frame 5: "snponly.efi" octet tsize 0 blksize 1468 windowsize 4 */
static const uint8_t edk2_rrq_tsize[] = {
	0x00, 0x01, 0x73, 0x6e, 0x70, 0x6f, 0x6e, 0x6c, 0x79, 0x2e, 0x65, 0x66, 0x69, 0x00,
	0x6f, 0x63, 0x74, 0x65, 0x74, 0x00, 0x74, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x30, 0x00,
	0x62, 0x6c, 0x6b, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x31, 0x34, 0x36, 0x38, 0x00, 0x77,
	0x69, 0x6e, 0x64, 0x6f, 0x77, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x34, 0x00,
};
/* Frame 8: the same without tsize, after the firmware learnt the size */
static const uint8_t edk2_rrq[] = {
	0x00, 0x01, 0x73, 0x6e, 0x70, 0x6f, 0x6e, 0x6c, 0x79, 0x2e, 0x65, 0x66,
	0x69, 0x00, 0x6f, 0x63, 0x74, 0x65, 0x74, 0x00, 0x62, 0x6c, 0x6b, 0x73,
	0x69, 0x7a, 0x65, 0x00, 0x31, 0x34, 0x36, 0x38, 0x00, 0x77, 0x69, 0x6e,
	0x64, 0x6f, 0x77, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x34, 0x00,
};
/* Frame 6: dnsmasq's OACK (blksize granted, tsize 173792, windowsize ignored) */
static const uint8_t dnsmasq_oack[] = {
	0x00, 0x06, 0x62, 0x6c, 0x6b, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x31, 0x34, 0x36, 0x38,
	0x00, 0x74, 0x73, 0x69, 0x7a, 0x65, 0x00, 0x31, 0x37, 0x33, 0x37, 0x39, 0x32, 0x00,
};
/* Frame 7: the firmware ends the tsize probe with ERROR 8 */
static const uint8_t edk2_error8[] = {
	0x00, 0x05, 0x00, 0x08, 0x55, 0x73, 0x65, 0x72, 0x20, 0x61, 0x62, 0x6f, 0x72, 0x74, 0x65,
	0x64, 0x20, 0x74, 0x68, 0x65, 0x20, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x00,
};

/* Literal packets: sizeof - 1 drops the literal's own final NUL, so the
 * packet ends exactly where the text says. */
#define PKT(s) (const uint8_t *)(s), sizeof(s) - 1

struct parse_vec {
	const char *what;
	const uint8_t *pkt;
	size_t len;
	int rc;
	uint16_t opcode;
	const char *filename;
	enum tftp_mode mode;
	unsigned blksize, timeout, windowsize;
	int tsize; /* -1 = not asked, else the value */
	unsigned n_ignored;
};

/* A row for a packet that must be rejected with rc. */
#define BAD(what, s, rc)                                                                           \
	{                                                                                          \
		what, (const uint8_t *)(s), sizeof(s) - 1, rc, 0, NULL, TFTP_MODE_OCTET, 0, 0, 0,  \
		        -1, 0                                                                      \
	}

static const struct parse_vec parse_vecs[] = {
	{ "edk2 tsize probe", edk2_rrq_tsize, sizeof(edk2_rrq_tsize), 0, TFTP_RRQ, "snponly.efi",
	  TFTP_MODE_OCTET, 1468, 0, 4, 0, 0 },
	{ "edk2 rrq", edk2_rrq, sizeof(edk2_rrq), 0, TFTP_RRQ, "snponly.efi", TFTP_MODE_OCTET, 1468,
	  0, 4, -1, 0 },
	{ "plain", PKT("\0\1undionly.kpxe\0octet\0"), 0, TFTP_RRQ, "undionly.kpxe", TFTP_MODE_OCTET,
	  0, 0, 0, -1, 0 },
	{ "wrq", PKT("\0\2up\0octet\0"), 0, TFTP_WRQ, "up", TFTP_MODE_OCTET, 0, 0, 0, -1, 0 },
	{ "netascii any case", PKT("\0\1f\0NetASCII\0"), 0, TFTP_RRQ, "f", TFTP_MODE_NETASCII, 0, 0,
	  0, -1, 0 },
	{ "mode OCTET", PKT("\0\1f\0OCTET\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0, 0, -1, 0 },
	{ "mode mail", PKT("\0\1f\0mail\0"), 0, TFTP_RRQ, "f", TFTP_MODE_MAIL, 0, 0, 0, -1, 0 },
	{ "mode junk", PKT("\0\1f\0binary\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OTHER, 0, 0, 0, -1, 0 },
	BAD("empty", "", -EBADMSG),
	BAD("one byte", "\0", -EBADMSG),
	BAD("opcode only", "\0\1", -EBADMSG),
	BAD("data opcode", "\0\3\0\1abc", -EPROTO),
	BAD("opcode 0", "\0\0f\0octet\0", -EPROTO),
	BAD("opcode 256", "\1\1f\0octet\0", -EPROTO),
	BAD("filename no nul", "\0\1file", -EBADMSG),
	BAD("empty filename", "\0\1\0octet\0", -EBADMSG),
	BAD("no mode", "\0\1file\0", -EBADMSG),
	BAD("mode no nul", "\0\1file\0oct", -EBADMSG),
	BAD("empty mode", "\0\1file\0\0", -EBADMSG),
	BAD("option value no nul", "\0\1f\0octet\0blksize\0001468", -EBADMSG),
	BAD("option name no nul", "\0\1f\0octet\0blks", -EBADMSG),
	{ "option without value", PKT("\0\1f\0octet\0blksize\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET,
	  0, 0, 0, -1, 1 },
	{ "empty value", PKT("\0\1f\0octet\0blksize\0\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0,
	  0, -1, 1 },
	{ "blksize 0", PKT("\0\1f\0octet\0blksize\0000\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0,
	  0, -1, 1 },
	{ "blksize 7", PKT("\0\1f\0octet\0blksize\0007\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0,
	  0, -1, 1 },
	{ "blksize 8", PKT("\0\1f\0octet\0blksize\08\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 8, 0,
	  0, -1, 0 },
	{ "blksize 65464", PKT("\0\1f\0octet\0blksize\00065464\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 65464, 0, 0, -1, 0 },
	{ "blksize 65465 clamped", PKT("\0\1f\0octet\0blksize\00065465\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 65464, 0, 0, -1, 0 },
	{ "blksize 65536 clamped", PKT("\0\1f\0octet\0blksize\00065536\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 65464, 0, 0, -1, 0 },
	{ "blksize huge clamped", PKT("\0\1f\0octet\0blksize\0999999999999999999999999999\0"), 0,
	  TFTP_RRQ, "f", TFTP_MODE_OCTET, 65464, 0, 0, -1, 0 },
	{ "blksize negative", PKT("\0\1f\0octet\0blksize\0-1468\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 0, 0, 0, -1, 1 },
	{ "blksize text", PKT("\0\1f\0octet\0blksize\0big\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0,
	  0, 0, -1, 1 },
	{ "blksize spaces", PKT("\0\1f\0octet\0blksize\0 1468\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 0, 0, 0, -1, 1 },
	{ "option names any case", PKT("\0\1f\0octet\0BlkSize\0001024\0TSIZE\0000\0"), 0, TFTP_RRQ,
	  "f", TFTP_MODE_OCTET, 1024, 0, 0, 0, 0 },
	{ "duplicate: first wins", PKT("\0\1f\0octet\0blksize\0001024\0blksize\0001468\0"), 0,
	  TFTP_RRQ, "f", TFTP_MODE_OCTET, 1024, 0, 0, -1, 1 },
	{ "duplicate after bad value", PKT("\0\1f\0octet\0blksize\0x\0blksize\0001468\0"), 0,
	  TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0, 0, -1, 2 },
	{ "unknown option", PKT("\0\1f\0octet\0multicast\0\0blksize\0001432\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 1432, 0, 0, -1, 1 },
	{ "timeout 0", PKT("\0\1f\0octet\0timeout\0000\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0,
	  0, -1, 1 },
	{ "timeout 1", PKT("\0\1f\0octet\0timeout\0001\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 1,
	  0, -1, 0 },
	{ "timeout 255", PKT("\0\1f\0octet\0timeout\000255\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET,
	  0, 255, 0, -1, 0 },
	{ "timeout 256", PKT("\0\1f\0octet\0timeout\000256\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET,
	  0, 0, 0, -1, 1 },
	{ "windowsize 0", PKT("\0\1f\0octet\0windowsize\0000\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET,
	  0, 0, 0, -1, 1 },
	{ "windowsize 65535", PKT("\0\1f\0octet\0windowsize\00065535\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 0, 0, 65535, -1, 0 },
	{ "windowsize 65536", PKT("\0\1f\0octet\0windowsize\00065536\0"), 0, TFTP_RRQ, "f",
	  TFTP_MODE_OCTET, 0, 0, 0, -1, 1 },
	{ "tsize in wrq", PKT("\0\2f\0octet\0tsize\0001234\0"), 0, TFTP_WRQ, "f", TFTP_MODE_OCTET,
	  0, 0, 0, 1234, 0 },
	{ "nul padding", PKT("\0\1f\0octet\0\0\0\0"), 0, TFTP_RRQ, "f", TFTP_MODE_OCTET, 0, 0, 0,
	  -1, 0 },
	BAD("junk after padding", "\0\1f\0octet\0\0junk", -EBADMSG),
	{ "traversal parses (open refuses)", PKT("\0\1../etc/passwd\0octet\0"), 0, TFTP_RRQ,
	  "../etc/passwd", TFTP_MODE_OCTET, 0, 0, 0, -1, 0 },
};

static void test_request_parse(void **state)
{
	for (size_t i = 0; i < sizeof(parse_vecs) / sizeof(parse_vecs[0]); i++) {
		const struct parse_vec *v = &parse_vecs[i];
		struct tftp_request req;
		int rc;

		memset(&req, 0xa5, sizeof(req));
		rc = tftp_request_parse(v->pkt, v->len, &req);
		print_message("  %s\n", v->what);
		assert_int_equal(rc, v->rc);
		if (rc < 0)
			continue;
		assert_int_equal(req.opcode, v->opcode);
		assert_string_equal(req.filename, v->filename);
		assert_int_equal(req.filename_len, strlen(v->filename));
		assert_int_equal(req.mode, v->mode);
		assert_int_equal(req.blksize, v->blksize);
		assert_int_equal(req.timeout, v->timeout);
		assert_int_equal(req.windowsize, v->windowsize);
		assert_int_equal(req.tsize, v->tsize >= 0);
		if (v->tsize >= 0)
			assert_int_equal(req.tsize_value, (uint64_t)v->tsize);
		assert_int_equal(req.n_ignored, v->n_ignored);
	}
}

static void test_request_long_name(void **state)
{
	uint8_t pkt[2 + TFTP_FILENAME_MAX + 1 + 1 + 6];
	struct tftp_request req;
	size_t n;

	/* The longest allowed name parses; one byte more is refused. */
	for (size_t name_len = TFTP_FILENAME_MAX; name_len <= TFTP_FILENAME_MAX + 1; name_len++) {
		pkt[0] = 0;
		pkt[1] = TFTP_RRQ;
		memset(pkt + 2, 'a', name_len);
		pkt[2 + name_len] = 0;
		memcpy(pkt + 3 + name_len, "octet", 6);
		n = 3 + name_len + 6;
		assert_true(n <= sizeof(pkt));
		if (name_len == TFTP_FILENAME_MAX) {
			assert_int_equal(tftp_request_parse(pkt, n, &req), 0);
			assert_int_equal(strlen(req.filename), TFTP_FILENAME_MAX);
		} else {
			assert_int_equal(tftp_request_parse(pkt, n, &req), -ENAMETOOLONG);
		}
	}
}

/* Up to TFTP_OPTIONS_MAX options parse (unknown ones ignored); one more,
 * with or without a value, is a flood. */
static void test_request_option_flood(void **state)
{
	uint8_t pkt[1024];
	struct tftp_request req;

	for (unsigned n = TFTP_OPTIONS_MAX; n <= TFTP_OPTIONS_MAX + 1; n++) {
		for (int valueless = 0; valueless <= 1; valueless++) {
			size_t off = 0;

			memcpy(pkt, "\0\1f\0octet\0", 10);
			off = 10;
			for (unsigned i = 0; i < n; i++) {
				int k = snprintf((char *)pkt + off, sizeof(pkt) - off, "x%u", i);

				off += (size_t)k + 1;
				if (valueless && i == n - 1)
					break; /* the last name has no value */
				pkt[off++] = '1';
				pkt[off++] = '\0';
			}
			if (n > TFTP_OPTIONS_MAX) {
				assert_int_equal(tftp_request_parse(pkt, off, &req), -E2BIG);
			} else {
				assert_int_equal(tftp_request_parse(pkt, off, &req), 0);
				assert_int_equal(req.n_ignored, n);
			}
		}
	}
}

/* Every prefix of a valid request is either rejected or parses to a
 * subset of it: the cursor never reads past the given length. */
static void test_request_truncations(void **state)
{
	for (size_t len = 0; len <= sizeof(edk2_rrq_tsize); len++) {
		uint8_t *copy = malloc(len ? len : 1);
		struct tftp_request req;
		int rc;

		memcpy(copy, edk2_rrq_tsize, len);
		rc = tftp_request_parse(copy, len, &req);
		if (len == sizeof(edk2_rrq_tsize)) {
			assert_int_equal(rc, 0);
		} else if (rc == 0) {
			/* Only cuts right after a NUL can parse. */
			assert_int_equal(copy[len - 1], 0);
			assert_string_equal(req.filename, "snponly.efi");
		} else {
			assert_int_equal(rc, -EBADMSG);
		}
		free(copy);
	}
}

static void test_reply_parse(void **state)
{
	struct tftp_reply rep;

	assert_int_equal(tftp_reply_parse(edk2_error8, sizeof(edk2_error8), &rep), 0);
	assert_int_equal(rep.opcode, TFTP_ERROR);
	assert_int_equal(rep.error_code, TFTP_EOPTNEG);
	assert_string_equal(rep.error_msg, "User aborted the transfer");

	assert_int_equal(tftp_reply_parse("\0\4\xff\xfe", 4, &rep), 0);
	assert_int_equal(rep.opcode, TFTP_ACK);
	assert_int_equal(rep.block, 65534);
	assert_int_equal(tftp_reply_parse("\0\4\0", 3, &rep), -EBADMSG);
	assert_int_equal(tftp_reply_parse("", 0, &rep), -EBADMSG);
	assert_int_equal(tftp_reply_parse("\0\3\0\1data", 8, &rep), -EPROTO);
	assert_int_equal(tftp_reply_parse("\0\1f\0octet\0", 10, &rep), -EPROTO);
	/* ERROR without its NUL, and with an empty message */
	assert_int_equal(tftp_reply_parse("\0\5\0\1abc", 7, &rep), 0);
	assert_string_equal(rep.error_msg, "abc");
	assert_int_equal(tftp_reply_parse("\0\5\0\2", 4, &rep), 0);
	assert_int_equal(rep.error_code, 2);
	assert_string_equal(rep.error_msg, "");
}

struct neg_vec {
	const char *what;
	const uint8_t *pkt;
	size_t len;
	unsigned max_blksize, max_window;
	uint64_t size;
	bool oack;
	unsigned blksize, windowsize, timeout;
	const char *oack_bytes; /* after the opcode, NULs as \0; NULL = not checked */
	size_t oack_len;
};

#define OACK(s) s, sizeof(s) - 1

static const struct neg_vec neg_vecs[] = {
	{ "edk2 probe", edk2_rrq_tsize, sizeof(edk2_rrq_tsize), 1468, 16, 173792, true, 1468, 4, 0,
	  OACK("blksize\0001468\0tsize\000173792\0windowsize\0004\0") },
	{ "edk2 probe, no windows", edk2_rrq_tsize, sizeof(edk2_rrq_tsize), 1468, 1, 173792, true,
	  1468, 1, 0, OACK("blksize\0001468\0tsize\000173792\0windowsize\0001\0") },
	{ "edk2, MTU 1200", edk2_rrq, sizeof(edk2_rrq), 1200 - 32, 16, 5, true, 1168, 4, 0,
	  OACK("blksize\0001168\0windowsize\0004\0") },
	{ "plain: no oack", PKT("\0\1f\0octet\0"), 1468, 16, 100, false, 512, 1, 0, NULL, 0 },
	{ "only unknown options: no oack", PKT("\0\1f\0octet\0foo\0bar\0"), 1468, 16, 100, false,
	  512, 1, 0, NULL, 0 },
	{ "ignored blksize: no oack", PKT("\0\1f\0octet\0blksize\0007\0"), 1468, 16, 100, false,
	  512, 1, 0, NULL, 0 },
	{ "blksize above cap", PKT("\0\1f\0octet\0blksize\00065464\0"), 1468, 16, 0, true, 1468, 1,
	  0, OACK("blksize\0001468\0") },
	{ "blksize below cap", PKT("\0\1f\0octet\0blksize\0001024\0"), 1468, 16, 0, true, 1024, 1,
	  0, OACK("blksize\0001024\0") },
	{ "window above cap", PKT("\0\1f\0octet\0windowsize\00064\0"), 1468, 16, 0, true, 512, 16,
	  0, OACK("windowsize\00016\0") },
	/* curl fails on "tsize 0": an empty file gets no tsize, here no OACK */
	{ "tsize of empty file", PKT("\0\1f\0octet\0tsize\0000\0"), 1468, 16, 0, false, 512, 1, 0,
	  NULL, 0 },
	{ "tsize of empty file, blksize", PKT("\0\1f\0octet\0tsize\0000\0blksize\0001024\0"), 1468,
	  16, 0, true, 1024, 1, 0, OACK("blksize\0001024\0") },
	{ "tsize over 4 GiB", PKT("\0\1f\0octet\0tsize\0000\0"), 1468, 16, 5000000000ULL, true, 512,
	  1, 0, OACK("tsize\0005000000000\0") },
	{ "timeout echoed", PKT("\0\1f\0octet\0timeout\0003\0"), 1468, 16, 0, true, 512, 1, 3,
	  OACK("timeout\0003\0") },
};

static void test_negotiate(void **state)
{
	for (size_t i = 0; i < sizeof(neg_vecs) / sizeof(neg_vecs[0]); i++) {
		const struct neg_vec *v = &neg_vecs[i];
		struct tftp_limits lim = { v->max_blksize, v->max_window };
		struct tftp_request req;
		struct tftp_params p;
		uint8_t buf[256];
		int n;

		print_message("  %s\n", v->what);
		assert_int_equal(tftp_request_parse(v->pkt, v->len, &req), 0);
		assert_int_equal(tftp_negotiate(&req, &lim, v->size, &p), v->oack);
		assert_int_equal(p.blksize, v->blksize);
		assert_int_equal(p.windowsize, v->windowsize);
		assert_int_equal(p.timeout, v->timeout);
		if (!v->oack_bytes)
			continue;
		n = tftp_build_oack(&p, buf, sizeof(buf));
		assert_int_equal(n, 2 + v->oack_len);
		assert_memory_equal(buf, "\0\6", 2);
		assert_memory_equal(buf + 2, v->oack_bytes, v->oack_len);
	}
}

static void test_oack_matches_dnsmasq(void **state)
{
	struct tftp_params p = {
		.blksize = 1468, .ack_blksize = true, .tsize = 173792, .ack_tsize = true
	};
	uint8_t buf[64];

	assert_int_equal(tftp_build_oack(&p, buf, sizeof(buf)), sizeof(dnsmasq_oack));
	assert_memory_equal(buf, dnsmasq_oack, sizeof(dnsmasq_oack));
	/* Every buffer too small by any amount is refused, never overrun. */
	for (size_t len = 0; len < sizeof(dnsmasq_oack); len++)
		assert_int_equal(tftp_build_oack(&p, buf, len), -ENOBUFS);
}

static void test_build_error_and_data(void **state)
{
	uint8_t buf[64];

	assert_int_equal(tftp_build_error(TFTP_ENOTFOUND, NULL, buf, sizeof(buf)), 4 + 14 + 1);
	assert_memory_equal(buf, "\0\5\0\1File not found\0", 19);
	assert_int_equal(tftp_build_error(TFTP_EACCESS, "no", buf, sizeof(buf)), 7);
	assert_memory_equal(buf, "\0\5\0\2no\0", 7);
	assert_int_equal(tftp_build_error(TFTP_EACCESS, "no", buf, 6), -ENOBUFS);
	assert_string_equal(tftp_error_string(99), "Unknown error");

	tftp_build_data_header(1, buf);
	assert_memory_equal(buf, "\0\3\0\1", 4);
	tftp_build_data_header(65535, buf);
	assert_memory_equal(buf, "\0\3\xff\xff", 4);
	tftp_build_data_header(65536, buf); /* rollover goes to 0 */
	assert_memory_equal(buf, "\0\3\0\0", 4);
	tftp_build_data_header(65537, buf);
	assert_memory_equal(buf, "\0\3\0\1", 4);
}

static void test_block_count(void **state)
{
	static const struct {
		uint64_t size;
		unsigned blksize;
		uint64_t n;
	} v[] = {
		{ 0, 512, 1 },
		{ 511, 512, 1 },
		{ 512, 512, 2 },
		{ 513, 512, 2 },
		{ 1468 * 16, 1468, 17 },
		{ 40ULL << 20, 512, 81921 },
		{ 33554431, 512, 65536 },
		{ 33554432, 512, 65537 },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(tftp_block_count(v[i].size, v[i].blksize), v[i].n);
}

/* Sends what the window allows (as the server would). */
static uint64_t send_all(struct tftp_window *w)
{
	uint64_t n = tftp_window_sendable(w);

	tftp_window_sent(w, n);
	return n;
}

static void test_window_lockstep(void **state)
{
	struct tftp_window w;

	tftp_window_init(&w, 3, 1);
	assert_int_equal(send_all(&w), 1);
	assert_int_equal(send_all(&w), 0);
	assert_int_equal(tftp_window_ack(&w, 0), TFTP_ACK_STALE); /* repeated ACK of the OACK */
	assert_int_equal(tftp_window_ack(&w, 1), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 1);
	/* Duplicate ACK in lock-step: no resend (Sorcerer's Apprentice) */
	assert_int_equal(tftp_window_ack(&w, 1), TFTP_ACK_STALE);
	assert_int_equal(tftp_window_sendable(&w), 0);
	/* ACK for a block not sent yet */
	assert_int_equal(tftp_window_ack(&w, 3), TFTP_ACK_STALE);
	assert_int_equal(tftp_window_ack(&w, 2), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 1);
	assert_int_equal(tftp_window_ack(&w, 3), TFTP_ACK_DONE);
	assert_int_equal(w.losses, 0);
}

/* RFC 7440: every loss resends a whole window from the first block not
 * acknowledged; the window never shrinks (receivers count the negotiated
 * window: atftp waited 5 s for each shortened burst). */
static void test_window_loss_resends_full_window(void **state)
{
	struct tftp_window w;

	tftp_window_init(&w, 100, 16);
	assert_int_equal(send_all(&w), 16);
	assert_int_equal(tftp_window_ack(&w, 16), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 16); /* 17..32 */
	/* Client got 17..20 only: go back to 21, a whole window */
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_RESEND);
	assert_int_equal(w.next, 21);
	assert_int_equal(w.window, 16);
	assert_int_equal(send_all(&w), 16); /* 21..36 */
	/* Client got nothing of it and repeats ACK 20: one resend */
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_RESEND);
	assert_int_equal(w.next, 21);
	assert_int_equal(send_all(&w), 16);
	/* ... but the same duplicate again does not multiply traffic */
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_STALE);
	assert_int_equal(tftp_window_sendable(&w), 0);
	/* A timeout goes back to 21 with the whole window, every time */
	tftp_window_timeout(&w);
	assert_int_equal(w.next, 21);
	assert_int_equal(tftp_window_sendable(&w), 16);
	tftp_window_timeout(&w);
	tftp_window_timeout(&w);
	assert_int_equal(w.window, 16);
	assert_int_equal(w.losses, 5);
	/* Old ACKs (before 20) are ignored and move nothing back */
	assert_int_equal(send_all(&w), 16);
	assert_int_equal(tftp_window_ack(&w, 5), TFTP_ACK_STALE);
	assert_int_equal(w.next, 37);
	assert_int_equal(tftp_window_ack(&w, 36), TFTP_ACK_SEND);
	assert_int_equal(tftp_window_sendable(&w), 16);
}

/* Blocks sent before a go-back did arrive: their ACK is progress, not
 * an ACK "from the future" (this once stalled atftp after one loss). */
static void test_window_ack_after_goback(void **state)
{
	struct tftp_window w;

	tftp_window_init(&w, 100, 16);
	assert_int_equal(send_all(&w), 16);
	assert_int_equal(tftp_window_ack(&w, 16), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 16); /* 17..32 */
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_RESEND);
	assert_int_equal(send_all(&w), 16); /* 21..36 */
	assert_int_equal(w.sent_max, 36);
	assert_int_equal(tftp_window_ack(&w, 37), TFTP_ACK_STALE); /* never sent */
	assert_int_equal(tftp_window_ack(&w, 28), TFTP_ACK_RESEND);
	assert_int_equal(w.next, 29);
	assert_int_equal(send_all(&w), 16); /* 29..44 */
	assert_int_equal(tftp_window_ack(&w, 44), TFTP_ACK_SEND);
	assert_int_equal(w.acked, 44);
	assert_int_equal(w.next, 45);
	/* After a timeout went back, an ACK of the old burst still counts */
	assert_int_equal(send_all(&w), 16); /* 45..60 */
	tftp_window_timeout(&w);
	assert_int_equal(w.next, 45);
	assert_int_equal(tftp_window_ack(&w, 52), TFTP_ACK_SEND);
	assert_int_equal(w.next, 53);
	/* ... and a late, older ACK does not reset to a stale block */
	assert_int_equal(tftp_window_ack(&w, 48), TFTP_ACK_STALE);
	assert_int_equal(w.next, 53);
	assert_int_equal(w.acked, 52);
}

/* The ACK of the last block ends the transfer even right after a timeout
 * went back (a retransmission pending), and even after a go-back. */
static void test_window_final_ack_while_resending(void **state)
{
	struct tftp_window w;

	tftp_window_init(&w, 20, 8);
	assert_int_equal(send_all(&w), 8);
	assert_int_equal(tftp_window_ack(&w, 8), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 8);
	assert_int_equal(tftp_window_ack(&w, 16), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 4); /* 17..20 */
	tftp_window_timeout(&w);
	assert_int_equal(w.next, 17);
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_DONE);
	/* go-back on a gap, then the final ACK of the first burst */
	tftp_window_init(&w, 20, 8);
	w.acked = 12;
	w.next = 13;
	w.sent_max = 12;
	assert_int_equal(send_all(&w), 8); /* 13..20 */
	assert_int_equal(tftp_window_ack(&w, 14), TFTP_ACK_RESEND);
	assert_int_equal(tftp_window_ack(&w, 20), TFTP_ACK_DONE);
}

static void test_window_final_block(void **state)
{
	struct tftp_window w;

	/* 17 blocks at window 16: the second window holds only the (empty)
	 * final block. */
	tftp_window_init(&w, 17, 16);
	assert_int_equal(send_all(&w), 16);
	assert_int_equal(tftp_window_ack(&w, 16), TFTP_ACK_SEND);
	assert_int_equal(send_all(&w), 1);
	assert_int_equal(tftp_window_ack(&w, 17), TFTP_ACK_DONE);
	/* A one-block transfer (empty file) */
	tftp_window_init(&w, 1, 16);
	assert_int_equal(send_all(&w), 1);
	assert_int_equal(tftp_window_ack(&w, 1), TFTP_ACK_DONE);
}

static void test_window_rollover(void **state)
{
	static const unsigned windows[] = { 1, 4, 16 };

	/* 40 MiB at blksize 512: block numbers wrap once; ACK with the wire
	 * numbers and expect exactly one DONE, at the last block. */
	for (size_t k = 0; k < sizeof(windows) / sizeof(windows[0]); k++) {
		uint64_t nblocks = tftp_block_count(40ULL << 20, 512);
		struct tftp_window w;
		enum tftp_ack_result r = TFTP_ACK_SEND;
		uint64_t acks = 0;

		tftp_window_init(&w, nblocks, windows[k]);
		while (r != TFTP_ACK_DONE) {
			assert_true(send_all(&w) > 0);
			r = tftp_window_ack(&w, (uint16_t)(w.next - 1));
			assert_true(r == TFTP_ACK_SEND || r == TFTP_ACK_DONE);
			acks++;
			assert_true(acks <= nblocks);
		}
		assert_int_equal(w.acked, nblocks);
		assert_int_equal(w.losses, 0);
	}
}

static void test_window_rollover_stale(void **state)
{
	struct tftp_window w;

	tftp_window_init(&w, 200000, 16);
	w.acked = 65530;
	w.next = 65531;
	w.sent_max = 65530;
	assert_int_equal(send_all(&w), 16); /* 65531..65546: wire 65531..65535, 0..10 */
	/* wire 65533 is 65533, a partial ACK */
	assert_int_equal(tftp_window_ack(&w, 65533), TFTP_ACK_RESEND);
	assert_int_equal(w.acked, 65533);
	assert_int_equal(send_all(&w), 16);                        /* 65534..65549 */
	assert_int_equal(tftp_window_ack(&w, 5), TFTP_ACK_RESEND); /* 65541 = wire 5 */
	assert_int_equal(w.acked, 65541);
	/* An ACK from before the wrap (wire 65535 = 65535) is old */
	assert_int_equal(tftp_window_ack(&w, 65535), TFTP_ACK_STALE);
	assert_int_equal(w.acked, 65541);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_parse),
		cmocka_unit_test(test_request_long_name),
		cmocka_unit_test(test_request_option_flood),
		cmocka_unit_test(test_request_truncations),
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_negotiate),
		cmocka_unit_test(test_oack_matches_dnsmasq),
		cmocka_unit_test(test_build_error_and_data),
		cmocka_unit_test(test_block_count),
		cmocka_unit_test(test_window_lockstep),
		cmocka_unit_test(test_window_loss_resends_full_window),
		cmocka_unit_test(test_window_ack_after_goback),
		cmocka_unit_test(test_window_final_ack_while_resending),
		cmocka_unit_test(test_window_final_block),
		cmocka_unit_test(test_window_rollover),
		cmocka_unit_test(test_window_rollover_stale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
