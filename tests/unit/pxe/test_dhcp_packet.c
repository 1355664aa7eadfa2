/* DHCP packet parser and reply builder, against the real packets of
 * SeaBIOS+iPXE, OVMF/EDK2 and dnsmasq (dhcp_vectors.h, made by
 * scripts/pcap2c.py from tests/data/pcap) and hand-made malformed ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/dhcp_packet.h"
#include "dhcp_vectors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static const struct dhcp_vector *vec(const char *name)
{
	for (size_t i = 0; i < sizeof(dhcp_vectors) / sizeof(dhcp_vectors[0]); i++)
		if (strcmp(dhcp_vectors[i].name, name) == 0)
			return &dhcp_vectors[i];
	fail_msg("no vector %s", name);
	return NULL;
}

static void test_all_vectors_parse(void **state)
{
	for (size_t i = 0; i < sizeof(dhcp_vectors) / sizeof(dhcp_vectors[0]); i++) {
		const struct dhcp_vector *v = &dhcp_vectors[i];
		struct dhcp_request r;
		bool is_req = strstr(v->name, "_req_") != NULL;

		assert_int_equal(dhcp_packet_parse(v->data, v->len, &r), 0);
		assert_int_equal(r.op, is_req ? DHCP_BOOTREQUEST : DHCP_BOOTREPLY);
		assert_int_equal(r.htype, 1);
		assert_int_equal(r.hlen, 6);
		assert_true(r.msg_type >= DHCP_DISCOVER && r.msg_type <= DHCP_ACK);
		{
			char t[16];
			size_t k;

			for (k = 0; dhcp_msg_type_name(r.msg_type)[k] && k < sizeof(t) - 1; k++)
				t[k] = (char)(dhcp_msg_type_name(r.msg_type)[k] | 0x20);
			t[k] = 0;
			assert_non_null(strstr(v->name, t));
		}
	}
}

struct req_expect {
	const char *name;
	uint8_t msg_type;
	const char *vendor; /* prefix of option 60 */
	bool has_arch;
	uint16_t arch;
	bool ipxe; /* user class iPXE and option 175 */
	bool uuid;
	const char *requested; /* option 50 */
	uint8_t mac5;          /* last byte of the MAC */
};

static const struct req_expect req_table[] = {
	{ "seabios_ipxe_rom_dnsmasq_00_req_discover", DHCP_DISCOVER,
	  "PXEClient:Arch:00000:UNDI:002001", true, 0, true, true, NULL, 0x56 },
	{ "seabios_ipxe_rom_dnsmasq_04_req_request", DHCP_REQUEST, "PXEClient:Arch:00000", true, 0,
	  true, true, "10.77.0.58", 0x56 },
	{ "ovmf_uefi_dnsmasq_00_req_discover", DHCP_DISCOVER, "PXEClient:Arch:00007:UNDI:003010",
	  true, 7, true, true, NULL, 0x57 },
	{ "ovmf_uefi_dnsmasq_06_req_discover", DHCP_DISCOVER, "udhcp 1.35.0", false, 0, false,
	  false, NULL, 0x57 },
	{ "ovmf_uefi_dnsmasq_08_req_request", DHCP_REQUEST, "udhcp", false, 0, false, false,
	  "10.77.0.59", 0x57 },
	{ "ovmf_edk2_pxe_tftp_dnsmasq_00_req_discover", DHCP_DISCOVER,
	  "PXEClient:Arch:00007:UNDI:003000", true, 7, false, true, NULL, 0x59 },
	{ "ovmf_edk2_pxe_tftp_dnsmasq_02_req_request", DHCP_REQUEST, "PXEClient:Arch:00007", true,
	  7, false, true, "10.77.0.61", 0x59 },
	{ "ovmf_edk2_httpboot_dnsmasq_08_req_discover", DHCP_DISCOVER,
	  "HTTPClient:Arch:00016:UNDI:003000", true, 16, false, true, NULL, 0x5a },
	{ "ovmf_edk2_httpboot_dnsmasq_10_req_request", DHCP_REQUEST, "HTTPClient", true, 16, false,
	  true, "10.77.0.62", 0x5a },
};

