/* TFTP packets and the sender's window arithmetic, without I/O.
 *
 * Requests are read from a cursor that checks the remaining length before
 * every string; a string that runs off the end of the packet makes the whole
 * request malformed (-EBADMSG), while option trouble that RFC 2347 lets a
 * server ignore (unknown names, duplicates, a name without a value, a value
 * out of range) only drops that option. The first occurrence of a duplicated
 * option wins; more than TFTP_OPTIONS_MAX options make the request a flood
 * (-E2BIG), which the server refuses. blksize below 8 is ignored and above 65464 is clamped
 * (RFC 2348); timeout outside 1..255 and windowsize outside 1..65535 are
 * ignored (RFC 2349, RFC 7440).
 *
 * The window keeps 64-bit block indices (1-based, block 0 is the OACK) so
 * the 16-bit wire numbers may roll over (65535 -> 0) any number of times.
 * This file must never touch a socket, a file or the log. */
#include "pxe/tftp_proto.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct cursor {
	const uint8_t *p;
	size_t left;
};

/* Takes one NUL-terminated string; -EBADMSG if the NUL is missing. */
static int cursor_string(struct cursor *c, const char **ret, size_t *ret_len)
{
	const uint8_t *nul;

	if (c->left == 0)
		return -EBADMSG;
	nul = memchr(c->p, '\0', c->left);
	if (!nul)
		return -EBADMSG;
	*ret = (const char *)c->p;
	*ret_len = (size_t)(nul - c->p);
	c->left -= *ret_len + 1;
	c->p = nul + 1;
	return 0;
}

/* A decimal option value: digits only. Values too long for 18 digits
 * saturate at UINT64_MAX/2 so callers can clamp instead of failing. */
static int parse_value(const char *s, size_t len, uint64_t *ret)
{
	long long v;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
	if (len > 18) {
		*ret = UINT64_MAX / 2;
		return 0;
	}
	if (rb_strtonum(s, 0, 999999999999999999LL, &v) < 0)
		return -EINVAL;
	*ret = (uint64_t)v;
	return 0;
}

static enum tftp_mode parse_mode(const char *s)
{
	if (strcasecmp(s, "octet") == 0)
		return TFTP_MODE_OCTET;
	if (strcasecmp(s, "netascii") == 0)
		return TFTP_MODE_NETASCII;
	if (strcasecmp(s, "mail") == 0)
		return TFTP_MODE_MAIL;
	return TFTP_MODE_OTHER;
}

enum opt_kind { OPT_BLKSIZE, OPT_TSIZE, OPT_TIMEOUT, OPT_WINDOWSIZE, OPT_UNKNOWN };

static enum opt_kind option_kind(const char *name)
{
	if (strcasecmp(name, "blksize") == 0)
		return OPT_BLKSIZE;
	if (strcasecmp(name, "tsize") == 0)
		return OPT_TSIZE;
	if (strcasecmp(name, "timeout") == 0)
		return OPT_TIMEOUT;
	if (strcasecmp(name, "windowsize") == 0)
		return OPT_WINDOWSIZE;
	return OPT_UNKNOWN;
}

/* Applies one option; returns false when it is ignored. */
static bool apply_option(struct tftp_request *r, unsigned *seen, const char *name, const char *val,
                         size_t val_len)
{
	enum opt_kind k = option_kind(name);
	uint64_t v;

	if (k == OPT_UNKNOWN || (*seen & (1u << k)))
		return false;
	*seen |= 1u << k;
	if (parse_value(val, val_len, &v) < 0)
		return false;
	switch (k) {
	case OPT_BLKSIZE:
		if (v < TFTP_BLKSIZE_MIN)
			return false;
		r->blksize = (unsigned)RB_MIN(v, (uint64_t)TFTP_BLKSIZE_MAX);
		return true;
	case OPT_TSIZE:
		r->tsize = true;
		r->tsize_value = v;
		return true;
	case OPT_TIMEOUT:
		if (v < TFTP_TIMEOUT_MIN || v > TFTP_TIMEOUT_MAX)
			return false;
		r->timeout = (unsigned)v;
		return true;
	case OPT_WINDOWSIZE:
		if (v < TFTP_WINDOW_MIN || v > TFTP_WINDOW_MAX)
			return false;
		r->windowsize = (unsigned)v;
		return true;
	default:
		return false;
	}
}

