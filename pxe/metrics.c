/* Prometheus text format for rackbootd's counters. Every metric has HELP
 * and TYPE lines; counters end in _total; label values are escaped as the
 * format asks (backslash, quote, newline), although the only label values
 * here, node states, are printable ASCII from the registry. Owns nothing,
 * does no I/O beyond the memory stream it writes to. */
#include "pxe/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
	        (unsigned long long)v);
}

static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void dhcp_lines(FILE *f, const struct dhcp_stats *d)
{
	metric(f, "rackboot_dhcp_requests_total", "counter", "DHCP packets received.", d->received);
	metric(f, "rackboot_dhcp_answered_total", "counter", "DHCP packets answered.", d->answered);
	metric(f, "rackboot_dhcp_ignored_total", "counter",
	       "DHCP packets not answered (not a boot client, another server's, ...).", d->ignored);
	metric(f, "rackboot_dhcp_errors_total", "counter", "Malformed DHCP packets dropped.",
	       d->malformed);
}

static void tftp_lines(FILE *f, const struct tftp_stats *t)
{
	metric(f, "rackboot_tftp_requests_total", "counter", "TFTP read requests received.",
	       t->requests);
	metric(f, "rackboot_tftp_completed_total", "counter", "TFTP transfers completed.",
	       t->completed);
	metric(f, "rackboot_tftp_errors_total", "counter",
	       "TFTP transfers that failed (timeout, peer error, I/O error) or were refused.",
	       t->failed + t->refused);
	metric(f, "rackboot_tftp_bytes_sent_total", "counter",
	       "TFTP data bytes sent, retransmissions included.", t->bytes_sent);
	metric(f, "rackboot_tftp_active_transfers", "gauge", "TFTP transfers in progress.",
	       t->active);
}

int metrics_format(const struct rb_metrics *m, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	const char *state;
	json_t *count;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	if (m->have_dhcp)
		dhcp_lines(f, &m->dhcp);
	if (m->have_tftp)
		tftp_lines(f, &m->tftp);
	metric(f, "rackboot_http_requests_total", "counter", "HTTP requests answered.",
	       m->http.requests);
	metric(f, "rackboot_http_errors_total", "counter",
	       "HTTP requests answered with a status of 400 or more, or dropped.", m->http.errors);
	metric(f, "rackboot_http_bytes_sent_total", "counter",
	       "HTTP response body bytes sent (files, scripts, API, event stream).",
	       m->http.bytes_sent);
	metric(f, "rackboot_http_header_timeouts_total", "counter",
	       "HTTP connections closed without a whole request header within "
	       "http.header_timeout_s (slow or dripping clients).",
	       m->http.header_timeouts);
	fputs("# HELP rackboot_bytes_served_total Bytes served to nodes and clients, by "
	      "protocol.\n# TYPE rackboot_bytes_served_total counter\n",
	      f);
	if (m->have_tftp)
		fprintf(f, "rackboot_bytes_served_total{protocol=\"tftp\"} %llu\n",
		        (unsigned long long)m->tftp.bytes_sent);
	fprintf(f, "rackboot_bytes_served_total{protocol=\"http\"} %llu\n",
	        (unsigned long long)m->http.bytes_sent);

	fputs("# HELP rackboot_nodes Nodes in the registry, by state.\n"
	      "# TYPE rackboot_nodes gauge\n",
	      f);
	json_object_foreach((json_t *)m->nodes_by_state, state, count)
	{
		fputs("rackboot_nodes{state=\"", f);
		label_value(f, state);
		fprintf(f, "\"} %lld\n", (long long)json_integer_value(count));
	}
	metric(f, "rackboot_nodes_held", "gauge", "Nodes an operator holds.", m->nodes_held);

	fputs("# HELP rackboot_imaging_duration_seconds Time from a node's first wiping or "
	      "imaging report to imaged or ready, since rackbootd started.\n"
	      "# TYPE rackboot_imaging_duration_seconds histogram\n",
	      f);
	for (size_t i = 0; i < EVENTS_IMAGING_BUCKETS; i++) {
		if (events_imaging_bounds[i] < 0)
			fputs("rackboot_imaging_duration_seconds_bucket{le=\"+Inf\"} ", f);
		else
			fprintf(f, "rackboot_imaging_duration_seconds_bucket{le=\"%g\"} ",
			        events_imaging_bounds[i]);
		fprintf(f, "%llu\n", (unsigned long long)m->events.imaging_buckets[i]);
	}
	fprintf(f, "rackboot_imaging_duration_seconds_sum %.3f\n", m->events.imaging_sum_s);
	fprintf(f, "rackboot_imaging_duration_seconds_count %llu\n",
	        (unsigned long long)m->events.imaging_count);
	metric(f, "rackboot_imaging_failures_total", "counter",
	       "Imaging runs that ended with the agent reporting failed.",
	       m->events.imaging_failed);
	metric(f, "rackboot_event_stream_subscribers", "gauge",
	       "Clients following /api/v1/events now.", m->events.subscribers);
	metric(f, "rackboot_event_stream_dropped_total", "counter",
	       "Event stream clients cut off because they read too slowly.",
	       m->events.dropped_slow);
	metric(f, "rackboot_event_stream_refused_total", "counter",
	       "Event stream clients refused because the subscriber limit was reached.",
	       m->events.refused_full);
	metric(f, "rackboot_registry_notes_dropped_total", "counter",
	       "Boot-step notes dropped because the registry's queue was full.",
	       m->registry_dropped);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}
