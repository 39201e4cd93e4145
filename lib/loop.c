/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring event loop: one ring per thread, a min-heap of timers, a FIFO
 * of deferred tasks and signals read from a signalfd through the ring. The
 * cycle is fixed: reap completions -> run tasks -> expire timers -> submit
 * and wait until the next timer. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include <weft/log.h>
#include <weft/loop.h>

/* Timers expired per iteration at most: a burst of due timers must not
 * starve the completions that arrive meanwhile. The rest wait one turn
 * (the next wait then has a zero timeout). */
#define LOOP_TIMER_BATCH 256
#define LOOP_HEAP_MIN 64
#define LOOP_POOL_GROUP 0	/* the buffer group id of the receive pool */

struct loop {
	struct io_uring ring;
	uint64_t now_ms;
	int stopping;
	uint64_t turn_max_us;		/* longest dispatch turn since loop_turn_max */

	/* Min-heap on at_ms, 1-based: heap[i]->idx == i, so disarm and
	 * re-arm are O(log n) without searching. */
	struct loop_timer **heap;
	unsigned heap_len;
	unsigned heap_cap;

	struct loop_task *task_head;
	struct loop_task *task_tail;

	/* Receive buffer pool (loop_pool_init): a ring the kernel takes
	 * buffers from, and the buffers, pool_n of pool_size bytes. */
	struct io_uring_buf_ring *pool_ring;
	uint8_t *pool_mem;
	unsigned pool_n;
	size_t pool_size;
	unsigned long pool_puts;	/* buffers given back since loop_pool_trim */
	int pool_trimmed;

	/* Messages from other threads (loop_post), woken by post_fd. */
	pthread_mutex_t post_lock;
	struct loop_msg *post_head;
	struct loop_msg *post_tail;
	int post_fd;
	int post_armed;			/* the wake-up read is in flight */
	struct loop_op post_op;
	uint64_t post_val;

	int sig_fd;			/* -1 until loop_signals() */
	struct loop_op sig_op;
	struct signalfd_siginfo sig_info;
	void (*sig_cb)(struct loop *l, int signo);
};

static uint64_t loop_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t loop_clock_ms(void)
{
	return loop_clock_us() / 1000u;
}

static int loop_post_arm(struct loop *l);

struct loop *loop_new(unsigned entries)
{
	struct io_uring_params p;
	struct loop *l;
	int ret;

	if (entries == 0)
		entries = 256;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->sig_fd = -1;
	l->post_fd = -1;
	pthread_mutex_init(&l->post_lock, NULL);
	l->heap_cap = LOOP_HEAP_MIN;
	l->heap = calloc(l->heap_cap + 1, sizeof(*l->heap));
	if (!l->heap)
		goto fail_heap;

	/* A CQ four times the SQ: multishot accept and many connections post
	 * more completions than we submit. One thread submits and reaps, so
	 * the kernel may defer completion work to our next wait
	 * (SINGLE_ISSUER + DEFER_TASKRUN, 6.1+): no IPIs and no task-work
	 * interruptions while we run, completions batched per wait. Older
	 * kernels reject the flags: fall back to COOP_TASKRUN, then none. */
	static const unsigned setups[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	ret = -EINVAL;
	for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]) && ret == -EINVAL; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | setups[i];
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, &l->ring, &p);
	}
	if (ret < 0) {
		log_error("io_uring setup (%u entries): %s", entries, strerror(-ret));
		errno = -ret;
		goto fail_ring;
	}
	l->now_ms = loop_clock_ms();
	l->post_fd = eventfd(0, EFD_CLOEXEC);
	if (l->post_fd < 0 || loop_post_arm(l) < 0) {
		log_error("loop: cross-thread wake-up eventfd: %m");
		loop_free(l);
		return NULL;
	}
	return l;

fail_ring:
	free(l->heap);
fail_heap:
	pthread_mutex_destroy(&l->post_lock);
	free(l);
	return NULL;
}

/* The caller must have closed every object with operations in flight;
 * completions still pending are dropped with the ring. */
/* Every operation still in flight holds its file until the ring's
 * teardown, which the kernel finishes asynchronously after the process
 * exits: a listening socket kept its port for a while, and a restart on the
 * same ports failed with EADDRINUSE. Cancel them all and reap their
 * completions (no callbacks: their owners are gone), bounded to ~0.5 s. */