static void test_request_fields(void **state)
{
	for (size_t i = 0; i < sizeof(req_table) / sizeof(req_table[0]); i++) {
		const struct req_expect *e = &req_table[i];
		const struct dhcp_vector *v = vec(e->name);
		struct dhcp_request r;

		assert_int_equal(dhcp_packet_parse(v->data, v->len, &r), 0);
		assert_int_equal(r.msg_type, e->msg_type);
		assert_true(dhcp_request_vendor_is(&r, e->vendor));
		assert_int_equal(r.has_arch, e->has_arch);
		if (e->has_arch)
			assert_int_equal(r.arch, e->arch);
		assert_int_equal(dhcp_request_user_class_is(&r, "iPXE"), e->ipxe);
		assert_int_equal(r.ipxe_encap, e->ipxe);
		assert_int_equal(r.has_uuid, e->uuid);
		if (e->requested) {
			char a[INET_ADDRSTRLEN];

			assert_true(r.has_requested_ip);
			inet_ntop(AF_INET, &r.requested_ip, a, sizeof(a));
			assert_string_equal(a, e->requested);
			/* every REQUEST in the captures selects dnsmasq's offer */
			assert_true(r.has_server_id);
			assert_int_equal(r.server_id.s_addr, inet_addr("10.77.0.1"));
		} else {
			assert_false(r.has_requested_ip);
		}
		assert_memory_equal(r.chaddr, ((uint8_t[]){ 0x52, 0x54, 0, 0x12, 0x34, e->mac5 }),
		                    6);
		assert_non_null(r.param_list);
		assert_true(r.param_list_len > 0);
		if (e->has_arch) {
			assert_true(r.has_ndi);
			assert_int_equal(r.ndi[0], 1);
		}
	}
}

static void test_ipxe_wants_bootfile(void **state)
{
	const struct dhcp_vector *v = vec("seabios_ipxe_rom_dnsmasq_00_req_discover");
	struct dhcp_request r;

	assert_int_equal(dhcp_packet_parse(v->data, v->len, &r), 0);
	assert_true(dhcp_request_wants(&r, DHCP_OPT_BOOTFILE));
	assert_true(dhcp_request_wants(&r, DHCP_OPT_IPXE_ENCAP));
	assert_false(dhcp_request_wants(&r, 250));
	assert_int_equal(r.max_msg_size, 1472);
}

/* A minimal valid DISCOVER: header, cookie, 53=1, END. */
static size_t make_discover(uint8_t *p, size_t cap)
{
	memset(p, 0, cap);
	p[0] = 1;
	p[1] = 1;
	p[2] = 6;
	p[4] = 0xde;
	p[5] = 0xad;
	p[6] = 0xbe;
	p[7] = 0xef;
	memcpy(p + 28, "\x02\x00\x00\x00\x00\x01", 6);
	memcpy(p + 236, "\x63\x82\x53\x63", 4);
	p[240] = 53;
	p[241] = 1;
	p[242] = 1;
	p[243] = 255;
	return 244;
}

