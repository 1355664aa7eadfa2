/* TFTP wire format (RFC 1350) with option negotiation (RFC 2347): blksize
 * (RFC 2348), tsize and timeout (RFC 2349), windowsize (RFC 7440).
 * Pure functions: parse requests and client replies, decide what to grant,
 * build DATA/OACK/ERROR packets, and keep the sender's window arithmetic.
 * No sockets, no files, no logging. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tftp_opcode {
	TFTP_RRQ = 1,
	TFTP_WRQ = 2,
	TFTP_DATA = 3,
	TFTP_ACK = 4,
	TFTP_ERROR = 5,
	TFTP_OACK = 6,
};

enum tftp_error_code {
	TFTP_EUNDEF = 0,    /* not defined, see message */
	TFTP_ENOTFOUND = 1, /* file not found */
	TFTP_EACCESS = 2,   /* access violation */
	TFTP_ENOSPACE = 3,  /* disk full or allocation exceeded */
	TFTP_EBADOP = 4,    /* illegal TFTP operation */
	TFTP_EBADID = 5,    /* unknown transfer ID */
	TFTP_EEXISTS = 6,   /* file already exists */
	TFTP_ENOUSER = 7,   /* no such user */
	TFTP_EOPTNEG = 8,   /* option negotiation refused (RFC 2347) */
};

enum tftp_mode {
	TFTP_MODE_OCTET,
	TFTP_MODE_NETASCII,
	TFTP_MODE_MAIL,
	TFTP_MODE_OTHER,
};

#define TFTP_HEADER_SIZE     4
#define TFTP_BLKSIZE_DEFAULT 512
#define TFTP_BLKSIZE_MIN     8     /* RFC 2348 */
#define TFTP_BLKSIZE_MAX     65464 /* RFC 2348 */
#define TFTP_TIMEOUT_MIN     1     /* RFC 2349, seconds */
#define TFTP_TIMEOUT_MAX     255
#define TFTP_WINDOW_MIN      1 /* RFC 7440 */
#define TFTP_WINDOW_MAX      65535
/* We never grant a larger window: it keeps the mapping of 16-bit ACK numbers
 * onto the 64-bit block counter unambiguous and bounds a burst. */
#define TFTP_WINDOW_CAP   4096
#define TFTP_FILENAME_MAX 1024
/* Option pairs a request may carry. Boot firmware sends two to four
 * (blksize, tsize, windowsize, timeout); more is a flood, refused. */
#define TFTP_OPTIONS_MAX 16

/* A parsed RRQ/WRQ. Option fields are 0/false when the option was absent,
 * duplicated after its first occurrence, or had an unusable value (ignored
 * per RFC 2347); the counters say how many were ignored, for logging. */
struct tftp_request {
	uint16_t opcode; /* TFTP_RRQ or TFTP_WRQ */
	enum tftp_mode mode;
	char filename[TFTP_FILENAME_MAX + 1];
	size_t filename_len;
	unsigned blksize;    /* 8..65464 (larger requests clamped), 0 = none */
	unsigned timeout;    /* 1..255 s, 0 = none */
	unsigned windowsize; /* 1..65535, 0 = none */
	bool tsize;          /* tsize asked for (value in an RRQ is 0) */
	uint64_t tsize_value;
	unsigned n_ignored; /* unknown, duplicate, valueless or bad options */
};

/* Parses an RRQ or WRQ. Returns 0; -EBADMSG when a string is not
 * NUL-terminated inside the packet, the file name is empty or the mode
 * missing; -ENAMETOOLONG for a file name over TFTP_FILENAME_MAX; -E2BIG
 * for more than TFTP_OPTIONS_MAX options (known or not); -EPROTO when the
 * opcode is not RRQ/WRQ. Trailing NUL padding is allowed. */
int tftp_request_parse(const void *buf, size_t len, struct tftp_request *ret);

/* A packet a client sends during a transfer. */
struct tftp_reply {
	uint16_t opcode; /* TFTP_ACK or TFTP_ERROR (anything else: -EPROTO) */
	uint16_t block;  /* ACK */
	uint16_t error_code;
	char error_msg[128]; /* ERROR, NUL-terminated, possibly truncated */
};

