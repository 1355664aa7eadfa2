/* BOOTP/DHCP packet parsing and reply building.
 *
 * Owns: nothing but the code; every buffer belongs to the caller.
 * The parser reads the fixed 236-byte header, checks the magic cookie and
 * walks the options from a cursor whose remaining length is checked before
 * every read (in the options field, and in file/sname when option 52 says
 * they are overloaded). Anything structurally wrong makes the whole packet
 * -EBADMSG: a server must never act on half of a packet.
 * Must never: touch a socket, allocate, or log above debug. */
#include "pxe/dhcp_packet.h"

#include "common/util.h"

#include <errno.h>
#include <string.h>

/* Offsets in the fixed header (RFC 2131 figure 1). */
enum {
	OFF_OP = 0,
	OFF_HTYPE = 1,
	OFF_HLEN = 2,
	OFF_HOPS = 3,
	OFF_XID = 4,
	OFF_SECS = 8,
	OFF_FLAGS = 10,
	OFF_CIADDR = 12,
	OFF_YIADDR = 16,
	OFF_SIADDR = 20,
	OFF_GIADDR = 24,
	OFF_CHADDR = 28,
	OFF_SNAME = 44,
	OFF_FILE = 108,
	OFF_COOKIE = 236,
	OFF_OPTIONS = 240,
};

#define BOOTP_MIN_LEN 300 /* old relays and clients drop shorter replies */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static struct in_addr get_addr(const uint8_t *p)
{
	struct in_addr a;

	memcpy(&a.s_addr, p, 4);
	return a;
}

/* One option with its value; l was checked against the field already. */
static int take_option(struct dhcp_request *r, uint8_t code, const uint8_t *v, size_t l,
                       bool main_field)
{
	switch (code) {
	case DHCP_OPT_MSG_TYPE:
		if (l != 1)
			return -EBADMSG;
		if (!r->msg_type)
			r->msg_type = v[0];
		break;
	case DHCP_OPT_OVERLOAD:
		if (l != 1 || v[0] < 1 || v[0] > 3)
			return -EBADMSG;
		/* Only the options field may say that file/sname hold options. */
		if (main_field && !r->overload)
			r->overload = v[0];
		break;
	case DHCP_OPT_REQUESTED_IP:
		if (l != 4)
			return -EBADMSG;
		if (!r->has_requested_ip) {
			r->requested_ip = get_addr(v);
			r->has_requested_ip = true;
		}
		break;
	case DHCP_OPT_SERVER_ID:
		if (l != 4)
			return -EBADMSG;
		if (!r->has_server_id) {
			r->server_id = get_addr(v);
			r->has_server_id = true;
		}
		break;
	case DHCP_OPT_MAX_MSG_SIZE:
		if (l != 2)
			return -EBADMSG;
		if (!r->max_msg_size)
			r->max_msg_size = get16(v);
		break;
	case DHCP_OPT_CLIENT_ARCH:
		/* RFC 4578: a list of 16-bit types, the first is the preferred. */
		if (l < 2 || l % 2)
			return -EBADMSG;
		if (!r->has_arch) {
			r->arch = get16(v);
			r->has_arch = true;
		}
		break;
	case DHCP_OPT_CLIENT_NDI:
		if (l != 3)
			return -EBADMSG;
		if (!r->has_ndi) {
			memcpy(r->ndi, v, 3);
			r->has_ndi = true;
		}
		break;
	case DHCP_OPT_UUID:
		/* RFC 4578: type 0 + 16 bytes. Other shapes are ignored, not fatal:
		 * we only echo it. */
		if (l == 17 && v[0] == 0 && !r->has_uuid) {
			memcpy(r->uuid, v, 17);
			r->has_uuid = true;
		}
		break;
	case DHCP_OPT_PARAM_LIST:
		if (!r->param_list) {
			r->param_list = v;
			r->param_list_len = l;
		}
		break;
	case DHCP_OPT_VENDOR_CLASS:
		if (!r->vendor_class) {
			r->vendor_class = v;
			r->vendor_class_len = l;
		}
		break;
	case DHCP_OPT_USER_CLASS:
		if (!r->user_class) {
			r->user_class = v;
			r->user_class_len = l;
		}
		break;
	case DHCP_OPT_CLIENT_ID:
		if (!r->client_id) {
			r->client_id = v;
			r->client_id_len = l;
		}
		break;
	case DHCP_OPT_HOSTNAME:
		if (!r->hostname) {
			r->hostname = v;
			r->hostname_len = l;
		}
		break;
	case DHCP_OPT_IPXE_ENCAP:
		r->ipxe_encap = true;
		break;
	default:
		break;
	}
	return 0;
}