static void loop_cancel_all(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe)
		return;
	io_uring_prep_cancel(sqe, NULL, IORING_ASYNC_CANCEL_ANY);
	io_uring_sqe_set_data(sqe, NULL);
	if (io_uring_submit(&l->ring) < 0)
		return;
	for (int i = 0; i < 50; i++) {
		struct __kernel_timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe_timeout(&l->ring, &cqe, &ts))
			break;
		io_uring_cqe_seen(&l->ring, cqe);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	loop_cancel_all(l);
	if (l->pool_ring)
		io_uring_unregister_buf_ring(&l->ring, LOOP_POOL_GROUP);
	io_uring_queue_exit(&l->ring);
	free(l->pool_ring);
	free(l->pool_mem);
	if (l->sig_fd >= 0)
		close(l->sig_fd);
	if (l->post_fd >= 0)
		close(l->post_fd);
	pthread_mutex_destroy(&l->post_lock);
	for (unsigned i = 1; i <= l->heap_len; i++)
		l->heap[i]->idx = 0;
	free(l->heap);
	free(l);
}

uint64_t loop_now_ms(const struct loop *l)
{
	return l->now_ms;
}

uint64_t loop_turn_max_us(struct loop *l)
{
	uint64_t m = l->turn_max_us;

	l->turn_max_us = 0;
	return m;
}

/* An SQE, submitting what is queued when the SQ is full; NULL only when the
 * kernel cannot take more even after that. */
static struct io_uring_sqe *loop_sqe_get(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (sqe)
		return sqe;
	io_uring_submit(&l->ring);
	return io_uring_get_sqe(&l->ring);
}

/* Multishot: one SQE yields a CQE per accepted socket while IORING_CQE_F_MORE
 * is set. When a CQE arrives without F_MORE (error, or the kernel dropped the
 * request) the CALLER re-arms with loop_accept() if it still wants to listen;
 * the loop does not, because only the owner knows whether the listener is
 * being closed. */