/* Returns 0, -EBADMSG for a short packet, -EPROTO for another opcode. */
int tftp_reply_parse(const void *buf, size_t len, struct tftp_reply *ret);

/* What the server allows. */
struct tftp_limits {
	unsigned max_blksize; /* already clamped by the path MTU */
	unsigned max_window;
};

/* What was agreed for one transfer. */
struct tftp_params {
	unsigned blksize;    /* bytes per DATA packet */
	unsigned windowsize; /* blocks per window */
	unsigned timeout;    /* seconds, 0 = the server's own default */
	bool ack_blksize, ack_windowsize, ack_timeout, ack_tsize; /* in the OACK */
	uint64_t tsize; /* file size reported in the OACK */
};

/* Decides the options for a read of a file of file_size bytes. Returns true
 * when an OACK must be sent (some option was accepted). tsize is not
 * acknowledged for an empty file (curl rejects an OACK with tsize 0). */
bool tftp_negotiate(const struct tftp_request *req, const struct tftp_limits *lim,
                    uint64_t file_size, struct tftp_params *ret);

/* Builders return the packet length, or -ENOBUFS if len is too small. */
int tftp_build_oack(const struct tftp_params *p, void *buf, size_t len);
int tftp_build_error(uint16_t code, const char *msg, void *buf, size_t len);
/* Writes the 4-byte DATA header for the 1-based block index (the block
 * number on the wire is the index modulo 65536: rollover goes to 0). */
void tftp_build_data_header(uint64_t block_index, void *buf);
/* The standard message for an error code. */
const char *tftp_error_string(uint16_t code);

/* Number of DATA blocks for a file: always at least one, and a file whose
 * size is a multiple of blksize ends with an empty block. */
uint64_t tftp_block_count(uint64_t file_size, unsigned blksize);

/* Sender state of one transfer (RFC 7440 sliding window; window 1 is plain
 * RFC 1350 lock-step). Block indices are 64-bit and 1-based so rollover
 * of the 16-bit wire number never confuses the sender.
 *
 * The window stays the negotiated one for the whole transfer: receivers
 * count that many blocks before they ACK, so a shorter burst would only
 * wait for the receiver's timeout (atftp: 5 s each, and it ignores
 * duplicate blocks, so repeating one does not make it ACK either). Every
 * loss (a gap ACK, a repeated ACK, a timeout) resends a whole window from
 * the first block not acknowledged, as RFC 7440 section 4 has it. */
struct tftp_window {
	uint64_t nblocks;  /* blocks in the transfer */
	uint64_t acked;    /* highest index acknowledged in order, 0 = none */
	uint64_t next;     /* next index to send */
	uint64_t sent_max; /* highest index ever sent (a go-back moves next below it) */
	unsigned window;   /* the negotiated window (1 = lock-step) */
	unsigned losses;   /* loss events seen (partial, duplicate ACK, timeout) */
	bool dup_resent;   /* a duplicate of the current ACK already caused a resend */
};

enum tftp_ack_result {
	TFTP_ACK_STALE,  /* old, duplicate or out-of-window ACK: nothing to send */
	TFTP_ACK_SEND,   /* send from w->next */
	TFTP_ACK_RESEND, /* loss: w->next moved back; send from w->next */
	TFTP_ACK_DONE,   /* the last block was acknowledged */
};

void tftp_window_init(struct tftp_window *w, uint64_t nblocks, unsigned window);
/* Number of blocks that may be sent now, starting at w->next. */
uint64_t tftp_window_sendable(const struct tftp_window *w);
/* Records that n blocks from w->next were sent. */
void tftp_window_sent(struct tftp_window *w, uint64_t n);
/* Applies the ACK with wire block number 'block'. */
enum tftp_ack_result tftp_window_ack(struct tftp_window *w, uint16_t block);
/* A retransmission timeout: go back to the first unacknowledged block
 * (the whole window is sent again from there). */
void tftp_window_timeout(struct tftp_window *w);
