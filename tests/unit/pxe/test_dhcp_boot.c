/* Boot decisions for the real requests of SeaBIOS+iPXE, OVMF (iPXE EFI),
 * EDK2 PXE, EDK2 HTTP Boot and busybox udhcpc, in proxy and full mode,
 * plus hand-made requests for the architectures the captures lack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/dhcp_boot.h"
#include "dhcp_vectors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static struct rb_config cfg;

static int setup(void **state)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.server_addr.s_addr = inet_addr("10.77.0.1");
	cfg.http_port = 8080;
	cfg.boot_bios = (char *)"undionly.kpxe";
	cfg.boot_uefi_ia32 = (char *)"";
	cfg.boot_uefi_x64 = (char *)"snponly.efi";
	cfg.boot_uefi_arm64 = (char *)"arm64/snp.efi";
	cfg.http_uefi_x64 = (char *)"ipxe.efi";
	cfg.http_uefi_arm64 = (char *)"";
	return 0;
}

static const struct dhcp_vector *vec(const char *name)
{
	for (size_t i = 0; i < sizeof(dhcp_vectors) / sizeof(dhcp_vectors[0]); i++)
		if (strcmp(dhcp_vectors[i].name, name) == 0)
			return &dhcp_vectors[i];
	fail_msg("no vector %s", name);
	return NULL;
}

struct boot_expect {
	const char *name;
	enum rb_dhcp_mode mode;
	enum dhcp_client_kind kind;
	const char *file; /* NULL: no boot file */
	bool tftp, pxe_opts;
	const char *vendor; /* option 60 sent back */
	const char *arch;
};

static const struct boot_expect table[] = {
	/* QEMU's iPXE ROM asks first, with user class iPXE: its node script */
	{ "seabios_ipxe_rom_dnsmasq_00_req_discover", RB_DHCP_PROXY, DHCP_CLIENT_IPXE,
	  "http://10.77.0.1:8080/boot/52:54:00:12:34:56.ipxe", false, false, "PXEClient",
	  "ipxe-bios" },
	{ "seabios_ipxe_rom_dnsmasq_00_req_discover", RB_DHCP_FULL, DHCP_CLIENT_IPXE,
	  "http://10.77.0.1:8080/boot/52:54:00:12:34:56.ipxe", false, false, NULL, "ipxe-bios" },
	{ "ovmf_uefi_dnsmasq_00_req_discover", RB_DHCP_PROXY, DHCP_CLIENT_IPXE,
	  "http://10.77.0.1:8080/boot/52:54:00:12:34:57.ipxe", false, false, "PXEClient",
	  "ipxe-uefi-x64" },
	/* EDK2's own PXE: TFTP snponly.efi by option 93 = 7 */
	{ "ovmf_edk2_pxe_tftp_dnsmasq_00_req_discover", RB_DHCP_PROXY, DHCP_CLIENT_PXE,
	  "snponly.efi", true, true, "PXEClient", "uefi-x64" },
	{ "ovmf_edk2_pxe_tftp_dnsmasq_02_req_request", RB_DHCP_FULL, DHCP_CLIENT_PXE, "snponly.efi",
	  true, false, NULL, "uefi-x64" },
	/* the chainloaded iPXE on the same machine */
	{ "ovmf_edk2_pxe_tftp_dnsmasq_04_req_discover", RB_DHCP_FULL, DHCP_CLIENT_IPXE,
	  "http://10.77.0.1:8080/boot/52:54:00:12:34:59.ipxe", false, false, NULL,
	  "ipxe-uefi-x64" },
	/* EDK2 HTTP Boot: URL, and HTTPClient echoed in both modes */
	{ "ovmf_edk2_httpboot_dnsmasq_08_req_discover", RB_DHCP_PROXY, DHCP_CLIENT_HTTP,
	  "http://10.77.0.1:8080/boot/ipxe.efi", false, false, "HTTPClient", "uefi-x64-http" },
	{ "ovmf_edk2_httpboot_dnsmasq_10_req_request", RB_DHCP_FULL, DHCP_CLIENT_HTTP,
	  "http://10.77.0.1:8080/boot/ipxe.efi", false, false, "HTTPClient", "uefi-x64-http" },
	/* Linux udhcpc: not a boot client */
	{ "ovmf_uefi_dnsmasq_06_req_discover", RB_DHCP_PROXY, DHCP_CLIENT_OTHER, NULL, false, false,
	  NULL, "" },
	{ "ovmf_edk2_pxe_tftp_dnsmasq_10_req_discover", RB_DHCP_FULL, DHCP_CLIENT_OTHER, NULL,
	  false, false, NULL, "" },
};

static void test_real_clients(void **state)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct boot_expect *e = &table[i];
		const struct dhcp_vector *v = vec(e->name);
		struct dhcp_request req;
		struct dhcp_boot b;

		cfg.dhcp_mode = e->mode;
		assert_int_equal(dhcp_packet_parse(v->data, v->len, &req), 0);
		assert_int_equal(dhcp_boot_decide(&req, &cfg, &b), 0);
		assert_int_equal(b.kind, e->kind);
		assert_int_equal(b.has_file, e->file != NULL);
		if (e->file)
			assert_string_equal(b.file, e->file);
		assert_int_equal(b.tftp, e->tftp);
		assert_int_equal(b.pxe_vendor_opts, e->pxe_opts);
		if (e->vendor)
			assert_string_equal(b.vendor_class, e->vendor);
		else
			assert_null(b.vendor_class);
		assert_string_equal(b.arch_name, e->arch);
	}
}

