/* BOOTP/DHCP wire format (RFC 2131, 2132, 4578, 3004): parse a request into a
 * struct with a bounds-checked option walk, and build replies into a bounded
 * buffer. Pure: no sockets, no allocation, no logging above debug. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHCP_BOOTREQUEST 1
#define DHCP_BOOTREPLY   2

#define DHCP_DISCOVER 1
#define DHCP_OFFER    2
#define DHCP_REQUEST  3
#define DHCP_DECLINE  4
#define DHCP_ACK      5
#define DHCP_NAK      6
#define DHCP_RELEASE  7
#define DHCP_INFORM   8

/* Option codes this server reads or writes. */
#define DHCP_OPT_PAD          0
#define DHCP_OPT_SUBNET_MASK  1
#define DHCP_OPT_ROUTER       3
#define DHCP_OPT_DNS          6
#define DHCP_OPT_HOSTNAME     12
#define DHCP_OPT_DOMAIN       15
#define DHCP_OPT_BROADCAST    28
#define DHCP_OPT_VENDOR_ENCAP 43
#define DHCP_OPT_REQUESTED_IP 50
#define DHCP_OPT_LEASE_TIME   51
#define DHCP_OPT_OVERLOAD     52
#define DHCP_OPT_MSG_TYPE     53
#define DHCP_OPT_SERVER_ID    54
#define DHCP_OPT_PARAM_LIST   55
#define DHCP_OPT_MESSAGE      56
#define DHCP_OPT_MAX_MSG_SIZE 57
#define DHCP_OPT_T1           58
#define DHCP_OPT_T2           59
#define DHCP_OPT_VENDOR_CLASS 60
#define DHCP_OPT_CLIENT_ID    61
#define DHCP_OPT_TFTP_SERVER  66
#define DHCP_OPT_BOOTFILE     67
#define DHCP_OPT_USER_CLASS   77
#define DHCP_OPT_CLIENT_ARCH  93
#define DHCP_OPT_CLIENT_NDI   94
#define DHCP_OPT_UUID         97
#define DHCP_OPT_IPXE_ENCAP   175
#define DHCP_OPT_END          255

#define DHCP_FIXED_LEN      236 /* op .. file, without the magic cookie */
#define DHCP_MIN_LEN        240 /* fixed part + cookie */
#define DHCP_SNAME_LEN      64
#define DHCP_FILE_LEN       128
#define DHCP_MAGIC          0x63825363u
#define DHCP_FLAG_BROADCAST 0x8000u
/* Smallest reply every client must accept (RFC 2131: 576-byte IP datagram). */
#define DHCP_REPLY_MIN_MAX 548
#define DHCP_PACKET_MAX    1472 /* largest reply we ever build (1500 MTU) */

/* A parsed request. Pointers (vendor_class, user_class, ...) borrow the
 * packet buffer given to dhcp_packet_parse() and live as long as it does. */
struct dhcp_request {
	uint8_t op, htype, hlen, hops;
	uint32_t xid;         /* as on the wire (network order), echoed unchanged */
	uint16_t secs, flags; /* host order */
	struct in_addr ciaddr, yiaddr, siaddr, giaddr;
	uint8_t chaddr[16];

	uint8_t msg_type; /* option 53; 0 = plain BOOTP */
	uint8_t overload; /* option 52 as seen: 1 file, 2 sname, 3 both */
	bool has_requested_ip, has_server_id, has_arch, has_ndi, has_uuid, ipxe_encap;
	struct in_addr requested_ip; /* 50 */
	struct in_addr server_id;    /* 54 */
	uint16_t arch;               /* 93: first architecture listed */
	uint8_t ndi[3];              /* 94: type, major, minor */
	uint8_t uuid[17];            /* 97: type byte + 16-byte GUID */
	uint16_t max_msg_size;       /* 57, 0 when absent */

	const uint8_t *param_list; /* 55 */
	size_t param_list_len;
	const uint8_t *vendor_class; /* 60, not NUL-terminated */
	size_t vendor_class_len;
	const uint8_t *user_class; /* 77, raw (iPXE sends "iPXE", RFC 3004 length-prefixed) */
	size_t user_class_len;
	const uint8_t *client_id; /* 61 */
	size_t client_id_len;
	const uint8_t *hostname; /* 12 */
	size_t hostname_len;
};

/* Parses len bytes of a UDP payload. Returns 0, or -EBADMSG for anything
 * malformed: shorter than the fixed header plus cookie, wrong cookie, an
 * option whose length runs past its field, options with no END, a bad
 * hlen, a malformed option we read (wrong length for 53/50/54/93/94/97/57).
 * Overloaded file/sname fields (option 52) are walked too. BOOTREPLY
 * packets parse fine: the caller decides what to ignore. */
int dhcp_packet_parse(const void *buf, size_t len, struct dhcp_request *ret);

/* True if the parameter request list (55) names code. */
bool dhcp_request_wants(const struct dhcp_request *req, uint8_t code);
/* True if the vendor class (60) starts with prefix. */
bool dhcp_request_vendor_is(const struct dhcp_request *req, const char *prefix);
/* True if the user class (77) is "iPXE", raw or as an RFC 3004 entry. */
bool dhcp_request_user_class_is(const struct dhcp_request *req, const char *name);

/* A reply under construction in a caller-owned buffer. Writers never go past
 * cap; the first overflow sets err = -ENOBUFS and later writes do nothing. */
struct dhcp_reply {
	uint8_t *buf;
	size_t cap; /* options stop here (END included) */
	size_t len;
	int err;
};

/* Starts a BOOTREPLY for req in buf (at least DHCP_REPLY_MIN_MAX bytes):
 * copies htype/hlen/xid/flags/giaddr/chaddr, zeroes the rest, writes the
 * cookie and option 53 = msg_type. The usable size is the client's option 57
 * (minus IP/UDP headers) when it is larger than 548, capped by bufcap. */
void dhcp_reply_start(struct dhcp_reply *r, void *buf, size_t bufcap,
                      const struct dhcp_request *req, uint8_t msg_type);
void dhcp_reply_set_ciaddr(struct dhcp_reply *r, struct in_addr a);
void dhcp_reply_set_yiaddr(struct dhcp_reply *r, struct in_addr a);
void dhcp_reply_set_siaddr(struct dhcp_reply *r, struct in_addr a);
/* Copies s into the 128-byte file field; -ENAMETOOLONG (field left empty)
 * when it does not fit with its NUL. */
int dhcp_reply_set_file(struct dhcp_reply *r, const char *s);
void dhcp_reply_opt(struct dhcp_reply *r, uint8_t code, const void *data, size_t len);
void dhcp_reply_opt_u8(struct dhcp_reply *r, uint8_t code, uint8_t v);
void dhcp_reply_opt_u32(struct dhcp_reply *r, uint8_t code, uint32_t v);
void dhcp_reply_opt_addr(struct dhcp_reply *r, uint8_t code, struct in_addr a);
void dhcp_reply_opt_str(struct dhcp_reply *r, uint8_t code, const char *s);
/* Appends END, pads to the 300-byte BOOTP minimum. Returns the length or
 * the first error (-ENOBUFS). */
int dhcp_reply_finish(struct dhcp_reply *r, size_t *ret_len);

/* Reads one option from a built (or received) packet: for tests and
 * diagnostics. Returns the option length and sets *ret_data, or -ENOENT. */
int dhcp_packet_find_option(const void *buf, size_t len, uint8_t code, const uint8_t **ret_data);

const char *dhcp_msg_type_name(uint8_t type);