int tftp_request_parse(const void *buf, size_t len, struct tftp_request *ret)
{
	struct cursor c = { .p = buf, .left = len };
	const char *fname, *mode;
	size_t fname_len, mode_len;
	unsigned seen = 0, n_options = 0;
	uint16_t op;
	int r;

	if (len < 2)
		return -EBADMSG;
	op = (uint16_t)(c.p[0] << 8 | c.p[1]);
	if (op != TFTP_RRQ && op != TFTP_WRQ)
		return -EPROTO;
	c.p += 2;
	c.left -= 2;

	r = cursor_string(&c, &fname, &fname_len);
	if (r < 0)
		return r;
	if (fname_len == 0)
		return -EBADMSG;
	if (fname_len > TFTP_FILENAME_MAX)
		return -ENAMETOOLONG;
	r = cursor_string(&c, &mode, &mode_len);
	if (r < 0 || mode_len == 0)
		return -EBADMSG;

	memset(ret, 0, sizeof(*ret));
	ret->opcode = op;
	ret->mode = parse_mode(mode);
	memcpy(ret->filename, fname, fname_len);
	ret->filename[fname_len] = '\0';
	ret->filename_len = fname_len;

	while (c.left > 0) {
		const char *name, *val;
		size_t name_len, val_len;

		r = cursor_string(&c, &name, &name_len);
		if (r < 0)
			return r;
		/* An empty name: NUL padding some PXE ROMs append; the rest
		 * must be padding too. */
		if (name_len == 0) {
			for (size_t i = 0; i < c.left; i++)
				if (c.p[i] != '\0')
					return -EBADMSG;
			break;
		}
		if (c.left == 0) { /* a name without a value */
			if (++n_options > TFTP_OPTIONS_MAX)
				return -E2BIG;
			ret->n_ignored++;
			break;
		}
		r = cursor_string(&c, &val, &val_len);
		if (r < 0)
			return r;
		if (++n_options > TFTP_OPTIONS_MAX)
			return -E2BIG;
		if (!apply_option(ret, &seen, name, val, val_len))
			ret->n_ignored++;
	}
	return 0;
}

int tftp_reply_parse(const void *buf, size_t len, struct tftp_reply *ret)
{
	const uint8_t *p = buf;
	uint16_t op;

	if (len < 4)
		return -EBADMSG;
	op = (uint16_t)(p[0] << 8 | p[1]);
	if (op != TFTP_ACK && op != TFTP_ERROR)
		return -EPROTO;
	memset(ret, 0, sizeof(*ret));
	ret->opcode = op;
	if (op == TFTP_ACK) {
		ret->block = (uint16_t)(p[2] << 8 | p[3]);
		return 0;
	}
	ret->error_code = (uint16_t)(p[2] << 8 | p[3]);
	/* The message may lack its NUL (broken clients): take what is there. */
	{
		size_t n = len - 4;
		const uint8_t *nul = memchr(p + 4, '\0', n);

		if (nul)
			n = (size_t)(nul - (p + 4));
		n = RB_MIN(n, sizeof(ret->error_msg) - 1);
		memcpy(ret->error_msg, p + 4, n);
		ret->error_msg[n] = '\0';
	}
	return 0;
}

bool tftp_negotiate(const struct tftp_request *req, const struct tftp_limits *lim,
                    uint64_t file_size, struct tftp_params *ret)
{
	struct tftp_params p = { .blksize = TFTP_BLKSIZE_DEFAULT, .windowsize = 1 };
	unsigned cap_blk = RB_MAX(RB_MIN(lim->max_blksize, (unsigned)TFTP_BLKSIZE_MAX),
	                          (unsigned)TFTP_BLKSIZE_MIN);
	unsigned cap_win = RB_MAX(RB_MIN(lim->max_window, (unsigned)TFTP_WINDOW_CAP), 1u);

	if (req->blksize) {
		p.blksize = RB_MIN(req->blksize, cap_blk);
		p.ack_blksize = true;
	}
	if (req->windowsize) {
		p.windowsize = RB_MIN(req->windowsize, cap_win);
		p.ack_windowsize = true;
	}
	if (req->timeout) {
		p.timeout = req->timeout;
		p.ack_timeout = true;
	}
	/* tsize 0 is left out: curl takes "tsize 0" in an OACK for an error,
	 * and the empty first DATA block says the same thing. */
	if (req->tsize && file_size > 0) {
		p.tsize = file_size;
		p.ack_tsize = true;
	}
	*ret = p;
	return p.ack_blksize || p.ack_windowsize || p.ack_timeout || p.ack_tsize;
}

static int put_option(uint8_t *buf, size_t len, size_t *off, const char *name, uint64_t v)
{
	int n = snprintf((char *)buf + *off, len - *off, "%s%c%llu", name, '\0',
	                 (unsigned long long)v);

	/* snprintf's count excludes the final NUL, which must fit too. */
	if (n < 0 || (size_t)n + 1 > len - *off)
		return -ENOBUFS;
	*off += (size_t)n + 1;
	return 0;
}

