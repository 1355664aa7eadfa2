/* The operator event stream behind GET /api/v1/events: registry events
 * (every boot step, agent report and operator change) and live agent
 * progress, as server-sent events text, fanned out to a bounded number of
 * subscribers. Also keeps the imaging durations it sees for /metrics.
 * Knows nothing of HTTP: http.c gives each subscriber a way to suspend and
 * resume its connection. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct registry;
struct rb_events;
struct events_sub;

#define EVENTS_RING            4096 /* recent events kept for live subscribers */
#define EVENTS_MAX_SUBSCRIBERS 64
#define EVENTS_HEARTBEAT_S     15 /* a comment line at least this often */
#define EVENTS_IMAGING_BUCKETS 9

/* Upper bounds (seconds) of the imaging duration histogram's buckets; the
 * last is +Inf. */
extern const double events_imaging_bounds[EVENTS_IMAGING_BUCKETS];

struct events_stats {
	uint64_t imaging_count;
	double imaging_sum_s;
	uint64_t imaging_buckets[EVENTS_IMAGING_BUCKETS]; /* cumulative, as Prometheus wants */
	uint64_t imaging_failed;
	uint64_t subscribers;
	uint64_t dropped_slow; /* subscribers cut off because they fell behind the ring */
	uint64_t refused_full; /* subscriptions refused: EVENTS_MAX_SUBSCRIBERS reached */
};

/* How a subscriber's connection is put to sleep while there is nothing to
 * send, and woken. suspend is called from inside events_sub_read(),
 * resume from any thread; both with the hub's lock held, and each resume
 * follows exactly one suspend. */
struct events_sub_ops {
	void (*suspend)(void *ud);
	void (*resume)(void *ud);
};

/* Starts the hub: registers the registry's event hook and a thread that
 * reads new events from the registry. heartbeat_s 0 = EVENTS_HEARTBEAT_S. */
int events_new(struct registry *reg, unsigned heartbeat_s, struct rb_events **ret);
/* Stops the thread and frees; every subscriber must be gone
 * (events_close_all(), then the HTTP server's shutdown). NULL is a no-op. */
void events_free(struct rb_events *ev);
/* Ends every stream: sleeping subscribers are resumed and their next read
 * is the end. New subscriptions are refused from now on. */
void events_close_all(struct rb_events *ev);

/* A live progress report of an agent (not stored: it has no id, so
 * Last-Event-ID resumption skips it). */
void events_publish_progress(struct rb_events *ev, const uint8_t mac[6], const char *state,
                             const char *step, const char *message, uint64_t bytes_done,
                             uint64_t bytes_total, uint64_t rate, int64_t updated_ms);

/* Subscribes. last_id >= 0: first every stored event after it (from the
 * registry when the ring no longer has them), then live; -1: live from
 * now. -EBUSY when EVENTS_MAX_SUBSCRIBERS are connected, -ESHUTDOWN after
 * events_close_all(). */
int events_subscribe(struct rb_events *ev, int64_t last_id, const struct events_sub_ops *ops,
                     void *ud, struct events_sub **ret);
/* The next bytes of the stream into buf: >0 bytes; 0 when there is
 * nothing now (ops->suspend() was called; ops->resume() follows when there
 * is); -EPIPE at the end (closing, or the subscriber fell more than
 * EVENTS_RING events behind: it may reconnect with Last-Event-ID). */
ssize_t events_sub_read(struct events_sub *sub, char *buf, size_t max);
/* Removes and frees the subscriber (its connection is gone). */
void events_unsubscribe(struct events_sub *sub);

void events_get_stats(struct rb_events *ev, struct events_stats *ret);