/* Walks the options in p[0..n). need_end: the field must end with END (the
 * options field must; file/sname may simply run out). */
static int walk_options(struct dhcp_request *r, const uint8_t *p, size_t n, bool need_end,
                        bool main_field)
{
	size_t i = 0;

	while (i < n) {
		uint8_t code = p[i];
		size_t l;
		int k;

		if (code == DHCP_OPT_PAD) {
			i++;
			continue;
		}
		if (code == DHCP_OPT_END)
			return 0;
		if (n - i < 2)
			return -EBADMSG;
		l = p[i + 1];
		if (n - i - 2 < l)
			return -EBADMSG;
		k = take_option(r, code, p + i + 2, l, main_field);
		if (k < 0)
			return k;
		i += 2 + l;
	}
	return need_end ? -EBADMSG : 0;
}

int dhcp_packet_parse(const void *buf, size_t len, struct dhcp_request *ret)
{
	const uint8_t *p = buf;
	struct dhcp_request r;
	int k;

	if (!p || len < DHCP_MIN_LEN)
		return -EBADMSG;
	if (get32(p + OFF_COOKIE) != DHCP_MAGIC)
		return -EBADMSG;

	memset(&r, 0, sizeof(r));
	r.op = p[OFF_OP];
	r.htype = p[OFF_HTYPE];
	r.hlen = p[OFF_HLEN];
	r.hops = p[OFF_HOPS];
	if (r.op != DHCP_BOOTREQUEST && r.op != DHCP_BOOTREPLY)
		return -EBADMSG;
	if (r.hlen > sizeof(r.chaddr))
		return -EBADMSG;
	memcpy(&r.xid, p + OFF_XID, 4);
	r.secs = get16(p + OFF_SECS);
	r.flags = get16(p + OFF_FLAGS);
	r.ciaddr = get_addr(p + OFF_CIADDR);
	r.yiaddr = get_addr(p + OFF_YIADDR);
	r.siaddr = get_addr(p + OFF_SIADDR);
	r.giaddr = get_addr(p + OFF_GIADDR);
	memcpy(r.chaddr, p + OFF_CHADDR, sizeof(r.chaddr));

	k = walk_options(&r, p + OFF_OPTIONS, len - OFF_OPTIONS, true, true);
	if (k < 0)
		return k;
	/* RFC 2131 4.1: with overload, file is read before sname. */
	if (r.overload & 1) {
		k = walk_options(&r, p + OFF_FILE, DHCP_FILE_LEN, false, false);
		if (k < 0)
			return k;
	}
	if (r.overload & 2) {
		k = walk_options(&r, p + OFF_SNAME, DHCP_SNAME_LEN, false, false);
		if (k < 0)
			return k;
	}
	*ret = r;
	return 0;
}

bool dhcp_request_wants(const struct dhcp_request *req, uint8_t code)
{
	return req->param_list && memchr(req->param_list, code, req->param_list_len);
}

bool dhcp_request_vendor_is(const struct dhcp_request *req, const char *prefix)
{
	size_t n = strlen(prefix);

	return req->vendor_class && req->vendor_class_len >= n &&
	       memcmp(req->vendor_class, prefix, n) == 0;
}

bool dhcp_request_user_class_is(const struct dhcp_request *req, const char *name)
{
	size_t n = strlen(name), i = 0;
	const uint8_t *u = req->user_class;
	size_t ul = req->user_class_len;

	if (!u)
		return false;
	/* iPXE sends the bare string (not RFC 3004) */
	if (ul == n && memcmp(u, name, n) == 0)
		return true;
	/* RFC 3004: a list of (length, data) entries */
	while (i < ul) {
		size_t l = u[i];

		if (ul - i - 1 < l)
			return false;
		if (l == n && memcmp(u + i + 1, name, n) == 0)
			return true;
		i += 1 + l;
	}
	return false;
}