static void make_pxe(struct dhcp_request *r, const char *vendor, bool has_arch, uint16_t arch)
{
	static const uint8_t mac[6] = { 0xaa, 0xbb, 0xcc, 0x00, 0x11, 0x22 };

	memset(r, 0, sizeof(*r));
	r->op = DHCP_BOOTREQUEST;
	r->htype = 1;
	r->hlen = 6;
	r->msg_type = DHCP_DISCOVER;
	memcpy(r->chaddr, mac, 6);
	r->vendor_class = (const uint8_t *)vendor;
	r->vendor_class_len = strlen(vendor);
	r->has_arch = has_arch;
	r->arch = arch;
}

static void test_arch_table(void **state)
{
	static const struct {
		bool has_arch;
		uint16_t arch;
		const char *file; /* NULL: nothing configured */
		const char *name;
	} t[] = {
		{ false, 0, "undionly.kpxe", "bios" }, /* pre-RFC 4578 PXE: BIOS */
		{ true, 0, "undionly.kpxe", "bios" },
		{ true, 6, NULL, "uefi-ia32" },
		{ true, 7, "snponly.efi", "uefi-x64" },
		{ true, 9, "snponly.efi", "uefi-x64" },
		{ true, 11, "arm64/snp.efi", "uefi-arm64" },
		{ true, 16, "http://10.77.0.1:8080/boot/ipxe.efi", "uefi-x64-http" },
		{ true, 19, NULL, "uefi-arm64-http" },
		{ true, 0x1234, NULL, "unknown" },
	};
	struct dhcp_request r;
	struct dhcp_boot b;

	cfg.dhcp_mode = RB_DHCP_PROXY;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		make_pxe(&r, "PXEClient:Arch:00000:UNDI:002001", t[i].has_arch, t[i].arch);
		assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
		assert_int_equal(b.kind, DHCP_CLIENT_PXE);
		assert_string_equal(b.arch_name, t[i].name);
		assert_int_equal(b.has_file, t[i].file != NULL);
		if (t[i].file)
			assert_string_equal(b.file, t[i].file);
	}
}

static void test_ipxe_by_option_175(void **state)
{
	struct dhcp_request r;
	struct dhcp_boot b;

	cfg.dhcp_mode = RB_DHCP_PROXY;
	make_pxe(&r, "PXEClient:Arch:00007:UNDI:003010", true, 7);
	r.ipxe_encap = true; /* no user class */
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
	assert_int_equal(b.kind, DHCP_CLIENT_IPXE);
	assert_string_equal(b.file, "http://10.77.0.1:8080/boot/aa:bb:cc:00:11:22.ipxe");
	/* iPXE with a vendor class that is not PXEClient is still iPXE */
	make_pxe(&r, "something", false, 0);
	r.user_class = (const uint8_t *)"iPXE";
	r.user_class_len = 4;
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
	assert_int_equal(b.kind, DHCP_CLIENT_IPXE);
	assert_string_equal(b.vendor_class, "PXEClient");
	/* "iPXEX" is not iPXE */
	make_pxe(&r, "udhcp 1.35.0", false, 0);
	r.user_class = (const uint8_t *)"iPXEX";
	r.user_class_len = 5;
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
	assert_int_equal(b.kind, DHCP_CLIENT_OTHER);
	assert_false(b.has_file);
}

static void test_vendor_prefix_only(void **state)
{
	struct dhcp_request r;
	struct dhcp_boot b;

	cfg.dhcp_mode = RB_DHCP_PROXY;
	make_pxe(&r, "PXEClien", true, 0); /* one byte short */
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
	assert_int_equal(b.kind, DHCP_CLIENT_OTHER);
	make_pxe(&r, "PXEClient", true, 0); /* bare, as old ROMs send */
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), 0);
	assert_int_equal(b.kind, DHCP_CLIENT_PXE);
	assert_string_equal(b.file, "undionly.kpxe");
}

static void test_url_too_long(void **state)
{
	char longname[300];
	struct dhcp_request r;
	struct dhcp_boot b;

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cfg.http_uefi_x64 = longname;
	make_pxe(&r, "HTTPClient:Arch:00016:UNDI:003000", true, 16);
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), -ENAMETOOLONG);
	assert_false(b.has_file);
	cfg.boot_bios = longname;
	make_pxe(&r, "PXEClient", true, 0);
	assert_int_equal(dhcp_boot_decide(&r, &cfg, &b), -ENAMETOOLONG);
	assert_false(b.has_file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_real_clients, setup),
		cmocka_unit_test_setup(test_arch_table, setup),
		cmocka_unit_test_setup(test_ipxe_by_option_175, setup),
		cmocka_unit_test_setup(test_vendor_prefix_only, setup),
		cmocka_unit_test_setup(test_url_too_long, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
