/* A single-threaded epoll event loop with timers, for the UDP servers
 * (DHCP, TFTP): one thread serves thousands of transfers, no thread per
 * client. Not thread-safe: every call must come from the loop's thread,
 * except rb_loop_quit(), which is async-signal-safe. */
#pragma once
#include <stdint.h>

struct rb_loop;
struct rb_io;
struct rb_timer;

typedef void (*rb_io_cb)(struct rb_io *io, int fd, uint32_t events, void *userdata);
typedef void (*rb_timer_cb)(struct rb_timer *t, void *userdata);

int rb_loop_new(struct rb_loop **ret);
void rb_loop_free(struct rb_loop *loop);
/* Runs until rb_loop_quit(); returns 0 or -errno. */
int rb_loop_run(struct rb_loop *loop);
void rb_loop_quit(struct rb_loop *loop);

/* Watches fd (EPOLLIN/EPOLLOUT); the loop does not own or close fd. */
int rb_io_new(struct rb_loop *loop, int fd, uint32_t events, rb_io_cb cb, void *userdata,
              struct rb_io **ret);
int rb_io_set_events(struct rb_io *io, uint32_t events);
/* Safe to call from inside the io's own callback; NULL is a no-op. */
void rb_io_free(struct rb_io *io);

int rb_timer_new(struct rb_loop *loop, rb_timer_cb cb, void *userdata, struct rb_timer **ret);
/* Fires once at the absolute rb_now_usec() time given; re-arming moves it. */
void rb_timer_arm(struct rb_timer *t, uint64_t deadline_usec);
void rb_timer_disarm(struct rb_timer *t);
/* Safe to call from inside the timer's own callback; NULL is a no-op. */
void rb_timer_free(struct rb_timer *t);
