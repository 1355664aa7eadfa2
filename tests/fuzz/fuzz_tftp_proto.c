/* libFuzzer target for the TFTP request parser and what the server does
 * with a parsed request: negotiation and the OACK builder, plus the reply
 * parser and the window arithmetic driven by the same bytes. Seeds live in
 * tests/fuzz/corpus/tftp_proto/ (real EDK2 requests among them). */
#include "pxe/tftp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tftp_limits lim = { .max_blksize = 1468, .max_window = 16 };
	struct tftp_request req;
	struct tftp_reply rep;
	struct tftp_params p;
	struct tftp_window w;
	uint8_t out[512];
	uint8_t *copy;

	/* An exact-size heap copy, so reading one byte past the end trips ASan. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);

	if (tftp_request_parse(copy, size, &req) == 0) {
		if (strlen(req.filename) != req.filename_len || req.filename_len == 0 ||
		    req.filename_len > TFTP_FILENAME_MAX)
			abort();
		if (req.blksize &&
		    (req.blksize < TFTP_BLKSIZE_MIN || req.blksize > TFTP_BLKSIZE_MAX))
			abort();
		if (req.timeout > TFTP_TIMEOUT_MAX || req.windowsize > TFTP_WINDOW_MAX)
			abort();
		tftp_negotiate(&req, &lim, size * 1000003ULL, &p);
		if (p.blksize < TFTP_BLKSIZE_MIN || p.blksize > lim.max_blksize + 512 ||
		    p.windowsize < 1 || p.windowsize > lim.max_window)
			abort();
		if (tftp_build_oack(&p, out, sizeof(out)) < 2)
			abort();
	}

	if (tftp_reply_parse(copy, size, &rep) == 0 && rep.opcode == TFTP_ERROR &&
	    strlen(rep.error_msg) >= sizeof(rep.error_msg))
		abort();

	/* Every pair of bytes is an ACK (or, 0xffff, a timeout) for a window:
	 * the invariants acked <= next-1 <= nblocks must hold throughout. */
	tftp_window_init(&w, 1 + size * 7, 1 + (size % 16));
	for (size_t i = 0; i + 1 < size; i += 2) {
		uint16_t b = (uint16_t)(copy[i] << 8 | copy[i + 1]);

		tftp_window_sent(&w, tftp_window_sendable(&w));
		if (b == 0xffff)
			tftp_window_timeout(&w);
		else if (tftp_window_ack(&w, b) == TFTP_ACK_DONE)
			break;
		if (w.acked >= w.next || w.next - 1 > w.sent_max || w.sent_max > w.nblocks ||
		    w.window < 1 || w.window > 16)
			abort();
	}
	free(copy);
	return 0;
}