static void test_malformed(void **state)
{
	uint8_t p[1600];
	struct dhcp_request r;
	size_t n = make_discover(p, sizeof(p));

	assert_int_equal(dhcp_packet_parse(p, n, &r), 0);
	assert_int_equal(r.msg_type, DHCP_DISCOVER);

	/* every truncation fails: short header, or options without END */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(dhcp_packet_parse(p, k, &r), -EBADMSG);
	assert_int_equal(dhcp_packet_parse(NULL, 0, &r), -EBADMSG);

	/* wrong magic cookie */
	p[239] = 0x64;
	assert_int_equal(dhcp_packet_parse(p, n, &r), -EBADMSG);
	p[239] = 0x63;

	/* option length past the end */
	p[243] = 60;
	p[244] = 200;
	memset(p + 245, 'A', 20);
	assert_int_equal(dhcp_packet_parse(p, 265, &r), -EBADMSG);
	/* option code as the very last byte, no length */
	p[243] = 60;
	assert_int_equal(dhcp_packet_parse(p, 244, &r), -EBADMSG);
	/* no END at all, but all lengths fine */
	p[243] = 60;
	p[244] = 2;
	p[245] = 'x';
	p[246] = 'y';
	assert_int_equal(dhcp_packet_parse(p, 247, &r), -EBADMSG);
	p[247] = 255;
	assert_int_equal(dhcp_packet_parse(p, 248, &r), 0);
	assert_int_equal(r.vendor_class_len, 2);

	/* bad op, bad hlen */
	n = make_discover(p, sizeof(p));
	p[0] = 3;
	assert_int_equal(dhcp_packet_parse(p, n, &r), -EBADMSG);
	p[0] = 1;
	p[2] = 17;
	assert_int_equal(dhcp_packet_parse(p, n, &r), -EBADMSG);
	p[2] = 6;

	/* options we rely on with the wrong length */
	static const uint8_t bad[][6] = {
		{ 53, 2, 1, 1, 255, 0 }, { 50, 3, 10, 0, 0, 255 }, { 54, 5, 1, 2, 3, 4 },
		{ 93, 1, 0, 255, 0, 0 }, { 93, 3, 0, 0, 7, 255 },  { 57, 1, 5, 255, 0, 0 },
		{ 52, 1, 4, 255, 0, 0 }, { 52, 2, 1, 1, 255, 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = make_discover(p, sizeof(p));
		memcpy(p + 243, bad[i], 6);
		p[249] = 255;
		assert_int_equal(dhcp_packet_parse(p, 250, &r), -EBADMSG);
	}

	/* a huge option 55 (255 bytes) is fine, and 1500+ byte packets parse */
	n = make_discover(p, sizeof(p));
	p[243] = 55;
	p[244] = 255;
	for (int i = 0; i < 255; i++)
		p[245 + i] = (uint8_t)i;
	p[500] = 255;
	assert_int_equal(dhcp_packet_parse(p, 1600, &r), 0);
	assert_int_equal(r.param_list_len, 255);
	assert_true(dhcp_request_wants(&r, 254));
}

static void test_overload(void **state)
{
	uint8_t p[600];
	struct dhcp_request r;

	make_discover(p, sizeof(p));
	/* 52 = 3: file carries 60, sname carries 93 */
	memcpy(p + 240, "\x35\x01\x01\x34\x01\x03\xff", 7);
	memcpy(p + 108, "\x3c\x09PXEClient\xff", 12);
	memcpy(p + 44, "\x5d\x02\x00\x07\xff", 5);
	assert_int_equal(dhcp_packet_parse(p, 300, &r), 0);
	assert_int_equal(r.overload, 3);
	assert_true(dhcp_request_vendor_is(&r, "PXEClient"));
	assert_true(r.has_arch);
	assert_int_equal(r.arch, 7);

	/* an option in the overloaded file field that runs past the field */
	memset(p + 108 + 11, 0, 109);
	memcpy(p + 108 + 120, "\x3c\x20", 2);
	assert_int_equal(dhcp_packet_parse(p, 300, &r), -EBADMSG);

	/* without option 52 the same bytes in file are just a file name */
	memcpy(p + 240, "\x35\x01\x01\xff", 4);
	assert_int_equal(dhcp_packet_parse(p, 300, &r), 0);
	assert_int_equal(r.overload, 0);
	assert_false(r.has_arch);
}

static void test_user_class_rfc3004(void **state)
{
	struct dhcp_request r = { 0 };
	static const uint8_t list[] = { 3, 'f', 'o', 'o', 4, 'i', 'P', 'X', 'E' };
	static const uint8_t broken[] = { 9, 'i', 'P', 'X', 'E' };

	r.user_class = list;
	r.user_class_len = sizeof(list);
	assert_true(dhcp_request_user_class_is(&r, "iPXE"));
	assert_false(dhcp_request_user_class_is(&r, "gPXE"));
	r.user_class = broken;
	r.user_class_len = sizeof(broken);
	assert_false(dhcp_request_user_class_is(&r, "iPXE"));
}

static void test_build_reply(void **state)
{
	const struct dhcp_vector *v = vec("ovmf_edk2_pxe_tftp_dnsmasq_00_req_discover");
	struct dhcp_request req, back;
	struct dhcp_reply r;
	uint8_t buf[DHCP_PACKET_MAX];
	const uint8_t *o;
	struct in_addr sid = { inet_addr("10.77.0.1") };
	size_t len;

	assert_int_equal(dhcp_packet_parse(v->data, v->len, &req), 0);
	dhcp_reply_start(&r, buf, sizeof(buf), &req, DHCP_OFFER);
	dhcp_reply_set_siaddr(&r, sid);
	dhcp_reply_opt_addr(&r, DHCP_OPT_SERVER_ID, sid);
	dhcp_reply_opt_str(&r, DHCP_OPT_VENDOR_CLASS, "PXEClient");
	assert_int_equal(dhcp_reply_set_file(&r, "snponly.efi"), 0);
	assert_int_equal(dhcp_reply_finish(&r, &len), 0);
	assert_int_equal(len, 300); /* padded to the BOOTP minimum */

	assert_int_equal(dhcp_packet_parse(buf, len, &back), 0);
	assert_int_equal(back.op, DHCP_BOOTREPLY);
	assert_int_equal(back.msg_type, DHCP_OFFER);
	assert_int_equal(back.xid, req.xid);
	assert_int_equal(back.flags, req.flags);
	assert_memory_equal(back.chaddr, req.chaddr, 16);
	assert_int_equal(back.yiaddr.s_addr, 0);
	assert_int_equal(back.siaddr.s_addr, sid.s_addr);
	assert_true(back.has_server_id);
	assert_string_equal((const char *)buf + 108, "snponly.efi");
	assert_int_equal(dhcp_packet_find_option(buf, len, DHCP_OPT_VENDOR_CLASS, &o), 9);
	assert_memory_equal(o, "PXEClient", 9);
	assert_int_equal(dhcp_packet_find_option(buf, len, DHCP_OPT_BOOTFILE, &o), -ENOENT);

	/* names that do not fit the 128-byte file field are refused */
	char longname[200];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[199] = 0;
	dhcp_reply_start(&r, buf, sizeof(buf), &req, DHCP_OFFER);
	assert_int_equal(dhcp_reply_set_file(&r, longname), -ENAMETOOLONG);
	longname[128] = 0; /* 128 characters: no room for the NUL */
	assert_int_equal(dhcp_reply_set_file(&r, longname), -ENAMETOOLONG);
	longname[127] = 0;
	assert_int_equal(dhcp_reply_set_file(&r, longname), 0);
	assert_int_equal(buf[108 + 126], 'a');
	assert_int_equal(buf[108 + 127], 0);
}

static void test_reply_bounds(void **state)
{
	struct dhcp_request req = { .htype = 1, .hlen = 6 };
	struct dhcp_reply r;
	uint8_t buf[DHCP_PACKET_MAX + 16];
	uint8_t blob[255];
	size_t len;
	int n = 0;

	memset(blob, 'x', sizeof(blob));
	memset(buf, 0xee, sizeof(buf));
	/* no option 57: replies stay within 548 bytes */
	dhcp_reply_start(&r, buf, DHCP_PACKET_MAX, &req, DHCP_ACK);
	assert_int_equal(r.cap, DHCP_REPLY_MIN_MAX);
	while (r.err == 0) {
		dhcp_reply_opt(&r, 224, blob, 100);
		n++;
	}
	assert_int_equal(n, 3); /* 243 + 2*102 fit; a third would pass 548 with END */
	assert_int_equal(dhcp_reply_finish(&r, &len), -ENOBUFS);
	assert_true(r.len <= DHCP_REPLY_MIN_MAX);
	assert_int_equal(buf[DHCP_PACKET_MAX], 0xee);

	/* option 57 = 1500 lets it grow to 1472, capped by the buffer */
	req.max_msg_size = 1500;
	dhcp_reply_start(&r, buf, DHCP_PACKET_MAX, &req, DHCP_ACK);
	assert_int_equal(r.cap, 1472);
	dhcp_reply_start(&r, buf, 600, &req, DHCP_ACK);
	assert_int_equal(r.cap, 600);
	dhcp_reply_opt(&r, 224, blob, 255);
	dhcp_reply_opt(&r, 225, blob, 90); /* 243 + 257 + 92 + END = 593 */
	assert_int_equal(r.err, 0);
	assert_int_equal(dhcp_reply_finish(&r, &len), 0);
	assert_true(len <= 600);
	/* an option longer than 255 is refused */
	dhcp_reply_start(&r, buf, DHCP_PACKET_MAX, &req, DHCP_ACK);
	dhcp_reply_opt(&r, 224, blob, 256);
	assert_int_equal(r.err, -ENOBUFS);
	/* a buffer too small for the header is an error, never a write */
	memset(buf, 0xee, sizeof(buf));
	dhcp_reply_start(&r, buf, 100, &req, DHCP_ACK);
	assert_int_equal(dhcp_reply_finish(&r, &len), -ENOBUFS);
	assert_int_equal(buf[0], 0xee);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_vectors_parse),
		cmocka_unit_test(test_request_fields),
		cmocka_unit_test(test_ipxe_wants_bootfile),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_overload),
		cmocka_unit_test(test_user_class_rfc3004),
		cmocka_unit_test(test_build_reply),
		cmocka_unit_test(test_reply_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
