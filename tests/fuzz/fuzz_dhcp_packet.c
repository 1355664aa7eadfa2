/* Fuzz target: the DHCP parser and the boot decision, with the reply
 * builder as an oracle: whatever we parse and answer must be a reply that
 * our own parser accepts, within the size the client allowed. */
#include "pxe/dhcp_boot.h"
#include "pxe/dhcp_packet.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void answer(const struct dhcp_request *req, struct rb_config *cfg, enum rb_dhcp_mode mode)
{
	static uint8_t buf[DHCP_PACKET_MAX];
	struct dhcp_request back;
	struct dhcp_boot b;
	struct dhcp_reply r;
	size_t len;

	cfg->dhcp_mode = mode;
	dhcp_boot_decide(req, cfg, &b);
	if (b.has_file && strnlen(b.file, sizeof(b.file)) >= sizeof(b.file))
		abort();
	dhcp_reply_start(&r, buf, sizeof(buf), req, DHCP_OFFER);
	dhcp_reply_set_siaddr(&r, cfg->server_addr);
	dhcp_reply_opt_addr(&r, DHCP_OPT_SERVER_ID, cfg->server_addr);
	if (b.vendor_class)
		dhcp_reply_opt_str(&r, DHCP_OPT_VENDOR_CLASS, b.vendor_class);
	if (req->has_uuid)
		dhcp_reply_opt(&r, DHCP_OPT_UUID, req->uuid, sizeof(req->uuid));
	if (req->client_id)
		dhcp_reply_opt(&r, DHCP_OPT_CLIENT_ID, req->client_id, req->client_id_len);
	if (b.has_file) {
		dhcp_reply_set_file(&r, b.file);
		dhcp_reply_opt_str(&r, DHCP_OPT_BOOTFILE, b.file);
	}
	if (dhcp_reply_finish(&r, &len) < 0)
		return;
	if (len > r.cap || len > sizeof(buf))
		abort();
	if (dhcp_packet_parse(buf, len, &back) < 0 || back.op != DHCP_BOOTREPLY ||
	    back.msg_type != DHCP_OFFER || back.xid != req->xid)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rb_config cfg;
	struct dhcp_request req;
	uint8_t *copy;

	if (!cfg.boot_bios) {
		cfg.server_addr.s_addr = htonl(0x0a4d0001);
		cfg.http_port = 8080;
		cfg.boot_bios = (char *)"undionly.kpxe";
		cfg.boot_uefi_ia32 = (char *)"";
		cfg.boot_uefi_x64 = (char *)"snponly.efi";
		cfg.boot_uefi_arm64 = (char *)"arm64.efi";
		cfg.http_uefi_x64 = (char *)"ipxe.efi";
		cfg.http_uefi_arm64 = (char *)"arm64/ipxe.efi";
	}
	/* an exact-size heap copy so ASan sees any read past the end */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (dhcp_packet_parse(copy, size, &req) == 0) {
		dhcp_request_wants(&req, DHCP_OPT_BOOTFILE);
		dhcp_request_user_class_is(&req, "iPXE");
		answer(&req, &cfg, RB_DHCP_PROXY);
		answer(&req, &cfg, RB_DHCP_FULL);
	}
	free(copy);
	return 0;
}