int tftp_build_oack(const struct tftp_params *p, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t off = 2;

	if (len < 2)
		return -ENOBUFS;
	b[0] = 0;
	b[1] = TFTP_OACK;
	if ((p->ack_blksize && put_option(b, len, &off, "blksize", p->blksize) < 0) ||
	    (p->ack_tsize && put_option(b, len, &off, "tsize", p->tsize) < 0) ||
	    (p->ack_timeout && put_option(b, len, &off, "timeout", p->timeout) < 0) ||
	    (p->ack_windowsize && put_option(b, len, &off, "windowsize", p->windowsize) < 0))
		return -ENOBUFS;
	return (int)off;
}

static const char *const error_strings[] = {
	[TFTP_EUNDEF] = "Undefined error",
	[TFTP_ENOTFOUND] = "File not found",
	[TFTP_EACCESS] = "Access violation",
	[TFTP_ENOSPACE] = "Disk full or allocation exceeded",
	[TFTP_EBADOP] = "Illegal TFTP operation",
	[TFTP_EBADID] = "Unknown transfer ID",
	[TFTP_EEXISTS] = "File already exists",
	[TFTP_ENOUSER] = "No such user",
	[TFTP_EOPTNEG] = "Option negotiation failed",
};

const char *tftp_error_string(uint16_t code)
{
	return code < RB_ARRAY_SIZE(error_strings) ? error_strings[code] : "Unknown error";
}

int tftp_build_error(uint16_t code, const char *msg, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t n;

	if (!msg)
		msg = tftp_error_string(code);
	n = strlen(msg);
	if (len < 5 + n)
		return -ENOBUFS;
	b[0] = 0;
	b[1] = TFTP_ERROR;
	b[2] = (uint8_t)(code >> 8);
	b[3] = (uint8_t)code;
	memcpy(b + 4, msg, n);
	b[4 + n] = '\0';
	return (int)(5 + n);
}

void tftp_build_data_header(uint64_t block_index, void *buf)
{
	uint8_t *b = buf;

	b[0] = 0;
	b[1] = TFTP_DATA;
	b[2] = (uint8_t)(block_index >> 8);
	b[3] = (uint8_t)block_index;
}

uint64_t tftp_block_count(uint64_t file_size, unsigned blksize)
{
	return file_size / blksize + 1;
}

void tftp_window_init(struct tftp_window *w, uint64_t nblocks, unsigned window)
{
	memset(w, 0, sizeof(*w));
	w->nblocks = nblocks;
	w->next = 1;
	w->window = window ? window : 1;
}

uint64_t tftp_window_sendable(const struct tftp_window *w)
{
	uint64_t end = RB_MIN(w->acked + w->window, w->nblocks); /* last index we may send */

	return w->next <= end ? end - w->next + 1 : 0;
}

void tftp_window_sent(struct tftp_window *w, uint64_t n)
{
	w->next += n;
	if (w->next - 1 > w->sent_max)
		w->sent_max = w->next - 1;
}

enum tftp_ack_result tftp_window_ack(struct tftp_window *w, uint16_t block)
{
	/* The only index within [acked, sent_max] with these low 16 bits; the
	 * window cap keeps that range shorter than 65536. Anything else is an
	 * ACK older than 'acked' (or bogus) and is ignored: it never moves
	 * 'next' back. An index at or past 'next' is fine: blocks sent before
	 * a go-back did arrive. */
	uint64_t idx = w->acked + (uint16_t)(block - (uint16_t)w->acked);

	if (idx > w->sent_max)
		return TFTP_ACK_STALE;
	if (idx == w->acked) {
		/* Nothing outstanding, or lock-step: a duplicate ACK must not
		 * trigger a resend (Sorcerer's Apprentice, RFC 1123 4.2.3.1);
		 * the timer covers a real loss. With a window, the receiver
		 * repeats its ACK when the window's first block is missing:
		 * resend the window once. */
		if (w->next == w->acked + 1 || w->window == 1 || w->dup_resent)
			return TFTP_ACK_STALE;
		w->dup_resent = true;
		w->losses++;
		w->next = w->acked + 1;
		return TFTP_ACK_RESEND;
	}
	w->acked = idx;
	w->dup_resent = false;
	if (w->acked == w->nblocks)
		return TFTP_ACK_DONE;
	if (idx + 1 < w->next) { /* the receiver saw a gap after idx */
		w->losses++;
		w->next = idx + 1;
		return TFTP_ACK_RESEND;
	}
	if (w->next < idx + 1)
		w->next = idx + 1;
	return TFTP_ACK_SEND;
}

void tftp_window_timeout(struct tftp_window *w)
{
	w->losses++;
	w->next = w->acked + 1;
	w->dup_resent = false;
}
