/* Boot decisions: from a parsed DHCP request and the configuration to "what
 * does this client boot".
 *
 * Three kinds of network-boot clients ask us, and each needs its own answer:
 *  - iPXE (user class "iPXE", or option 175 present) gets the URL of its
 *    per-node script, http://<server>:<http_port>/boot/<mac>.ipxe; this check
 *    comes first because iPXE also sends "PXEClient".
 *  - UEFI HTTP Boot ("HTTPClient") gets an http:// URL as its boot file and
 *    must see option 60 "HTTPClient" echoed, or EDK2 drops the offer.
 *  - firmware PXE ("PXEClient") gets a TFTP path chosen by option 93.
 * In proxy mode, PXE firmware also gets option 60 "PXEClient" and option 43
 * with discovery control 8 ("no menu, boot the file in this offer"), which
 * is what dnsmasq sends when no pxe-service menu is configured; in full mode
 * the plain file/siaddr answer is enough (and is what dnsmasq sends).
 * Must never: do I/O or depend on anything but its arguments. */
#include "pxe/dhcp_boot.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *dhcp_boot_arch_name(uint16_t arch)
{
	switch (arch) {
	case 0:
		return "bios";
	case 6:
		return "uefi-ia32";
	case 7:
	case 9:
		return "uefi-x64";
	case 10:
		return "uefi-arm32";
	case 11:
		return "uefi-arm64";
	case 16:
		return "uefi-x64-http";
	case 19:
		return "uefi-arm64-http";
	default:
		return "unknown";
	}
}

static int make_url(char *buf, size_t n, const struct rb_config *cfg, const char *path,
                    const char *suffix)
{
	char a[INET_ADDRSTRLEN];
	int k;

	if (!inet_ntop(AF_INET, &cfg->server_addr, a, sizeof(a)))
		return -EINVAL;
	k = snprintf(buf, n, "http://%s:%u/boot/%s%s", a, cfg->http_port, path, suffix);
	if (k < 0 || (size_t)k >= n)
		return -ENAMETOOLONG;
	return 0;
}

int dhcp_boot_decide(const struct dhcp_request *req, const struct rb_config *cfg,
                     struct dhcp_boot *ret)
{
	/* PXE clients without option 93 predate RFC 4578: BIOS. */
	uint16_t arch = req->has_arch ? req->arch : 0;
	bool proxy = cfg->dhcp_mode == RB_DHCP_PROXY;
	bool http = false;
	const char *f;
	int k = 0;

	memset(ret, 0, sizeof(*ret));
	if (dhcp_request_user_class_is(req, "iPXE") || req->ipxe_encap) {
		char mac[18];

		ret->kind = DHCP_CLIENT_IPXE;
		snprintf(ret->arch_name, sizeof(ret->arch_name), "ipxe-%s",
		         dhcp_boot_arch_name(arch));
		/* iPXE takes a proxy offer only with "PXEClient" in it. */
		ret->vendor_class = proxy ? "PXEClient" : NULL;
		if (req->hlen != 6)
			return 0;
		rb_mac_format(req->chaddr, mac);
		k = make_url(ret->file, sizeof(ret->file), cfg, mac, ".ipxe");
		ret->has_file = k == 0;
		return k;
	}

	if (dhcp_request_vendor_is(req, "HTTPClient"))
		ret->kind = DHCP_CLIENT_HTTP;
	else if (dhcp_request_vendor_is(req, "PXEClient"))
		ret->kind = DHCP_CLIENT_PXE;
	else
		return 0;
	snprintf(ret->arch_name, sizeof(ret->arch_name), "%s", dhcp_boot_arch_name(arch));
	if (ret->kind == DHCP_CLIENT_HTTP)
		ret->vendor_class = "HTTPClient";
	else if (proxy)
		ret->vendor_class = "PXEClient";

	f = rb_config_boot_file(cfg, arch, &http);
	if (!f)
		return 0;
	if (http || ret->kind == DHCP_CLIENT_HTTP) {
		k = make_url(ret->file, sizeof(ret->file), cfg, f, "");
		ret->has_file = k == 0;
		return k;
	}
	if (strlen(f) >= sizeof(ret->file))
		return -ENAMETOOLONG;
	memcpy(ret->file, f, strlen(f) + 1);
	ret->has_file = true;
	ret->tftp = true;
	ret->pxe_vendor_opts = proxy;
	return 0;
}
