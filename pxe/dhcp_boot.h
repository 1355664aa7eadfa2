/* The boot answer for a DHCP request: which kind of network-boot client is
 * asking (firmware PXE, UEFI HTTP Boot, iPXE, or none of them) and what it
 * should boot, from a parsed request and the configuration. Pure. */
#pragma once
#include <stdbool.h>

#include "pxe/config.h"
#include "pxe/dhcp_packet.h"

enum dhcp_client_kind {
	DHCP_CLIENT_OTHER, /* not a network-boot client: no boot answer */
	DHCP_CLIENT_PXE,   /* firmware PXE (option 60 "PXEClient") */
	DHCP_CLIENT_HTTP,  /* UEFI HTTP Boot (option 60 "HTTPClient") */
	DHCP_CLIENT_IPXE,  /* iPXE (user class "iPXE" or option 175) */
};

struct dhcp_boot {
	enum dhcp_client_kind kind;
	bool has_file;            /* file holds a boot file or URL */
	bool tftp;                /* file is a TFTP path: send siaddr (next-server) */
	bool pxe_vendor_opts;     /* send option 43, PXE discovery control = 8 */
	const char *vendor_class; /* option 60 to send back, or NULL */
	char arch_name[24];       /* "bios", "uefi-x64", "ipxe-bios", ...; "" if unknown */
	char file[256];           /* TFTP path or http:// URL */
};

/* Decides the boot answer for req under cfg (mode, server address, HTTP
 * port, boot files). Always fills ret; returns 0, or -ENAMETOOLONG when the
 * URL would not fit (then has_file is false). */
int dhcp_boot_decide(const struct dhcp_request *req, const struct rb_config *cfg,
                     struct dhcp_boot *ret);

/* Name of an option 93 architecture for the registry: "bios", "uefi-x64", ... */
const char *dhcp_boot_arch_name(uint16_t arch);
