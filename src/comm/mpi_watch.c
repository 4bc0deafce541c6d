/* mpi_watch.c - the MPI collectives' deadline (mpi_watch.h). The watchdog thread looks
 * every WATCH_TICK_S: it answers other ranks' questions (one MPI_Irecv always posted on its
 * own communicator) and, once the call this rank is blocked in is older than its deadline,
 * runs the diagnosis: ask everyone, wait for the answers (at most GRACE), compose the
 * verdict, send it to those who answered, print it, abort the job. */
#include "mpi_watch.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WATCH_TICK_S 0.02
#define REPORT_LEN 4096
#define LIST_MAX 16 /* ranks described one by one; the rest counted */

enum { TAG_ASK = 1, TAG_STATE, TAG_REPORT, TAG_ACK };

/* what a rank says about itself */
typedef struct {
    long calls;   /* collectives started */
    long blocked; /* the one it is blocked in, 0: none */
    long step;
    double waited; /* seconds blocked */
    int rank, doing, bucket;
    char what[24], host[64];
} watch_state;

struct lk_mpi_watch {
    lk_comm *c;
    MPI_Comm comm;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_long calls, blocked;
    _Atomic double since, deadline;
    _Atomic(const char *) what;
    /* the thread's own */
    MPI_Request rx_req;
    char rx[REPORT_LEN];
    watch_state *reply;   /* per asker: this rank's answer (its send may be in flight) */
    watch_state *states;  /* the diagnosis: every rank's answer */
    unsigned char *heard; /* ... and whether it came */
    int acks;
    double doomed_at; /* a verdict was printed here: the job ends soon */
    char report[REPORT_LEN];
};

static void nap(double s)
{
    struct timespec t = {0, (long)(s * 1e9)};
    nanosleep(&t, NULL);
}

static void say(const lk_mpi_watch *w, watch_state *s)
{
    const lk_comm *c = w->c;
    memset(s, 0, sizeof *s);
    s->rank = c->rank;
    s->calls = atomic_load(&w->calls);
    s->blocked = atomic_load(&w->blocked);
    if (s->blocked) {
        s->waited = lk_now() - atomic_load(&w->since);
        const char *what = atomic_load(&w->what);
        snprintf(s->what, sizeof s->what, "%s", what ? what : "collective");
    }
    s->step = c->doing.step;
    s->doing = c->doing.what;
    s->bucket = c->doing.bucket;
    snprintf(s->host, sizeof s->host, "%s", c->host);
}

static void send_free(lk_mpi_watch *w, const void *buf, int bytes, int to, int tag)
{
    MPI_Request r;
    if (MPI_Isend(buf, bytes, MPI_BYTE, to, tag, w->comm, &r) == MPI_SUCCESS) MPI_Request_free(&r);
}

static void print_verdict(const lk_mpi_watch *w, const char *text)
{
    fprintf(stderr, "lockstep: rank %d: error: %s\n", w->c->rank, text);
    fflush(stderr);
}

/* every message that has arrived */
static void serve(lk_mpi_watch *w)
{
    static const int ack = 1;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Test(&w->rx_req, &flag, &st) != MPI_SUCCESS || !flag) return;
        const int from = st.MPI_SOURCE;
        switch (st.MPI_TAG) {
        case TAG_ASK:
            say(w, &w->reply[from]);
            send_free(w, &w->reply[from], (int)sizeof(watch_state), from, TAG_STATE);
            break;
        case TAG_STATE:
            memcpy(&w->states[from], w->rx, sizeof(watch_state));
            w->heard[from] = 1;
            break;
        case TAG_REPORT: /* another rank's verdict */
            w->rx[REPORT_LEN - 1] = 0;
            if (!w->doomed_at) print_verdict(w, w->rx);
            if (!w->doomed_at) w->doomed_at = lk_now();
            send_free(w, &ack, (int)sizeof ack, from, TAG_ACK);
            break;
        case TAG_ACK: w->acks++; break;
        }
        MPI_Irecv(w->rx, REPORT_LEN, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, w->comm, &w->rx_req);
    }
}

