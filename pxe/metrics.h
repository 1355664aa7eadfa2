/* /metrics: rackbootd's counters in the Prometheus text exposition format
 * (version 0.0.4). Pure formatting: http.c gathers the numbers. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pxe/dhcp.h"
#include "pxe/events.h"
#include "pxe/http.h"
#include "pxe/tftp.h"

struct json_t;

struct rb_metrics {
	bool have_dhcp, have_tftp; /* the servers run (else their lines are left out) */
	struct dhcp_stats dhcp;
	struct tftp_stats tftp;
	struct http_stats http;
	const struct json_t *nodes_by_state; /* {"ready": 3, ...}, borrowed */
	uint64_t nodes_held;
	struct events_stats events;
	uint64_t registry_dropped;
};

/* The exposition text, NUL-terminated (caller frees). -ENOMEM. */
int metrics_format(const struct rb_metrics *m, char **ret, size_t *ret_len);