void dhcp_reply_start(struct dhcp_reply *r, void *buf, size_t bufcap,
                      const struct dhcp_request *req, uint8_t msg_type)
{
	uint8_t *p = buf;
	size_t max = DHCP_REPLY_MIN_MAX;

	/* Option 57 counts the IP and UDP headers (28 bytes). */
	if (req->max_msg_size > DHCP_REPLY_MIN_MAX + 28)
		max = (size_t)req->max_msg_size - 28;
	r->buf = p;
	r->cap = RB_MIN(max, bufcap);
	r->len = 0;
	r->err = 0;
	if (r->cap < DHCP_MIN_LEN + 4) {
		r->err = -ENOBUFS;
		return;
	}
	memset(p, 0, DHCP_MIN_LEN);
	p[OFF_OP] = DHCP_BOOTREPLY;
	p[OFF_HTYPE] = req->htype;
	p[OFF_HLEN] = req->hlen;
	memcpy(p + OFF_XID, &req->xid, 4);
	p[OFF_FLAGS] = (uint8_t)(req->flags >> 8);
	p[OFF_FLAGS + 1] = (uint8_t)req->flags;
	memcpy(p + OFF_GIADDR, &req->giaddr.s_addr, 4);
	memcpy(p + OFF_CHADDR, req->chaddr, sizeof(req->chaddr));
	p[OFF_COOKIE] = 0x63;
	p[OFF_COOKIE + 1] = 0x82;
	p[OFF_COOKIE + 2] = 0x53;
	p[OFF_COOKIE + 3] = 0x63;
	r->len = DHCP_MIN_LEN;
	dhcp_reply_opt_u8(r, DHCP_OPT_MSG_TYPE, msg_type);
}

void dhcp_reply_set_ciaddr(struct dhcp_reply *r, struct in_addr a)
{
	if (!r->err)
		memcpy(r->buf + OFF_CIADDR, &a.s_addr, 4);
}

void dhcp_reply_set_yiaddr(struct dhcp_reply *r, struct in_addr a)
{
	if (!r->err)
		memcpy(r->buf + OFF_YIADDR, &a.s_addr, 4);
}

void dhcp_reply_set_siaddr(struct dhcp_reply *r, struct in_addr a)
{
	if (!r->err)
		memcpy(r->buf + OFF_SIADDR, &a.s_addr, 4);
}

int dhcp_reply_set_file(struct dhcp_reply *r, const char *s)
{
	size_t n = strlen(s);

	if (r->err)
		return r->err;
	if (n >= DHCP_FILE_LEN)
		return -ENAMETOOLONG;
	memcpy(r->buf + OFF_FILE, s, n);
	memset(r->buf + OFF_FILE + n, 0, DHCP_FILE_LEN - n);
	return 0;
}

void dhcp_reply_opt(struct dhcp_reply *r, uint8_t code, const void *data, size_t len)
{
	if (r->err)
		return;
	/* keep one byte for END */
	if (len > 255 || r->cap - r->len < len + 3) {
		r->err = -ENOBUFS;
		return;
	}
	r->buf[r->len] = code;
	r->buf[r->len + 1] = (uint8_t)len;
	if (len)
		memcpy(r->buf + r->len + 2, data, len);
	r->len += 2 + len;
}

void dhcp_reply_opt_u8(struct dhcp_reply *r, uint8_t code, uint8_t v)
{
	dhcp_reply_opt(r, code, &v, 1);
}

void dhcp_reply_opt_u32(struct dhcp_reply *r, uint8_t code, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	dhcp_reply_opt(r, code, b, 4);
}

void dhcp_reply_opt_addr(struct dhcp_reply *r, uint8_t code, struct in_addr a)
{
	dhcp_reply_opt(r, code, &a.s_addr, 4);
}

void dhcp_reply_opt_str(struct dhcp_reply *r, uint8_t code, const char *s)
{
	dhcp_reply_opt(r, code, s, strlen(s));
}

int dhcp_reply_finish(struct dhcp_reply *r, size_t *ret_len)
{
	if (r->err)
		return r->err;
	if (r->len >= r->cap)
		return -ENOBUFS;
	r->buf[r->len++] = DHCP_OPT_END;
	if (r->len < BOOTP_MIN_LEN && r->cap >= BOOTP_MIN_LEN) {
		memset(r->buf + r->len, 0, BOOTP_MIN_LEN - r->len);
		r->len = BOOTP_MIN_LEN;
	}
	*ret_len = r->len;
	return 0;
}

int dhcp_packet_find_option(const void *buf, size_t len, uint8_t code, const uint8_t **ret_data)
{
	const uint8_t *p = buf;
	size_t i = OFF_OPTIONS;

	if (len < DHCP_MIN_LEN)
		return -ENOENT;
	while (i < len) {
		size_t l;

		if (p[i] == DHCP_OPT_PAD) {
			i++;
			continue;
		}
		if (p[i] == DHCP_OPT_END || len - i < 2)
			return -ENOENT;
		l = p[i + 1];
		if (len - i - 2 < l)
			return -ENOENT;
		if (p[i] == code) {
			*ret_data = p + i + 2;
			return (int)l;
		}
		i += 2 + l;
	}
	return -ENOENT;
}

const char *dhcp_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
		"BOOTP", "DISCOVER", "OFFER",   "REQUEST", "DECLINE",
		"ACK",   "NAK",      "RELEASE", "INFORM",
	};

	return type < RB_ARRAY_SIZE(names) ? names[type] : "UNKNOWN";
}