static size_t add(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static size_t add(char *buf, size_t len, const char *fmt, ...)
{
    if (len >= REPORT_LEN) return len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, REPORT_LEN - len, fmt, ap);
    va_end(ap);
    return n < 0 ? len : len + (size_t)n;
}

/* "rank 1 (host h) did not arrive: its last was call 6, step 3: updating" */
static size_t describe(char *buf, size_t len, const watch_state *s, long call)
{
    char bucket[32] = "";
    if (s->bucket >= 0) snprintf(bucket, sizeof bucket, ", bucket %d", s->bucket);
    /* (forward to the update belong to the step after those taken, as on the shm board) */
    const long step = s->step + (s->doing >= LK_DOING_FORWARD && s->doing <= LK_DOING_UPDATE);
    len = add(buf, len, "rank %d (host %s) ", s->rank, s->host);
    if (s->blocked)
        len = add(buf, len, "waits in call %ld (%s) for %.0f s", s->blocked, s->what, s->waited);
    else if (s->calls < call)
        len = add(buf, len, "did not arrive: its last was call %ld", s->calls);
    else
        len = add(buf, len, "is past it, at call %ld", s->calls);
    return add(buf, len, ", step %ld: %s%s", step, lk_doing_name(s->doing), bucket);
}

static void compose(lk_mpi_watch *w, long call, double timeout, double grace)
{
    const lk_comm *c = w->c;
    char *r = w->report;
    size_t len = add(r, 0, "MPI %s (call %ld) did not complete within %.0f s (--comm-timeout); did not arrive: rank(s)",
                     w->states[c->rank].what, call, timeout);
    int late = 0, silent = 0;
    for (int q = 0; q < c->world; q++)
        if (w->heard[q] && w->states[q].calls < call && late++ < 2 * LIST_MAX)
            len = add(r, len, " %d", q);
    if (late > 2 * LIST_MAX) len = add(r, len, " and %d more", late - 2 * LIST_MAX);
    if (!late) len = add(r, len, " none of those that answered");
    for (int q = 0; q < c->world; q++) silent += !w->heard[q];
    if (silent) len = add(r, len, "; %d rank(s) did not answer within %.0f s:", silent, grace);
    for (int q = 0, k = 0; q < c->world && k < LIST_MAX; q++)
        if (!w->heard[q]) len = add(r, len, " %d", q), k++;
    for (int q = 0, k = 0; q < c->world; q++) {
        if (!w->heard[q]) continue;
        if (k++ == LIST_MAX) {
            len = add(r, len, "; ...");
            break;
        }
        len = add(r, len, "; ");
        len = describe(r, len, &w->states[q], call);
    }
}

/* This rank waited past its deadline in `call`: the verdict, to every rank, then the end. */
static void diagnose(lk_mpi_watch *w, long call, double timeout)
{
    static const int ask = 1;
    const lk_comm *c = w->c;
    const double grace = timeout / 2 < 1 ? 1 : timeout / 2 > 10 ? 10 : timeout / 2;
    memset(w->heard, 0, (size_t)c->world);
    say(w, &w->states[c->rank]);
    w->heard[c->rank] = 1;
    for (int q = 0; q < c->world; q++)
        if (q != c->rank) send_free(w, &ask, (int)sizeof ask, q, TAG_ASK);
    int heard = 1;
    for (const double end = lk_now() + grace; heard < c->world && lk_now() < end && !w->doomed_at; nap(0.005)) {
        serve(w);
        heard = 0;
        for (int q = 0; q < c->world; q++) heard += w->heard[q];
    }
    if (!w->doomed_at) { /* (a verdict of another rank's came first: that one stands) */
        compose(w, call, timeout, grace);
        w->doomed_at = lk_now();
        print_verdict(w, w->report);
        w->acks = 0;
        for (int q = 0; q < c->world; q++)
            if (q != c->rank && w->heard[q]) send_free(w, w->report, (int)strlen(w->report) + 1, q, TAG_REPORT);
        for (const double end = lk_now() + 2; w->acks < heard - 1 && lk_now() < end; nap(0.005)) serve(w);
        MPI_Abort(w->comm, 3);
    }
}

