/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring event loop: every socket operation of daemon and agent goes
 * through it. One loop per thread; the cycle is reap completions -> run
 * queued tasks -> expire timers -> submit. */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct loop_op;

/* Completion callback. res is the CQE result (>= 0 or -errno); flags are the
 * CQE flags (IORING_CQE_F_MORE for multishot operations). */
typedef void (*loop_cb)(struct loop_op *op, int res, unsigned flags);

/* An in-flight operation. Embed it in the owning object; the SQE's
 * user_data points at it. The owner must not be freed while any of its
 * operations is in flight (count them). */
struct loop_op {
	loop_cb cb;
};

/* A one-shot timer kept in the loop's heap. idx 0 means "not armed". */
struct loop_timer {
	uint64_t at_ms;
	void (*cb)(struct loop_timer *t);
	unsigned idx;
};

/* A message from another thread (loop_post): cb runs on the loop's own
 * thread. The poster gives m up until cb runs. */
struct loop_msg {
	struct loop_msg *next;
	void (*cb)(struct loop_msg *m);
};

/* Work to run after the current batch of completions has been dispatched:
 * deferred frees, flushes. */
struct loop_task {
	struct loop_task *next;
	void (*cb)(struct loop_task *t);
	int queued;
};

struct loop *loop_new(unsigned entries);
void loop_free(struct loop *l);

/* Monotonic milliseconds, cached once per loop iteration. */
uint64_t loop_now_ms(const struct loop *l);
/* The longest turn (completions, tasks and timers dispatched between two
 * waits) since the last call, in µs: how long the loop kept a completion
 * waiting at worst. Reads and resets; from the loop's thread. */
uint64_t loop_turn_max_us(struct loop *l);

/* Queue operations. Each returns 0 or -errno (e.g. -ENOMEM when no SQE can
 * be had even after a submit). Buffers and addresses must stay valid until
 * the completion. */
int loop_accept(struct loop *l, struct loop_op *op, int fd);   /* multishot, SOCK_NONBLOCK|SOCK_CLOEXEC */
int loop_accept_one(struct loop *l, struct loop_op *op, int fd);	/* one socket, the same flags */
int loop_recv(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len);
int loop_send(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len); /* MSG_NOSIGNAL */
int loop_connect(struct loop *l, struct loop_op *op, int fd,
		 const struct sockaddr *sa, socklen_t salen);
/* Message I/O for fd passing (SCM_RIGHTS). msg, its iovecs and control
 * buffer must stay valid until the completion; the kernel writes the
 * received msg_controllen and msg_flags (MSG_TRUNC, MSG_CTRUNC) back into
 * msg. loop_sendmsg adds MSG_NOSIGNAL to flags. */
int loop_recvmsg(struct loop *l, struct loop_op *op, int fd, struct msghdr *msg, unsigned flags);
int loop_sendmsg(struct loop *l, struct loop_op *op, int fd, const struct msghdr *msg,
		 unsigned flags);
int loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len);
/* Cancel every operation on fd; op (may be NULL) completes with the count. */
int loop_cancel_fd(struct loop *l, struct loop_op *op, int fd);
/* Close through the ring; op may be NULL (completion ignored). */
int loop_close(struct loop *l, struct loop_op *op, int fd);

/* A pool of receive buffers the kernel takes one from when data arrives
 * (io_uring provided buffers): a connection waiting for input then holds no
 * buffer of its own. One pool per loop; count a power of two. 0, or -errno
 * (kernels before 5.19: callers keep their own buffers). */
int loop_pool_init(struct loop *l, unsigned count, size_t size);
/* Bytes per pool buffer; 0 when the loop has no pool. */
size_t loop_pool_size(const struct loop *l);
/* recv of up to len (<= the buffer size) into a pool buffer. The completion carries it in its flags
 * (IORING_CQE_F_BUFFER): loop_pool_buf finds it and loop_pool_put gives it
 * back, which the callback must do before it returns. -ENOBUFS when the pool
 * was empty at the time. */
int loop_recv_pooled(struct loop *l, struct loop_op *op, int fd, size_t len);
uint8_t *loop_pool_buf(struct loop *l, unsigned flags);
void loop_pool_put(struct loop *l, unsigned flags);
/* Call periodically: when no pool buffer was used since the last call, give
 * the pool's pages back to the kernel (once per quiet spell). 1 if it did. */
int loop_pool_trim(struct loop *l);

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms);
void loop_timer_disarm(struct loop *l, struct loop_timer *t);

/* Queue t to run once after the current dispatch; queuing twice is a no-op. */
void loop_task_queue(struct loop *l, struct loop_task *t);

/* The one call that may come from any thread: have l's thread run m->cb,
 * in posting order, from its next turn (an eventfd read on its ring wakes
 * it). Messages still queued when the loop is freed are dropped, not run.
 * The ring belongs to the thread that made it (loop_new): make a loop on
 * the thread that runs it. */
void loop_post(struct loop *l, struct loop_msg *m);

/* Block the signals in set and deliver them through a signalfd read on the
 * ring; cb runs in loop context. Returns 0 or -errno. */
int loop_signals(struct loop *l, const sigset_t *set, void (*cb)(struct loop *l, int signo));

/* Run until loop_stop(); returns 0 or -errno on a fatal ring error. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