int loop_accept(struct loop *l, struct loop_op *op, int fd)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_accept_one(struct loop *l, struct loop_op *op, int fd)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_recv(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_recv(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

/* --- receive buffer pool ---------------------------------------------------- */

int loop_pool_init(struct loop *l, unsigned count, size_t size)
{
	struct io_uring_buf_reg reg;
	void *ring;
	int ret;

	if (l->pool_ring || !count || (count & (count - 1)) || count > 32768 || !size ||
	    size > (1u << 20))
		return -EINVAL;
	if (posix_memalign(&ring, 4096, count * sizeof(struct io_uring_buf)))
		return -ENOMEM;
	/* Pages of the buffers become resident only once the kernel first
	 * fills them; no need to touch them here. */
	/* Page-aligned for loop_pool_trim's madvise. */
	if (posix_memalign((void **)&l->pool_mem, 4096, count * size)) {
		l->pool_mem = NULL;
		free(ring);
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)ring;
	reg.ring_entries = count;
	reg.bgid = LOOP_POOL_GROUP;
	ret = io_uring_register_buf_ring(&l->ring, &reg, 0);
	if (ret < 0) {
		free(l->pool_mem);
		l->pool_mem = NULL;
		free(ring);
		return ret;
	}
	l->pool_ring = ring;
	l->pool_n = count;
	l->pool_size = size;
	io_uring_buf_ring_init(l->pool_ring);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(l->pool_ring, l->pool_mem + i * size, (unsigned)size,
				      (unsigned short)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(l->pool_ring, (int)count);
	return 0;
}

size_t loop_pool_size(const struct loop *l)
{
	return l->pool_ring ? l->pool_size : 0;
}

int loop_recv_pooled(struct loop *l, struct loop_op *op, int fd, size_t len)
{
	struct io_uring_sqe *sqe;

	if (!l->pool_ring || len > l->pool_size)
		return -EINVAL;
	sqe = loop_sqe_get(l);
	if (!sqe)
		return -ENOMEM;
	io_uring_prep_recv(sqe, fd, NULL, len, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = LOOP_POOL_GROUP;
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

uint8_t *loop_pool_buf(struct loop *l, unsigned flags)
{
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

	if (!(flags & IORING_CQE_F_BUFFER) || !l->pool_ring || bid >= l->pool_n)
		return NULL;
	return l->pool_mem + (size_t)bid * l->pool_size;
}

void loop_pool_put(struct loop *l, unsigned flags)
{
	uint8_t *p = loop_pool_buf(l, flags);

	if (!p)
		return;
	io_uring_buf_ring_add(l->pool_ring, p, (unsigned)l->pool_size,
			      (unsigned short)(flags >> IORING_CQE_BUFFER_SHIFT),
			      io_uring_buf_ring_mask(l->pool_n), 0);
	io_uring_buf_ring_advance(l->pool_ring, 1);
	l->pool_puts++;
}

/* The kernel only writes a pool buffer while it completes a recv, which it
 * does in this thread's own io_uring_enter (task work), never while we run:
 * so between two waits every page of the pool may be dropped, and comes
 * back zeroed on the next write. */
int loop_pool_trim(struct loop *l)
{
	if (!l->pool_ring)
		return 0;
	if (l->pool_puts) {
		l->pool_puts = 0;
		l->pool_trimmed = 0;
		return 0;
	}
	if (l->pool_trimmed)
		return 0;
	madvise(l->pool_mem, (size_t)l->pool_n * l->pool_size, MADV_DONTNEED);
	l->pool_trimmed = 1;
	return 1;
}

int loop_send(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_connect(struct loop *l, struct loop_op *op, int fd,
		 const struct sockaddr *sa, socklen_t salen)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_connect(sqe, fd, sa, salen);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_recvmsg(struct loop *l, struct loop_op *op, int fd, struct msghdr *msg, unsigned flags)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_recvmsg(sqe, fd, msg, flags);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_sendmsg(struct loop *l, struct loop_op *op, int fd, const struct msghdr *msg,
		 unsigned flags)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_sendmsg(sqe, fd, msg, flags | MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	/* offset -1: use (and advance) the file position, as read(2) does;
	 * pipes, eventfds and signalfds need that. */
	io_uring_prep_read(sqe, fd, buf, len, (uint64_t)-1);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

/* Cancel by fd with CANCEL_ALL (liburing 2.3 has it): a connection may have
 * a recv and a send in flight, and one SQE must catch both. */
int loop_cancel_fd(struct loop *l, struct loop_op *op, int fd)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

int loop_close(struct loop *l, struct loop_op *op, int fd)
{
	struct io_uring_sqe *sqe = loop_sqe_get(l);

	if (!sqe)
		return -ENOMEM;
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data(sqe, op);
	return 0;
}

/* --- timers: binary min-heap -------------------------------------------- */

static void loop_heap_place(struct loop *l, unsigned i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void loop_heap_up(struct loop *l, unsigned i)
{
	struct loop_timer *t = l->heap[i];

	while (i > 1 && l->heap[i / 2]->at_ms > t->at_ms) {
		loop_heap_place(l, i, l->heap[i / 2]);
		i /= 2;
	}
	loop_heap_place(l, i, t);
}

static void loop_heap_down(struct loop *l, unsigned i)
{
	struct loop_timer *t = l->heap[i];

	for (;;) {
		unsigned c = i * 2;

		if (c > l->heap_len)
			break;
		if (c + 1 <= l->heap_len && l->heap[c + 1]->at_ms < l->heap[c]->at_ms)
			c++;
		if (l->heap[c]->at_ms >= t->at_ms)
			break;
		loop_heap_place(l, i, l->heap[c]);
		i = c;
	}
	loop_heap_place(l, i, t);
}

/* (Re)arm t to fire delay_ms after the cached now. An armed timer moves. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms)
{
	uint64_t at = l->now_ms + delay_ms;

	if (t->idx) {
		uint64_t old = t->at_ms;

		t->at_ms = at;
		if (at < old)
			loop_heap_up(l, t->idx);
		else
			loop_heap_down(l, t->idx);
		return;
	}
	if (l->heap_len == l->heap_cap) {
		unsigned cap = l->heap_cap * 2;
		struct loop_timer **h = realloc(l->heap, (cap + 1) * sizeof(*h));

		if (!h) {
			/* No way to report it through a void API; a timer
			 * that never fires is the lesser harm than aborting
			 * the daemon. Growth by doubling makes this rare. */
			log_error("timer heap: out of memory (%u timers)", l->heap_len);
			return;
		}
		l->heap = h;
		l->heap_cap = cap;
	}
	t->at_ms = at;
	l->heap_len++;
	l->heap[l->heap_len] = t;
	t->idx = l->heap_len;
	loop_heap_up(l, l->heap_len);
}

void loop_timer_disarm(struct loop *l, struct loop_timer *t)
{
	unsigned i = t->idx;
	struct loop_timer *last;

	if (!i)
		return;
	t->idx = 0;
	last = l->heap[l->heap_len--];
	if (last == t)
		return;
	l->heap[i] = last;
	last->idx = i;
	/* The moved timer may belong above or below its new slot. */
	if (i > 1 && l->heap[i / 2]->at_ms > last->at_ms)
		loop_heap_up(l, i);
	else
		loop_heap_down(l, i);
}

static void loop_timers_expire(struct loop *l)
{
	for (unsigned n = 0; n < LOOP_TIMER_BATCH && l->heap_len; n++) {
		struct loop_timer *t = l->heap[1];

		if (t->at_ms > l->now_ms)
			break;
		loop_timer_disarm(l, t);
		t->cb(t);
	}
}

/* --- tasks ---------------------------------------------------------------- */

void loop_task_queue(struct loop *l, struct loop_task *t)
{
	if (t->queued)
		return;
	t->queued = 1;
	t->next = NULL;
	if (l->task_tail)
		l->task_tail->next = t;
	else
		l->task_head = t;
	l->task_tail = t;
}

/* Run the tasks queued so far. The list is detached first so that tasks
 * queued by these callbacks wait for the next round, and a task's memory
 * may be freed by its own callback (read next before calling). */
static void loop_tasks_run(struct loop *l)
{
	struct loop_task *t = l->task_head;

	l->task_head = l->task_tail = NULL;
	while (t) {
		struct loop_task *next = t->next;

		t->queued = 0;
		t->next = NULL;
		t->cb(t);
		t = next;
	}
}

/* --- messages from other threads ------------------------------------------ */

static void loop_on_post(struct loop_op *op, int res, unsigned flags);

static int loop_post_arm(struct loop *l)
{
	int ret;

	l->post_op.cb = loop_on_post;
	ret = loop_read(l, &l->post_op, l->post_fd, &l->post_val, sizeof(l->post_val));
	l->post_armed = ret == 0;
	return ret;
}

/* Re-armed before the messages run, so a post made meanwhile finds a read
 * in flight or an eventfd count it will see: no wake-up is lost. */
static void loop_on_post(struct loop_op *op, int res, unsigned flags)
{
	struct loop *l = (struct loop *)((char *)op - offsetof(struct loop, post_op));
	struct loop_msg *m;

	(void)flags;
	l->post_armed = 0;
	if (res < 0 && res != -EINTR && res != -EAGAIN)
		log_error("loop: cross-thread wake-up read: %s", strerror(-res));
	/* No SQE now: loop_run tries again before it sleeps, and polls
	 * the queue meanwhile. */
	if (loop_post_arm(l) < 0)
		log_warn("loop: cannot re-arm the cross-thread wake-up yet; retrying");
	pthread_mutex_lock(&l->post_lock);
	m = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (m) {
		struct loop_msg *next = m->next;

		m->next = NULL;
		m->cb(m);
		m = next;
	}
}

void loop_post(struct loop *l, struct loop_msg *m)
{
	uint64_t one = 1;
	int wake;

	m->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	wake = !l->post_head;
	if (l->post_tail)
		l->post_tail->next = m;
	else
		l->post_head = m;
	l->post_tail = m;
	pthread_mutex_unlock(&l->post_lock);
	/* Only the first message of a batch writes: the rest ride along. A
	 * full counter (2^64 - 2) cannot happen with one write per batch. */
	if (wake && write(l->post_fd, &one, sizeof(one)) != sizeof(one))
		log_error("loop: cross-thread wake-up write: %m");
}

/* --- signals -------------------------------------------------------------- */

static void loop_on_signal(struct loop_op *op, int res, unsigned flags);

static int loop_signal_arm(struct loop *l)
{
	return loop_read(l, &l->sig_op, l->sig_fd, &l->sig_info, sizeof(l->sig_info));
}

static void loop_on_signal(struct loop_op *op, int res, unsigned flags)
{
	struct loop *l = (struct loop *)((char *)op - offsetof(struct loop, sig_op));
	int ret;

	(void)flags;
	if (res == (int)sizeof(l->sig_info))
		l->sig_cb(l, (int)l->sig_info.ssi_signo);
	else if (res < 0 && res != -EINTR && res != -EAGAIN)
		log_error("signalfd read: %s", strerror(-res));
	ret = loop_signal_arm(l);
	if (ret < 0)
		log_error("signalfd re-arm: %s", strerror(-ret));
}

/* Signals are blocked in the calling thread only (pthread_sigmask): call
 * this before starting other threads so they inherit the mask, or the
 * kernel may deliver a process signal to a thread that does not block it. */
int loop_signals(struct loop *l, const sigset_t *set, void (*cb)(struct loop *l, int signo))
{
	int ret, fd;

	ret = pthread_sigmask(SIG_BLOCK, set, NULL);
	if (ret)
		return -ret;
	/* Re-using the fd replaces its mask; a read already in flight stays. */
	fd = signalfd(l->sig_fd, set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	l->sig_cb = cb;
	if (l->sig_fd >= 0)
		return 0;
	l->sig_fd = fd;
	l->sig_op.cb = loop_on_signal;
	ret = loop_signal_arm(l);
	if (ret < 0) {
		close(fd);
		l->sig_fd = -1;
	}
	return ret;
}

/* --- the cycle ------------------------------------------------------------ */

static void loop_reap(struct loop *l)
{
	struct io_uring_cqe *cqe;

	/* Copy and mark seen before dispatching: the callback may submit,
	 * and the CQ slot must not be held across it. */
	while (io_uring_peek_cqe(&l->ring, &cqe) == 0) {
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		unsigned flags = cqe->flags;
		struct loop_op *op;

		io_uring_cqe_seen(&l->ring, cqe);
		if (ud == 0 || ud == LIBURING_UDATA_TIMEOUT)
			continue;
		op = (struct loop_op *)(uintptr_t)ud;
		op->cb(op, res, flags);
	}
}

int loop_run(struct loop *l)
{
	l->stopping = 0;
	while (!l->stopping) {
		struct __kernel_timespec ts, *tsp = NULL;
		struct io_uring_cqe *cqe;
		uint64_t t0 = loop_clock_us(), busy;
		int ret;

		l->now_ms = t0 / 1000u;
		loop_reap(l);
		loop_tasks_run(l);
		loop_timers_expire(l);
		/* How long this turn kept every other completion waiting. */
		busy = loop_clock_us() - t0;
		if (busy > l->turn_max_us)
			l->turn_max_us = busy;
		if (l->stopping) {
			io_uring_submit(&l->ring);
			break;
		}

		/* A wake-up read that could not be re-armed: again now, and
		 * until it is, sleep at most 10 ms (messages are polled). */
		if (!l->post_armed && loop_post_arm(l) < 0)
			loop_on_post(&l->post_op, 0, 0);
		if (l->task_head || (l->heap_len && l->heap[1]->at_ms <= l->now_ms)) {
			/* Work is ready: submit and collect what completed
			 * (deferred completion work runs only on request),
			 * but do not sleep. */
			ret = io_uring_submit_and_get_events(&l->ring);
		} else {
			if (l->heap_len || !l->post_armed) {
				uint64_t d = l->heap_len ? l->heap[1]->at_ms - l->now_ms : 10;

				if (!l->post_armed && d > 10)
					d = 10;
				ts.tv_sec = (long long)(d / 1000);
				ts.tv_nsec = (long long)(d % 1000) * 1000000;
				tsp = &ts;
			}
			log_flush();	/* buffered log lines go out before we sleep */
			ret = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, tsp, NULL);
		}
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY &&
		    ret != -EAGAIN) {
			log_error("io_uring submit/wait: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stopping = 1;
}