static void *watch_main(void *arg)
{
    lk_mpi_watch *w = arg;
    while (!atomic_load(&w->stop)) {
        nap(WATCH_TICK_S);
        serve(w);
        if (w->doomed_at) { /* the job should have ended by now: end it */
            if (lk_now() > w->doomed_at + 10) MPI_Abort(w->comm, 3);
            continue;
        }
        const long call = atomic_load(&w->blocked);
        const double deadline = atomic_load(&w->deadline);
        if (call && lk_now() > deadline && atomic_load(&w->blocked) == call)
            diagnose(w, call, deadline - atomic_load(&w->since));
    }
    return NULL;
}

lk_status lk_mpi_watch_open(lk_mpi_watch **out, lk_comm *c, MPI_Comm world)
{
    *out = NULL;
    lk_mpi_watch *w = lk_calloc(1, sizeof *w);
    if (!w) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the MPI watchdog");
    w->c = c;
    w->comm = MPI_COMM_NULL;
    w->rx_req = MPI_REQUEST_NULL;
    atomic_init(&w->what, NULL);
    w->reply = lk_calloc((size_t)c->world, sizeof *w->reply);
    w->states = lk_calloc((size_t)c->world, sizeof *w->states);
    w->heard = lk_calloc((size_t)c->world, 1);
    if (!w->reply || !w->states || !w->heard) {
        lk_mpi_watch_close(w);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate the MPI watchdog");
    }
    if (MPI_Comm_dup(world, &w->comm) != MPI_SUCCESS ||
        MPI_Irecv(w->rx, REPORT_LEN, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, w->comm, &w->rx_req) != MPI_SUCCESS) {
        lk_mpi_watch_close(w);
        return LK_ERR(LK_ERR_COMM, "rank %d: cannot set up the MPI watchdog's communicator", c->rank);
    }
    if (pthread_create(&w->thread, NULL, watch_main, w)) {
        lk_mpi_watch_close(w);
        return LK_ERR(LK_ERR_COMM, "rank %d: cannot start the MPI watchdog thread", c->rank);
    }
    w->started = 1;
    *out = w;
    return LK_OK;
}

void lk_mpi_watch_close(lk_mpi_watch *w)
{
    if (!w) return;
    if (w->started) {
        atomic_store(&w->stop, 1);
        pthread_join(w->thread, NULL);
    }
    if (w->rx_req != MPI_REQUEST_NULL) {
        MPI_Cancel(&w->rx_req);
        MPI_Wait(&w->rx_req, MPI_STATUS_IGNORE);
    }
    if (w->comm != MPI_COMM_NULL) MPI_Comm_free(&w->comm);
    lk_free(w->reply);
    lk_free(w->states);
    lk_free(w->heard);
    lk_free(w);
}

long lk_mpi_watch_number(lk_mpi_watch *w) { return w ? atomic_fetch_add(&w->calls, 1) + 1 : 0; }

void lk_mpi_watch_block(lk_mpi_watch *w, long call, const char *what)
{
    if (!w) return;
    const double now = lk_now();
    atomic_store(&w->what, what);
    atomic_store(&w->since, now);
    atomic_store(&w->deadline, now + w->c->timeout_s);
    atomic_store(&w->blocked, call); /* (last: the watchdog reads it first) */
}

void lk_mpi_watch_unblock(lk_mpi_watch *w)
{
    if (w) atomic_store(&w->blocked, 0);
}
