/* One file of the repository streamed over HTTP(S) by a background thread
 * into a bounded queue, hashed (SHA-256) and counted as it arrives, for
 * plain images and rootfs tarballs. See agent/stream.c. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/hosts.h"

#define AGENT_STREAM_BUF   (256U * 1024) /* bytes per queued buffer */
#define AGENT_STREAM_DEPTH 16            /* buffers queued at most (4 MiB) */

struct agent_stream_opts {
	const char *url;    /* http:// or https:// */
	uint64_t size;      /* exact size of the file (signed catalogue) */
	uint8_t sha256[32]; /* of the file as stored (signed catalogue) */
	unsigned timeout_s; /* connect timeout and low-speed window; 0 = 30 */
	unsigned retries;   /* failed attempts in a row, after the first; the
	                     * count restarts after an attempt that moved at
	                     * least 1 MiB */
	/* Hosts every request and redirect hop may go to; NULL: only the
	 * host and port of url. */
	const struct agent_hosts *hosts;
};

struct agent_stream;

/* Starts the transfer in its own thread. -errno (-ENOMEM, -EAGAIN). */
int agent_stream_new(const struct agent_stream_opts *o, struct agent_stream **ret);

/* Stops the transfer (at once: no low-speed wait), joins the thread, frees
 * everything. NULL is a no-op. */
void agent_stream_free(struct agent_stream *s);

/* The next piece of the body, in order: returns its length (> 0) with
 * *ret_buf pointing at it, valid until the next call; 0 at the end of the
 * body (the hash is checked by agent_stream_finish()); -errno when the
 * transfer failed (agent_stream_finish() says why). Consumer thread only. */
ssize_t agent_stream_read(struct agent_stream *s, const void **ret_buf);

/* Reads and drops what the consumer did not read, waits for the transfer
 * to end and checks size and SHA-256 against the options. 0, or -errno
 * with a one-line reason naming the URL in err: -EBADMSG for a hash or
 * size mismatch, the transfer's error otherwise. */
int agent_stream_finish(struct agent_stream *s, char *err, size_t errlen);

/* Bytes of the file received and hashed so far, and HTTP requests made.
 * Thread-safe. */
uint64_t agent_stream_received(struct agent_stream *s);
unsigned agent_stream_requests(struct agent_stream *s);

/* Parses a Content-Range value "bytes START-END/TOTAL" (TOTAL may be "*",
 * then *ret_total is UINT64_MAX). -EINVAL if malformed or END < START. */
int agent_content_range_parse(const char *v, uint64_t *ret_start, uint64_t *ret_end,
                              uint64_t *ret_total);
