/* vecexplore._native: the evaluation kernels in C.
 *
 * Line-for-line ports of the numba kernels in vecexplore/eval/coco_kernels.py
 * (counting_order, descending_score_order, match_groups, accumulate) and
 * vecexplore/eval/matching.py (_step1, _step4): same loops, same float
 * operations in the same order (no -ffast-math), hence the same bits. The numba
 * versions stay as the fallback and the reference the tests compare against.
 *
 * Arrays travel through the buffer protocol (NumPy arrays, C-contiguous, of the
 * dtype each function documents); outputs are allocated by the caller
 * (vecexplore/eval/native.py) so this file needs only Python's headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <float.h>
#include <pthread.h>

#define FP 0
#define TP 1
#define IGNORED 2

typedef struct {
    Py_buffer view;
    int held;
} Buf;

/* Get a C-contiguous buffer of `itemsize` bytes per item ('q' int64, 'd' float64, 'b'/'?' 1 byte). */
static int get(PyObject *obj, Buf *b, Py_ssize_t itemsize, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) {
        return -1;
    }
    b->held = 1;
    if (b->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd (format %s)", name, itemsize,
                     b->view.itemsize, b->view.format ? b->view.format : "?");
        return -1;
    }
    return 0;
}

static void release(Buf *bufs, int n) {
    for (int i = 0; i < n; i++) {
        if (bufs[i].held) {
            PyBuffer_Release(&bufs[i].view);
            bufs[i].held = 0;
        }
    }
}

static Py_ssize_t len_of(Buf *b) { return b->view.len / b->view.itemsize; }

static inline double iou1(double dx, double dy, double dw, double dh, double gx, double gy, double gw, double gh,
                          int crowd) {
    double a = dw + dx, c = gw + gx;
    double w = (a < c ? a : c) - (dx > gx ? dx : gx);
    if (w <= 0) return 0.0;
    a = dh + dy;
    c = gh + gy;
    double h = (a < c ? a : c) - (dy > gy ? dy : gy);
    if (h <= 0) return 0.0;
    double inter = w * h;
    double da = dw * dh;
    double uni = crowd ? da : da + gw * gh - inter;
    return inter / uni;
}

/* counting_order(order, key, n_buckets, out): out = order stably re-sorted by key[order]. */
static void counting_order_c(const int64_t *order, Py_ssize_t n, const int64_t *key, int64_t n_buckets,
                             int64_t *out, int64_t *count) {
    memset(count, 0, sizeof(int64_t) * (size_t)(n_buckets + 1));
    for (Py_ssize_t i = 0; i < n; i++) count[key[order[i]] + 1] += 1;
    for (int64_t b = 0; b < n_buckets; b++) count[b + 1] += count[b];
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t k = key[order[i]];
        out[count[k]] = order[i];
        count[k] += 1;
    }
}

static PyObject *py_counting_order(PyObject *self, PyObject *args) {
    PyObject *o_order, *o_key, *o_out;
    long long n_buckets;
    Buf b[3];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOLO", &o_order, &o_key, &n_buckets, &o_out)) return NULL;
    if (get(o_order, &b[0], 8, 0, "order") || get(o_key, &b[1], 8, 0, "key") || get(o_out, &b[2], 8, 1, "out")) {
        release(b, 3);
        return NULL;
    }
    Py_ssize_t n = len_of(&b[0]);
    int64_t *count = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n_buckets + 1));
    if (!count) {
        release(b, 3);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    counting_order_c((const int64_t *)b[0].view.buf, n, (const int64_t *)b[1].view.buf, n_buckets,
                     (int64_t *)b[2].view.buf, count);
    Py_END_ALLOW_THREADS
    free(count);
    release(b, 3);
    Py_RETURN_NONE;
}

/* descending_score_order(order, score, out): ``order`` stably re-sorted by score descending (scores >= 0).
 * LSD radix over the 64-bit key INT64_MAX - bits(score + 0.0), 6 passes of 11-bit digits on (key, index)
 * pairs: every pass reads sequentially and scatters into 2048 buckets (a 16-bit digit on indices looked
 * the key up at random: 6 s of 10M predictions); passes whose digit is the same for all are skipped.
 * A stable sort by the same key: the same order as the numba reference. */
#define RADIX_BITS 11
#define RADIX_PASSES 6
#define RADIX_SIZE (1 << RADIX_BITS)
static PyObject *py_descending_score_order(PyObject *self, PyObject *args) {
    PyObject *o_order, *o_score, *o_out;
    Buf b[3];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOO", &o_order, &o_score, &o_out)) return NULL;
    if (get(o_order, &b[0], 8, 0, "order") || get(o_score, &b[1], 8, 0, "score") || get(o_out, &b[2], 8, 1, "out")) {
        release(b, 3);
        return NULL;
    }
    Py_ssize_t n = len_of(&b[0]);
    const int64_t *order_in = (const int64_t *)b[0].view.buf;
    const double *score = (const double *)b[1].view.buf;
    int64_t *out = (int64_t *)b[2].view.buf;
    size_t sz = sizeof(int64_t) * (size_t)(n ? n : 1);
    uint64_t *k0 = (uint64_t *)malloc(sz), *k1 = (uint64_t *)malloc(sz);
    int64_t *i1 = (int64_t *)malloc(sz);
    int64_t *hist = (int64_t *)calloc(RADIX_PASSES * RADIX_SIZE, sizeof(int64_t));
    if (!k0 || !k1 || !i1 || !hist) {
        free(k0), free(k1), free(i1), free(hist);
        release(b, 3);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    int64_t *i0 = out;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t j = order_in[i];
        double v = score[j] + 0.0;
        int64_t bits;
        memcpy(&bits, &v, 8);
        uint64_t k = (uint64_t)(INT64_MAX - bits);
        k0[i] = k;
        i0[i] = j;
        for (int p = 0; p < RADIX_PASSES; p++) hist[p * RADIX_SIZE + ((k >> (p * RADIX_BITS)) & (RADIX_SIZE - 1))]++;
    }
    for (int p = 0; p < RADIX_PASSES && n > 0; p++) {
        int64_t *h = hist + p * RADIX_SIZE;
        int shift = p * RADIX_BITS;
        if (h[(k0[0] >> shift) & (RADIX_SIZE - 1)] == n) continue; /* one digit value: nothing moves */
        int64_t pos = 0;
        for (int d = 0; d < RADIX_SIZE; d++) {
            int64_t c = h[d];
            h[d] = pos;
            pos += c;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t k = k0[i];
            int64_t at = h[(k >> shift) & (RADIX_SIZE - 1)]++;
            k1[at] = k;
            i1[at] = i0[i];
        }
        uint64_t *kt = k0; k0 = k1; k1 = kt;
        int64_t *it = i0; i0 = i1; i1 = it;
    }
    if (i0 != out) {
        memcpy(out, i0, sizeof(int64_t) * (size_t)n);
        i1 = i0; /* the malloc'd one, freed below */
    }
    Py_END_ALLOW_THREADS
    free(k0), free(k1), free(i1), free(hist);
    release(b, 3);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- worker threads
 *
 * match_groups and accumulate split their work into up to MAX_JOBS contiguous ranges of
 * independent groups (classes for accumulate), each written by exactly one thread, so the
 * results are the same bits for any thread count. The caller passes the count. */
#define MAX_JOBS 8

static void run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n_jobs) {
    pthread_t tid[MAX_JOBS];
    int started[MAX_JOBS] = {0};
    for (int i = 1; i < n_jobs; i++) started[i] = pthread_create(&tid[i], NULL, fn, (char *)jobs + i * job_size) == 0;
    fn(jobs);
    for (int i = 1; i < n_jobs; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else fn((char *)jobs + i * job_size); /* no thread: run it here */
    }
}

static int clamp_jobs(int threads) { return threads < 1 ? 1 : threads > MAX_JOBS ? MAX_JOBS : threads; }

/* match_groups(gt_key, dt_key, gt_xywh, gt_crowd, gt_ignore, gt_id_nonzero, dt_xywh, dt_outside,
 *              thresholds (already capped), state[, threads]): see coco_kernels.match_groups. */
typedef struct {
    const int64_t *gt_key, *dt_key;
    const double *gt_xywh, *dt_xywh, *thresholds;
    const char *gt_crowd, *gt_ignore, *gt_id_nonzero, *dt_outside;
    int8_t *state;
    Py_ssize_t n_gt, n_dt, n_thr, n_area, max_g, max_d, d_begin, d_end;
    int ok;
} MatchJob;

static void *match_range(void *arg) {
    MatchJob *J = arg;
    const int64_t *gt_key = J->gt_key, *dt_key = J->dt_key;
    const double *gt_xywh = J->gt_xywh, *dt_xywh = J->dt_xywh, *thresholds = J->thresholds;
    const char *gt_crowd = J->gt_crowd, *gt_ignore = J->gt_ignore, *gt_id_nonzero = J->gt_id_nonzero;
    const char *dt_outside = J->dt_outside;
    int8_t *state = J->state;
    Py_ssize_t n_gt = J->n_gt, n_dt = J->n_dt, n_thr = J->n_thr, n_area = J->n_area, max_g = J->max_g,
               max_d = J->max_d;
    J->ok = 1;
    if (J->d_begin >= J->d_end) return NULL;
    double *ious = malloc(sizeof(double) * (size_t)(max_d * max_g));
    int64_t *order = malloc(sizeof(int64_t) * (size_t)(n_area * max_g + 1));
    char *ig = malloc((size_t)(n_area * max_g + 1));
    char *taken = malloc((size_t)max_g);
    int64_t *match = malloc(sizeof(int64_t) * (size_t)(n_area * n_thr * max_d + 1));
    if (!ious || !order || !ig || !taken || !match) {
        free(ious), free(order), free(ig), free(taken), free(match);
        J->ok = 0;
        return NULL;
    }
    memset(state + J->d_begin * n_area * n_thr, 0, (size_t)((J->d_end - J->d_begin) * n_area * n_thr));
    Py_ssize_t g0 = 0, hi = n_gt, d0 = J->d_begin;
    while (g0 < hi) { /* the first GT of a group >= this range's first key */
        Py_ssize_t mid = g0 + (hi - g0) / 2;
        if (gt_key[mid] < dt_key[d0]) g0 = mid + 1;
        else hi = mid;
    }
    while (d0 < J->d_end) {
        int64_t key = dt_key[d0];
        Py_ssize_t d1 = d0 + 1;
        while (d1 < n_dt && dt_key[d1] == key) d1++;
        while (g0 < n_gt && gt_key[g0] < key) g0++;
        Py_ssize_t g1 = g0;
        while (g1 < n_gt && gt_key[g1] == key) g1++;
        Py_ssize_t n_g = g1 - g0, n_d = d1 - d0;
        for (Py_ssize_t d = 0; d < n_d; d++) {
            const double *p = dt_xywh + 4 * (d0 + d);
            for (Py_ssize_t j = 0; j < n_g; j++) {
                const double *g = gt_xywh + 4 * (g0 + j);
                ious[d * max_g + j] = iou1(p[0], p[1], p[2], p[3], g[0], g[1], g[2], g[3], gt_crowd[g0 + j]);
            }
        }
        for (Py_ssize_t a = 0; a < n_area; a++) {
            const char *ign = gt_ignore + a * n_gt + g0;
            int64_t *ord = order + a * max_g;
            char *iga = ig + a * max_g;
            Py_ssize_t k = 0;
            for (Py_ssize_t j = 0; j < n_g; j++)
                if (!ign[j]) { ord[k] = j; iga[k] = 0; k++; }
            for (Py_ssize_t j = 0; j < n_g; j++)
                if (ign[j]) { ord[k] = j; iga[k] = 1; k++; }
            Py_ssize_t same = -1;
            for (Py_ssize_t a2 = 0; a2 < a; a2++) {
                const char *ign2 = gt_ignore + a2 * n_gt + g0;
                int equal = 1;
                for (Py_ssize_t j = 0; j < n_g; j++)
                    if ((ign2[j] != 0) != (ign[j] != 0)) { equal = 0; break; }
                if (equal) { same = a2; break; }
            }
            for (Py_ssize_t t = 0; t < n_thr; t++) {
                int64_t *mt = match + (a * n_thr + t) * max_d;
                if (same >= 0) {
                    memcpy(mt, match + (same * n_thr + t) * max_d, sizeof(int64_t) * (size_t)n_d);
                } else {
                    memset(taken, 0, (size_t)n_g);
                    for (Py_ssize_t d = 0; d < n_d; d++) {
                        double best = thresholds[t];
                        Py_ssize_t m = -1;
                        for (Py_ssize_t jj = 0; jj < n_g; jj++) {
                            int64_t gj = ord[jj];
                            if (taken[jj] && !gt_crowd[g0 + gj]) continue;
                            if (m > -1 && !iga[m] && iga[jj]) break;
                            double v = ious[d * max_g + gj];
                            if (v < best) continue;
                            best = v;
                            m = jj;
                        }
                        if (m > -1) taken[m] = 1;
                        mt[d] = m;
                    }
                }
                for (Py_ssize_t d = 0; d < n_d; d++) {
                    int64_t m = mt[d];
                    int matched = m > -1 && gt_id_nonzero[g0 + ord[m]];
                    int ignored = m > -1 && iga[m];
                    if (!matched && dt_outside[a * n_dt + d0 + d]) ignored = 1;
                    int8_t *s = state + ((d0 + d) * n_area + a) * n_thr + t;
                    if (ignored) *s = IGNORED;
                    else if (matched) *s = TP;
                }
            }
        }
        d0 = d1;
    }
    free(ious), free(order), free(ig), free(taken), free(match);
    return NULL;
}

static PyObject *py_match_groups(PyObject *self, PyObject *args) {
    PyObject *o[10];
    Buf b[10];
    int threads = 1;
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO|i", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                          &threads))
        return NULL;
    static const Py_ssize_t size[10] = {8, 8, 8, 1, 1, 1, 8, 1, 8, 1};
    static const char *names[10] = {"gt_key", "dt_key", "gt_xywh", "gt_crowd", "gt_ignore", "gt_id_nonzero",
                                    "dt_xywh", "dt_outside", "thresholds", "state"};
    for (int i = 0; i < 10; i++) {
        if (get(o[i], &b[i], size[i], i == 9, names[i])) {
            release(b, 10);
            return NULL;
        }
    }
    MatchJob base = {b[0].view.buf, b[1].view.buf, b[2].view.buf, b[6].view.buf, b[8].view.buf, b[3].view.buf,
                     b[4].view.buf, b[5].view.buf, b[7].view.buf, b[9].view.buf};
    Py_ssize_t n_gt = len_of(&b[0]), n_dt = len_of(&b[1]), n_thr = len_of(&b[8]);
    Py_ssize_t n_area = n_gt ? len_of(&b[4]) / n_gt : (n_dt ? len_of(&b[7]) / n_dt : 0);
    if (n_gt == 0 && n_dt == 0) {
        release(b, 10);
        Py_RETURN_NONE;
    }
    Py_ssize_t max_g = 1, max_d = 1, run = 0;
    for (Py_ssize_t i = 0; i < n_gt; i++) {
        run = (i && base.gt_key[i] == base.gt_key[i - 1]) ? run + 1 : 1;
        if (run > max_g) max_g = run;
    }
    for (Py_ssize_t i = 0; i < n_dt; i++) {
        run = (i && base.dt_key[i] == base.dt_key[i - 1]) ? run + 1 : 1;
        if (run > max_d) max_d = run;
    }
    base.n_gt = n_gt, base.n_dt = n_dt, base.n_thr = n_thr, base.n_area = n_area, base.max_g = max_g;
    base.max_d = max_d;
    int n_jobs = clamp_jobs(threads);
    MatchJob jobs[MAX_JOBS];
    Py_ssize_t start = 0;
    for (int i = 0; i < n_jobs; i++) { /* equal shares of the detections, cut at group boundaries */
        Py_ssize_t end = i == n_jobs - 1 ? n_dt : n_dt * (i + 1) / n_jobs;
        if (end < start) end = start;
        while (end > 0 && end < n_dt && base.dt_key[end] == base.dt_key[end - 1]) end++;
        jobs[i] = base;
        jobs[i].d_begin = start, jobs[i].d_end = end;
        start = end;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(match_range, jobs, sizeof(MatchJob), n_jobs);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < n_jobs; i++) ok &= jobs[i].ok;
    release(b, 10);
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* accumulate(class_start, acc, state, rank_in_image, score, num_gt, recall_thresholds, max_dets,
 *            n_area, n_thr, eps, precision, recall, scores[, threads]): see coco_kernels.accumulate. */
typedef struct {
    const int64_t *class_start, *acc, *rank, *num_gt, *max_dets;
    const int8_t *state;
    const double *score, *rec_thr;
    double *precision, *recall, *scores, eps;
    Py_ssize_t n_area, n_thr, n_rec, n_cls, n_m, bound, longest, k_begin, k_end;
    int ok;
} AccJob;

static void *accumulate_range(void *arg) {
    AccJob *J = arg;
    const int64_t *class_start = J->class_start, *acc = J->acc, *rank = J->rank;
    const int8_t *state = J->state;
    const double *score = J->score, *rec_thr = J->rec_thr;
    const int64_t *num_gt = J->num_gt, *max_dets = J->max_dets;
    double *precision = J->precision, *recall = J->recall, *scores = J->scores, eps = J->eps;
    Py_ssize_t n_area = J->n_area, n_thr = J->n_thr, n_rec = J->n_rec, n_cls = J->n_cls, n_m = J->n_m;
    Py_ssize_t bound = J->bound, longest = J->longest;
    J->ok = 1;
    if (J->k_begin >= J->k_end) return NULL;
    double *ev_fp = malloc(sizeof(double) * (size_t)(n_m * bound));
    int64_t *ev_row = malloc(sizeof(int64_t) * (size_t)(n_m * bound));
    int64_t *n_ev = malloc(sizeof(int64_t) * (size_t)(n_m ? n_m : 1));
    double *fp = malloc(sizeof(double) * (size_t)(n_m ? n_m : 1));
    double *pr = malloc(sizeof(double) * (size_t)bound);
    double *rc = malloc(sizeof(double) * (size_t)bound);
    int8_t *local = malloc((size_t)(n_area * n_thr * longest + 1));
    if (!ev_fp || !ev_row || !n_ev || !fp || !pr || !rc || !local) {
        free(ev_fp), free(ev_row), free(n_ev), free(fp), free(pr), free(rc), free(local);
        J->ok = 0;
        return NULL;
    }
    /* (T, R, K, A, M) and (T, K, A, M) C-order strides */
    const Py_ssize_t M = n_m, A = n_area, K = n_cls, R = n_rec;
#define P_AT(t, r, k, a, m) ((((((t) * R + (r)) * K + (k)) * A + (a)) * M) + (m))
#define R_AT(t, k, a, m) (((((t) * K + (k)) * A + (a)) * M) + (m))
    for (Py_ssize_t k = J->k_begin; k < J->k_end; k++) {
        Py_ssize_t lo = class_start[k], hi = class_start[k + 1];
        for (Py_ssize_t i = lo; i < hi; i++) {
            const int8_t *row = state + acc[i] * n_area * n_thr;
            for (Py_ssize_t a = 0; a < n_area; a++)
                for (Py_ssize_t t = 0; t < n_thr; t++) local[(a * n_thr + t) * longest + (i - lo)] = row[a * n_thr + t];
        }
        for (Py_ssize_t a = 0; a < n_area; a++) {
            int64_t npig = num_gt[k * n_area + a];
            if (npig == 0) continue;
            for (Py_ssize_t t = 0; t < n_thr; t++) {
                const int8_t *loc = local + (a * n_thr + t) * longest;
                for (Py_ssize_t m = 0; m < n_m; m++) { n_ev[m] = 0; fp[m] = 0.0; }
                for (Py_ssize_t i = lo; i < hi; i++) {
                    int8_t s = loc[i - lo];
                    if (s == IGNORED) continue;
                    int64_t r = rank[i];
                    for (Py_ssize_t m = 0; m < n_m; m++) {
                        if (r < max_dets[m]) {
                            if (s == TP) {
                                ev_fp[m * bound + n_ev[m]] = fp[m];
                                ev_row[m * bound + n_ev[m]] = i;
                                n_ev[m] += 1;
                            } else {
                                fp[m] += 1.0;
                            }
                        }
                    }
                }
                for (Py_ssize_t m = 0; m < n_m; m++) {
                    Py_ssize_t ne = n_ev[m];
                    for (Py_ssize_t e = 0; e < ne; e++) {
                        double tp = e + 1.0;
                        pr[e] = tp / (ev_fp[m * bound + e] + tp + eps);
                        rc[e] = tp / (double)npig;
                    }
                    for (Py_ssize_t e = ne - 1; e > 0; e--)
                        if (pr[e] > pr[e - 1]) pr[e - 1] = pr[e];
                    if (hi == lo) {
                        recall[R_AT(t, k, a, m)] = 0.0;
                        for (Py_ssize_t r = 0; r < n_rec; r++) {
                            precision[P_AT(t, r, k, a, m)] = 0.0;
                            scores[P_AT(t, r, k, a, m)] = 0.0;
                        }
                        continue;
                    }
                    recall[R_AT(t, k, a, m)] = (double)ne / (double)npig;
                    Py_ssize_t e = 0;
                    for (Py_ssize_t r = 0; r < n_rec; r++) {
                        double thr = rec_thr[r];
                        if (thr <= 0.0) {
                            precision[P_AT(t, r, k, a, m)] = ne ? pr[0] : 0.0;
                            scores[P_AT(t, r, k, a, m)] = score[lo];
                            continue;
                        }
                        while (e < ne && rc[e] < thr) e++;
                        if (e < ne) {
                            precision[P_AT(t, r, k, a, m)] = pr[e];
                            scores[P_AT(t, r, k, a, m)] = score[ev_row[m * bound + e]];
                        } else {
                            precision[P_AT(t, r, k, a, m)] = 0.0;
                            scores[P_AT(t, r, k, a, m)] = 0.0;
                        }
                    }
                }
            }
        }
    }
#undef P_AT
#undef R_AT
    free(ev_fp), free(ev_row), free(n_ev), free(fp), free(pr), free(rc), free(local);
    return NULL;
}

static PyObject *py_accumulate(PyObject *self, PyObject *args) {
    PyObject *o[11];
    long long n_area_ll, n_thr_ll;
    double eps;
    int threads = 1;
    Buf b[11];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOOOOOOOLLdOOO|i", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &n_area_ll, &n_thr_ll, &eps, &o[8], &o[9], &o[10], &threads))
        return NULL;
    static const Py_ssize_t size[11] = {8, 8, 1, 8, 8, 8, 8, 8, 8, 8, 8};
    static const char *names[11] = {"class_start", "acc", "state", "rank_in_image", "score", "num_gt",
                                    "recall_thresholds", "max_dets", "precision", "recall", "scores"};
    for (int i = 0; i < 11; i++) {
        if (get(o[i], &b[i], size[i], i >= 8, names[i])) {
            release(b, 11);
            return NULL;
        }
    }
    AccJob base;
    memset(&base, 0, sizeof base);
    base.class_start = b[0].view.buf, base.acc = b[1].view.buf, base.state = b[2].view.buf;
    base.rank = b[3].view.buf, base.score = b[4].view.buf, base.num_gt = b[5].view.buf;
    base.rec_thr = b[6].view.buf, base.max_dets = b[7].view.buf, base.precision = b[8].view.buf;
    base.recall = b[9].view.buf, base.scores = b[10].view.buf, base.eps = eps;
    base.n_area = (Py_ssize_t)n_area_ll, base.n_thr = (Py_ssize_t)n_thr_ll;
    base.n_rec = len_of(&b[6]), base.n_cls = len_of(&b[0]) - 1, base.n_m = len_of(&b[7]);
    Py_ssize_t bound = 1, longest = 0, n_cls = base.n_cls;
    const int64_t *class_start = base.class_start;
    for (Py_ssize_t k = 0; k < n_cls; k++) {
        Py_ssize_t len = class_start[k + 1] - class_start[k];
        if (len > longest) longest = len;
        for (Py_ssize_t a = 0; a < base.n_area; a++) {
            Py_ssize_t v = len < base.num_gt[k * base.n_area + a] ? len : base.num_gt[k * base.n_area + a];
            if (v > bound) bound = v;
        }
    }
    base.bound = bound, base.longest = longest;
    int n_jobs = clamp_jobs(threads);
    AccJob jobs[MAX_JOBS];
    Py_ssize_t total = n_cls > 0 ? class_start[n_cls] - class_start[0] : 0, k = 0;
    for (int i = 0; i < n_jobs; i++) { /* equal shares of the detections, cut at class boundaries */
        Py_ssize_t k0 = k;
        if (i == n_jobs - 1) k = n_cls;
        else
            while (k < n_cls && class_start[k + 1] - class_start[0] <= total * (i + 1) / n_jobs) k++;
        jobs[i] = base;
        jobs[i].k_begin = k0, jobs[i].k_end = k;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(accumulate_range, jobs, sizeof(AccJob), n_jobs);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < n_jobs; i++) ok &= jobs[i].ok;
    release(b, 11);
    if (!ok) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* step1(pair_pos, pair_gt, num_gt, status): see matching._step1. */
static PyObject *py_step1(PyObject *self, PyObject *args) {
    PyObject *o_pos, *o_gt, *o_status;
    long long num_gt;
    Buf b[3];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOLO", &o_pos, &o_gt, &num_gt, &o_status)) return NULL;
    if (get(o_pos, &b[0], 8, 0, "pair_pos") || get(o_gt, &b[1], 8, 0, "pair_gt") ||
        get(o_status, &b[2], 1, 1, "status")) {
        release(b, 3);
        return NULL;
    }
    const int64_t *pos = b[0].view.buf, *gt = b[1].view.buf;
    int8_t *status = b[2].view.buf;
    Py_ssize_t q = len_of(&b[0]);
    char *matched = calloc((size_t)(num_gt > 0 ? num_gt : 1), 1);
    if (!matched) {
        release(b, 3);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    memset(status, 0, (size_t)q);
    Py_ssize_t i = 0;
    while (i < q) {
        int64_t p = pos[i];
        Py_ssize_t j = i, found = -1;
        while (j < q && pos[j] == p) {
            if (found < 0 && !matched[gt[j]]) found = j;
            j++;
        }
        if (found >= 0) {
            matched[gt[found]] = 1;
            status[found] = 1;
        } else {
            status[i] = 2;
        }
        i = j;
    }
    Py_END_ALLOW_THREADS
    free(matched);
    release(b, 3);
    Py_RETURN_NONE;
}

/* step4(pair_pred, pair_gt, pair_score, pair_gt_tp_score, confidence, num_gt, assigned): see matching._step4. */
static PyObject *py_step4(PyObject *self, PyObject *args) {
    PyObject *o[5];
    double confidence;
    long long num_gt;
    Buf b[5];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOOOdLO", &o[0], &o[1], &o[2], &o[3], &confidence, &num_gt, &o[4])) return NULL;
    static const Py_ssize_t size[5] = {8, 8, 8, 8, 1};
    static const char *names[5] = {"pair_pred", "pair_gt", "pair_score", "pair_gt_tp_score", "assigned"};
    for (int i = 0; i < 5; i++) {
        if (get(o[i], &b[i], size[i], i == 4, names[i])) {
            release(b, 5);
            return NULL;
        }
    }
    const int64_t *pred = b[0].view.buf, *gt = b[1].view.buf;
    const double *score = b[2].view.buf, *tp_score = b[3].view.buf;
    char *assigned = b[4].view.buf;
    Py_ssize_t q = len_of(&b[0]);
    char *consumed = calloc((size_t)(num_gt > 0 ? num_gt : 1), 1);
    if (!consumed) {
        release(b, 5);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    memset(assigned, 0, (size_t)q);
    int64_t done = -1;
    for (Py_ssize_t i = 0; i < q; i++) {
        int64_t p = pred[i];
        if (p == done || score[i] < confidence) continue;
        int64_t g = gt[i];
        if (consumed[g] || tp_score[i] >= confidence) continue;
        consumed[g] = 1;
        assigned[i] = 1;
        done = p;
    }
    Py_END_ALLOW_THREADS
    free(consumed);
    release(b, 5);
    Py_RETURN_NONE;
}


/* ---------------------------------------------------------------- COCO records → columns
 *
 * coco_columns(recs, predictions, image_id, category_id, bbox, score, id, id_given, iscrowd, area, area_given)
 * fills the caller's arrays from a list of dicts (what the JSON parser made) and returns True, or
 * returns False at the first record that is not exactly what vecexplore.io._coco_records._columns_fast
 * accepts (exact types: dict records; int ids; a list of 4 int/float for bbox; int/float score;
 * iscrowd 0/1 int or bool; int/float/None area) or a number that does not fit its column (an int
 * beyond int64, beyond a double). The Python passes then run as before and name the record.
 */
static int as_i64(PyObject *v, int64_t *out) {
    if (!PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)x;
    return 1;
}

static int as_f64(PyObject *v, double *out) {
    if (PyFloat_CheckExact(v)) {
        *out = PyFloat_AS_DOUBLE(v);
        return 1;
    }
    if (PyLong_CheckExact(v)) {
        double x = PyLong_AsDouble(v); /* an int beyond a double: OverflowError */
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        *out = x;
        return 1;
    }
    return 0;
}

static PyObject *py_coco_columns(PyObject *self, PyObject *args) {
    PyObject *recs, *o[9];
    int predictions;
    Buf b[9];
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "O!pOOOOOOOOO", &PyList_Type, &recs, &predictions, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8]))
        return NULL;
    static const Py_ssize_t size[9] = {8, 8, 8, 8, 8, 1, 1, 8, 1};
    static const char *names[9] = {"image_id", "category_id", "bbox", "score", "id", "id_given", "iscrowd",
                                   "area", "area_given"};
    for (int i = 0; i < 9; i++) {
        if (get(o[i], &b[i], size[i], 1, names[i])) {
            release(b, 9);
            return NULL;
        }
    }
    int64_t *image_id = b[0].view.buf, *category_id = b[1].view.buf, *ids = b[4].view.buf;
    double *bbox = b[2].view.buf, *score = b[3].view.buf, *area = b[7].view.buf;
    char *id_given = b[5].view.buf, *iscrowd = b[6].view.buf, *area_given = b[8].view.buf;
    Py_ssize_t n = PyList_GET_SIZE(recs);
    if (len_of(&b[0]) < n || len_of(&b[1]) < n || len_of(&b[2]) < 4 * n || len_of(&b[4]) < n ||
        len_of(&b[5]) < n || (predictions && len_of(&b[3]) < n) ||
        (!predictions && (len_of(&b[6]) < n || len_of(&b[7]) < n || len_of(&b[8]) < n))) {
        release(b, 9);
        PyErr_SetString(PyExc_ValueError, "coco_columns: output arrays too short");
        return NULL;
    }
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        PyObject *r = PyList_GET_ITEM(recs, i);
        if (!PyDict_CheckExact(r)) { ok = 0; break; }
        PyObject *v = PyDict_GetItemString(r, "image_id");
        if (!v || !as_i64(v, &image_id[i])) { ok = 0; break; }
        v = PyDict_GetItemString(r, "category_id");
        if (!v || !as_i64(v, &category_id[i])) { ok = 0; break; }
        v = PyDict_GetItemString(r, "bbox");
        if (!v || !PyList_CheckExact(v) || PyList_GET_SIZE(v) != 4) { ok = 0; break; }
        for (int k = 0; k < 4; k++)
            if (!as_f64(PyList_GET_ITEM(v, k), &bbox[4 * i + k])) { ok = 0; break; }
        if (!ok) break;
        v = PyDict_GetItemString(r, "id");
        if (v == NULL || v == Py_None) {
            if (!predictions) { ok = 0; break; } /* ground truth needs its id */
            id_given[i] = 0;
            ids[i] = 0;
        } else {
            if (!as_i64(v, &ids[i])) { ok = 0; break; }
            id_given[i] = 1;
        }
        if (predictions) {
            v = PyDict_GetItemString(r, "score");
            if (!v || !as_f64(v, &score[i])) { ok = 0; break; }
            continue;
        }
        v = PyDict_GetItemString(r, "iscrowd");
        if (v == NULL) {
            iscrowd[i] = 0;
        } else if (v == Py_True || v == Py_False) {
            iscrowd[i] = v == Py_True;
        } else {
            int64_t c;
            if (!as_i64(v, &c) || (c != 0 && c != 1)) { ok = 0; break; }
            iscrowd[i] = (char)c;
        }
        v = PyDict_GetItemString(r, "area");
        if (v == NULL || v == Py_None) {
            area_given[i] = 0;
            area[i] = 0.0;
        } else {
            if (!as_f64(v, &area[i])) { ok = 0; break; }
            area_given[i] = 1;
        }
    }
    release(b, 9);
    return PyBool_FromLong(ok);
}

/* has_digit_run(data, n): whether the bytes hold n or more ASCII digits in a row. */
static PyObject *py_has_digit_run(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t need;
    if (!PyArg_ParseTuple(args, "y*n", &view, &need)) return NULL;
    const unsigned char *d = view.buf;
    Py_ssize_t run = 0;
    int found = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < view.len; i++) {
        if (d[i] >= '0' && d[i] <= '9') {
            if (++run >= need) { found = 1; break; }
        } else {
            run = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

/* ---------------------------------------------------------------- COCO JSON straight to columns
 *
 * parse_coco(data, predictions) reads a whole COCO file (bytes, BOM already removed):
 * everything is built as Python objects (dict, list, str, int, float, bool, None) exactly as
 * the json module would, except the records of the annotation list (the top-level list of a
 * results file, or the "annotations" list of an object), which go straight into columns.
 * Returns (document, columns) where document has no "annotations" entry when it was an object
 * and is None for a top-level list; columns is a dict of bytes buffers (see io/_coco_records.py).
 * Returns None whenever anything is unusual — invalid JSON, NaN/Infinity, an integer beyond
 * int64, a lone surrogate, invalid UTF-8, deep nesting, or a record that is not exactly what
 * _columns_fast accepts — and the caller then takes the standard path, which names the problem.
 */
typedef struct {
    const char *p, *end;
    int depth;
    int one_line; /* JSON Lines: a newline ends the value (json.loads of one line never sees the next) */
    PyThreadState *released; /* non-NULL while the GIL is released (records without Python objects) */
} Cur;

/* Take the GIL back for a step that calls CPython, when records() released it; returns what
 * drop_gil needs to release it again (NULL when it was held: nested steps do nothing). */
static PyThreadState *hold_gil(Cur *c) {
    PyThreadState *ts = c->released;
    if (ts) {
        PyEval_RestoreThread(ts);
        c->released = NULL;
    }
    return ts;
}

static void drop_gil(Cur *c, PyThreadState *ts) {
    if (ts) c->released = PyEval_SaveThread();
}

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Vec;

static inline __attribute__((always_inline)) int vec_grow(Vec *v, Py_ssize_t add) {
    if (v->len + add <= v->cap) return 1;
    Py_ssize_t cap = v->cap ? v->cap : 4096;
    while (cap < v->len + add) cap *= 2;
    char *d = realloc(v->data, (size_t)cap);
    if (!d) return 0;
    v->data = d;
    v->cap = cap;
    return 1;
}

static inline __attribute__((always_inline)) int vec_put(Vec *v, const void *src, Py_ssize_t n) {
    if (!vec_grow(v, n)) return 0;
    memcpy(v->data + v->len, src, (size_t)n);
    v->len += n;
    return 1;
}

static inline __attribute__((always_inline)) void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || (*c->p == '\n' && !c->one_line)))
        c->p++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string at c->p (the opening quote) as UTF-8 in buf; 0 = bail. */
static int read_string(Cur *c, Vec *buf) {
    buf->len = 0;
    if (c->p >= c->end || *c->p != '"') return 0;
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            c->p++;
            return 1;
        }
        if (ch < 0x20) return 0;
        if (ch != '\\') {
            const char *q = c->p;
            while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
            if (!vec_put(buf, c->p, q - c->p)) return 0;
            c->p = q;
            continue;
        }
        if (c->end - c->p < 2) return 0;
        char e = c->p[1];
        c->p += 2;
        char out;
        switch (e) {
            case '"': out = '"'; break;
            case '\\': out = '\\'; break;
            case '/': out = '/'; break;
            case 'b': out = '\b'; break;
            case 'f': out = '\f'; break;
            case 'n': out = '\n'; break;
            case 'r': out = '\r'; break;
            case 't': out = '\t'; break;
            case 'u': {
                unsigned u;
                if (c->end - c->p < 4 || !hex4(c->p, &u)) return 0;
                c->p += 4;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return 0; /* a lone high surrogate: json keeps it, UTF-8 cannot */
                    c->p += 6;
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return 0;
                }
                char tmp[4];
                int n;
                if (u < 0x80) { tmp[0] = (char)u; n = 1; }
                else if (u < 0x800) { tmp[0] = (char)(0xC0 | (u >> 6)); tmp[1] = (char)(0x80 | (u & 0x3F)); n = 2; }
                else if (u < 0x10000) {
                    tmp[0] = (char)(0xE0 | (u >> 12)); tmp[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                    tmp[2] = (char)(0x80 | (u & 0x3F)); n = 3;
                } else {
                    tmp[0] = (char)(0xF0 | (u >> 18)); tmp[1] = (char)(0x80 | ((u >> 12) & 0x3F));
                    tmp[2] = (char)(0x80 | ((u >> 6) & 0x3F)); tmp[3] = (char)(0x80 | (u & 0x3F)); n = 4;
                }
                if (!vec_put(buf, tmp, n)) return 0;
                continue;
            }
            default: return 0;
        }
        if (!vec_put(buf, &out, 1)) return 0;
    }
    return 0;
}

static PyObject *make_str(Vec *buf) {
    PyObject *s = PyUnicode_DecodeUTF8(buf->data ? buf->data : "", buf->len, "strict");
    if (!s) PyErr_Clear();
    return s;
}

/* Exact powers of ten as doubles (10^22 is the largest that is exact). */
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The slow, general conversion of the literal [s, q): what json/float() give. */
static int number_slow(const char *s, const char *q, int is_float, int64_t *i, double *d) {
    Py_ssize_t n = q - s;
    char tmp[64];
    if (n >= (Py_ssize_t)sizeof tmp) return 0; /* a 60-digit literal: the standard path */
    memcpy(tmp, s, (size_t)n);
    tmp[n] = 0;
    if (!is_float) {
        errno = 0;
        char *endp;
        long long v = strtoll(tmp, &endp, 10);
        if (errno || *endp) return 0; /* beyond int64 */
        *i = (int64_t)v;
        return 1;
    }
    double v = PyOS_string_to_double(tmp, NULL, NULL); /* what float() gives; inf past the range */
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *d = v;
    return 2;
}

/* A JSON number: kind 1 = int (in *i), 2 = float (in *d); 0 = bail.
 *
 * Fast path (the common case: up to 18 significant digits): integers are summed
 * digit by digit; a float whose significand m <= 2^53 and whose decimal exponent e
 * is within [-22, 22] is m * 10^e or m / 10^-e, one IEEE operation on two exact
 * doubles, hence the correctly rounded value: the same bits as Python's float()
 * (Clinger's fast path). Everything else goes through number_slow. The fast path
 * needs double arithmetic without extended precision (FLT_EVAL_METHOD 0, e.g.
 * x86-64 SSE2); elsewhere every float takes the slow path. */
static int read_number(Cur *c, int64_t *i, double *d) {
    const char *s = c->p, *q = c->p;
    int neg = 0;
    if (q < c->end && *q == '-') { neg = 1; q++; }
    if (q >= c->end) return 0;
    uint64_t m = 0;
    int sig = 0; /* significant digits summed into m (leading zeros not counted) */
    int frac = 0; /* digits after the point summed into m */
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') {
        while (q < c->end && *q >= '0' && *q <= '9') {
            if (sig < 19) m = m * 10 + (uint64_t)(*q - '0');
            sig++;
            q++;
        }
    } else return 0;
    int is_float = 0;
    if (q < c->end && *q == '.') {
        is_float = 1;
        q++;
        if (q >= c->end || *q < '0' || *q > '9') return 0;
        while (q < c->end && *q >= '0' && *q <= '9') {
            if (sig < 19) {
                m = m * 10 + (uint64_t)(*q - '0');
                frac++;
                if (m) sig++;
            } else sig++;
            q++;
        }
    }
    int64_t e10 = 0;
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        is_float = 1;
        q++;
        int eneg = 0;
        if (q < c->end && (*q == '+' || *q == '-')) { eneg = *q == '-'; q++; }
        if (q >= c->end || *q < '0' || *q > '9') return 0;
        while (q < c->end && *q >= '0' && *q <= '9') {
            if (e10 < 100000) e10 = e10 * 10 + (*q - '0');
            q++;
        }
        if (eneg) e10 = -e10;
    }
    c->p = q;
    if (sig > 18) {
        PyThreadState *ts = hold_gil(c); /* number_slow calls CPython's float parser */
        int kind = number_slow(s, q, is_float, i, d);
        drop_gil(c, ts);
        return kind;
    }
    if (!is_float) {
        *i = neg ? -(int64_t)m : (int64_t)m;
        return 1;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    e10 -= frac;
    if (m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 >= 0 ? v * POW10[e10] : v / POW10[-e10];
        *d = neg ? -v : v;
        return 2;
    }
#endif
    PyThreadState *ts = hold_gil(c);
    int kind = number_slow(s, q, is_float, i, d);
    drop_gil(c, ts);
    return kind;
}

static inline __attribute__((always_inline)) int lit(Cur *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n)) return 0;
    c->p += n;
    return 1;
}

static PyObject *value(Cur *c, Vec *buf);

static PyObject *array(Cur *c, Vec *buf) {
    c->p++;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    ws(c);
    if (c->p < c->end && *c->p == ']') { c->p++; return list; }
    for (;;) {
        PyObject *item = value(c, buf);
        if (!item || PyList_Append(list, item) < 0) { Py_XDECREF(item); Py_DECREF(list); return NULL; }
        Py_DECREF(item);
        ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (c->p < c->end && *c->p == ']') { c->p++; return list; }
        Py_DECREF(list);
        return NULL;
    }
}

static PyObject *object(Cur *c, Vec *buf) {
    c->p++;
    PyObject *dict = PyDict_New();
    if (!dict) return NULL;
    ws(c);
    if (c->p < c->end && *c->p == '}') { c->p++; return dict; }
    for (;;) {
        ws(c);
        if (!read_string(c, buf)) { Py_DECREF(dict); return NULL; }
        PyObject *key = make_str(buf);
        if (!key) { Py_DECREF(dict); return NULL; }
        ws(c);
        if (c->p >= c->end || *c->p != ':') { Py_DECREF(key); Py_DECREF(dict); return NULL; }
        c->p++;
        PyObject *v = value(c, buf);
        if (!v || PyDict_SetItem(dict, key, v) < 0) { Py_DECREF(key); Py_XDECREF(v); Py_DECREF(dict); return NULL; }
        Py_DECREF(key);
        Py_DECREF(v);
        ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (c->p < c->end && *c->p == '}') { c->p++; return dict; }
        Py_DECREF(dict);
        return NULL;
    }
}

static PyObject *value(Cur *c, Vec *buf) {
    ws(c);
    if (c->p >= c->end) return NULL;
    if (++c->depth > 500) return NULL; /* json raises RecursionError much deeper; the standard path decides */
    PyObject *out = NULL;
    char ch = *c->p;
    if (ch == '{') out = object(c, buf);
    else if (ch == '[') out = array(c, buf);
    else if (ch == '"') out = read_string(c, buf) ? make_str(buf) : NULL;
    else if (ch == 't') out = lit(c, "true") ? (Py_INCREF(Py_True), Py_True) : NULL;
    else if (ch == 'f') out = lit(c, "false") ? (Py_INCREF(Py_False), Py_False) : NULL;
    else if (ch == 'n') out = lit(c, "null") ? (Py_INCREF(Py_None), Py_None) : NULL;
    else {
        int64_t i;
        double d;
        int kind = read_number(c, &i, &d);
        out = kind == 1 ? PyLong_FromLongLong(i) : kind == 2 ? PyFloat_FromDouble(d) : NULL;
    }
    c->depth--;
    if (!out && PyErr_Occurred()) PyErr_Clear();
    return out;
}

/* Growable columns of the annotation records. */
typedef struct {
    Vec image_id, category_id, bbox, score, id, id_given, iscrowd, area, area_given;
    Py_ssize_t n;
} Cols;

enum { K_OTHER, K_ID, K_IMAGE_ID, K_CATEGORY_ID, K_BBOX, K_SCORE, K_ISCROWD, K_AREA, K_SEGMENTATION };

static int key_kind(const char *k, Py_ssize_t len) {
#define IS(s) (len == (Py_ssize_t)(sizeof(s) - 1) && !memcmp(k, s, sizeof(s) - 1))
    if (IS("id")) return K_ID;
    if (IS("image_id")) return K_IMAGE_ID;
    if (IS("category_id")) return K_CATEGORY_ID;
    if (IS("bbox")) return K_BBOX;
    if (IS("score")) return K_SCORE;
    if (IS("iscrowd")) return K_ISCROWD;
    if (IS("area")) return K_AREA;
    if (IS("segmentation")) return K_SEGMENTATION;
    return K_OTHER;
#undef IS
}

/* A record's key at c->p (the opening quote) as a K_* kind; -1 = bail. A key without escapes
 * is matched where it lies; one with escapes is decoded first (the same key, as json reads it). */
static int read_key(Cur *c, Vec *buf) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const char *s = c->p + 1, *q = s;
    while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q < c->end && *q == '"') {
        c->p = q + 1;
        return key_kind(s, q - s);
    }
    if (!read_string(c, buf)) return -1;
    return key_kind(buf->data, buf->len);
}

/* One annotation record into the columns; 0 = bail. */
static int record(Cur *c, Vec *buf, Cols *cols, int predictions) {
    ws(c);
    if (c->p >= c->end || *c->p != '{') return 0;
    c->p++;
    int64_t image_id = 0, category_id = 0, id = 0;
    double bbox[4] = {0, 0, 0, 0}, score = 0, area = 0;
    int has_image = 0, has_cat = 0, has_bbox = 0, has_score = 0, has_id = 0, has_area = 0;
    char crowd = 0;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0; /* an empty record lacks the required keys */
    }
    for (;;) {
        ws(c);
        int kind = read_key(c, buf);
        if (kind < 0 || kind == K_SEGMENTATION) return 0; /* masks: the standard path (segm) */
        ws(c);
        if (c->p >= c->end || *c->p != ':') return 0;
        c->p++;
        ws(c);
        if (c->p >= c->end) return 0;
        int64_t iv;
        double dv;
        int nk;
        switch (kind) {
            case K_ID:
                if (lit(c, "null")) { has_id = 0; break; }
                if (read_number(c, &iv, &dv) != 1) return 0;
                id = iv; has_id = 1;
                break;
            case K_IMAGE_ID:
                if (read_number(c, &iv, &dv) != 1) return 0;
                image_id = iv; has_image = 1;
                break;
            case K_CATEGORY_ID:
                if (read_number(c, &iv, &dv) != 1) return 0;
                category_id = iv; has_cat = 1;
                break;
            case K_BBOX:
                if (*c->p != '[') return 0;
                c->p++;
                for (int k = 0; k < 4; k++) {
                    ws(c);
                    nk = read_number(c, &iv, &dv);
                    if (!nk) return 0;
                    bbox[k] = nk == 1 ? (double)iv : dv;
                    ws(c);
                    if (c->p >= c->end || *c->p != (k < 3 ? ',' : ']')) return 0;
                    c->p++;
                }
                has_bbox = 1;
                break;
            case K_SCORE:
                nk = read_number(c, &iv, &dv);
                if (!nk) return 0;
                score = nk == 1 ? (double)iv : dv; has_score = 1;
                break;
            case K_ISCROWD:
                if (lit(c, "true")) crowd = 1;
                else if (lit(c, "false")) crowd = 0;
                else {
                    if (read_number(c, &iv, &dv) != 1 || (iv != 0 && iv != 1)) return 0;
                    crowd = (char)iv;
                }
                break;
            case K_AREA:
                if (lit(c, "null")) { has_area = 0; break; }
                nk = read_number(c, &iv, &dv);
                if (!nk) return 0;
                area = nk == 1 ? (double)iv : dv; has_area = 1;
                break;
            default: { /* another key: its value is parsed (and checked) as Python objects */
                PyThreadState *ts = hold_gil(c);
                PyObject *skip = value(c, buf);
                Py_XDECREF(skip);
                drop_gil(c, ts);
                if (!skip) return 0;
            }
        }
        ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (c->p < c->end && *c->p == '}') { c->p++; break; }
        return 0;
    }
    if (!has_image || !has_cat || !has_bbox || (predictions && !has_score) || (!predictions && !has_id)) return 0;
    char given = (char)has_id, agiven = (char)has_area;
    return vec_put(&cols->image_id, &image_id, 8) && vec_put(&cols->category_id, &category_id, 8) &&
           vec_put(&cols->bbox, bbox, 32) && vec_put(&cols->score, &score, 8) && vec_put(&cols->id, &id, 8) &&
           vec_put(&cols->id_given, &given, 1) && vec_put(&cols->iscrowd, &crowd, 1) &&
           vec_put(&cols->area, &area, 8) && vec_put(&cols->area_given, &agiven, 1) && (++cols->n, 1);
}

static int records_held(Cur *c, Vec *buf, Cols *cols, int predictions);

/* The records of an annotation list into the columns, with the GIL released (taken back only
 * for an unusual key or number), so that two files can be read at once; 0 = bail. */
static int records(Cur *c, Vec *buf, Cols *cols, int predictions) {
    /* Room for a record per 64 bytes left (a box record takes about 90): few or no regrowths. */
    Py_ssize_t guess = (c->end - c->p) / 64 + 16;
    Vec *v[] = {&cols->image_id, &cols->category_id, &cols->bbox, &cols->score, &cols->id, &cols->id_given,
                &cols->iscrowd, &cols->area, &cols->area_given};
    Py_ssize_t width[] = {8, 8, 32, 8, 8, 1, 1, 8, 1};
    for (int k = 0; k < 9; k++)
        if (!vec_grow(v[k], guess * width[k])) return 0;
    c->released = PyEval_SaveThread();
    int ok = records_held(c, buf, cols, predictions);
    PyEval_RestoreThread(c->released);
    c->released = NULL;
    return ok;
}

static int records_held(Cur *c, Vec *buf, Cols *cols, int predictions) {
    ws(c);
    if (c->p >= c->end || *c->p != '[') return 0;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') { c->p++; return 1; }
    for (;;) {
        if (!record(c, buf, cols, predictions)) return 0;
        ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (c->p < c->end && *c->p == ']') { c->p++; return 1; }
        return 0;
    }
}

static void cols_free(Cols *k) {
    Vec *v[] = {&k->image_id, &k->category_id, &k->bbox, &k->score, &k->id, &k->id_given, &k->iscrowd, &k->area,
                &k->area_given};
    for (int i = 0; i < 9; i++) free(v[i]->data);
}

static PyObject *cols_dict(Cols *k) {
    const char *names[] = {"image_id", "category_id", "bbox", "score", "id", "id_given", "iscrowd", "area",
                           "area_given"};
    Vec *v[] = {&k->image_id, &k->category_id, &k->bbox, &k->score, &k->id, &k->id_given, &k->iscrowd, &k->area,
                &k->area_given};
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int i = 0; i < 9; i++) {
        PyObject *b = PyByteArray_FromStringAndSize(v[i]->data ? v[i]->data : "", v[i]->len); /* writable: no copy in numpy */
        if (!b || PyDict_SetItemString(d, names[i], b) < 0) { Py_XDECREF(b); Py_DECREF(d); return NULL; }
        Py_DECREF(b);
    }
    PyObject *n = PyLong_FromSsize_t(k->n);
    if (!n || PyDict_SetItemString(d, "n", n) < 0) { Py_XDECREF(n); Py_DECREF(d); return NULL; }
    Py_DECREF(n);
    return d;
}

static PyObject *py_parse_coco(PyObject *self, PyObject *args) {
    Py_buffer view;
    int predictions;
    if (!PyArg_ParseTuple(args, "y*p", &view, &predictions)) return NULL;
    Cur c = {view.buf, (const char *)view.buf + view.len, 0, 0};
    Vec buf = {0};
    Cols cols;
    memset(&cols, 0, sizeof cols);
    PyObject *doc = NULL, *result = NULL;
    int ok = 0, have_cols = 0;
    ws(&c);
    if (c.p < c.end && *c.p == '[') {
        ok = records(&c, &buf, &cols, predictions);
        have_cols = 1;
        Py_INCREF(Py_None);
        doc = Py_None;
    } else if (c.p < c.end && *c.p == '{') {
        c.p++;
        doc = PyDict_New();
        ok = doc != NULL;
        ws(&c);
        if (ok && c.p < c.end && *c.p == '}') {
            c.p++;
        } else {
            while (ok) {
                ws(&c);
                if (!read_string(&c, &buf)) { ok = 0; break; }
                int is_ann = buf.len == 11 && !memcmp(buf.data, "annotations", 11);
                PyObject *key = make_str(&buf);
                ws(&c);
                if (!key || c.p >= c.end || *c.p != ':') { Py_XDECREF(key); ok = 0; break; }
                c.p++;
                ws(&c);
                if (is_ann && !have_cols && c.p < c.end && *c.p == '[') {
                    ok = records(&c, &buf, &cols, predictions);
                    have_cols = 1;
                    Py_DECREF(key);
                } else if (is_ann) {
                    Py_DECREF(key);
                    ok = 0; /* a second "annotations", or not a list: the standard path */
                    break;
                } else {
                    PyObject *v = value(&c, &buf);
                    ok = v != NULL && PyDict_SetItem(doc, key, v) == 0;
                    Py_XDECREF(v);
                    Py_DECREF(key);
                }
                if (!ok) break;
                ws(&c);
                if (c.p < c.end && *c.p == ',') { c.p++; continue; }
                if (c.p < c.end && *c.p == '}') { c.p++; break; }
                ok = 0;
            }
        }
    }
    if (ok) {
        ws(&c);
        ok = c.p == c.end;
    }
    if (ok) {
        PyObject *cd = have_cols ? cols_dict(&cols) : (Py_INCREF(Py_None), Py_None);
        if (cd) {
            result = PyTuple_Pack(2, doc, cd);
            Py_DECREF(cd);
        }
    }
    if (PyErr_Occurred()) PyErr_Clear();
    Py_XDECREF(doc);
    free(buf.data);
    cols_free(&cols);
    PyBuffer_Release(&view);
    if (!result) Py_RETURN_NONE;
    return result;
}

/* parse_coco_lines(data, predictions) -> columns | None: a JSON Lines results file (records split
 * on '\n', record i on line i + 1; whitespace after the last) straight into the columns of
 * parse_coco. A record must end on its own line (what json.loads of that line accepts); None at the
 * first surprise (a blank line too) and for a file without records: the caller's line-by-line path
 * then reads it and names any problem by its line. */
static PyObject *py_parse_coco_lines(PyObject *self, PyObject *args) {
    Py_buffer view;
    int predictions;
    if (!PyArg_ParseTuple(args, "y*p", &view, &predictions)) return NULL;
    Cur c = {view.buf, (const char *)view.buf + view.len, 0, 1};
    Vec buf = {0};
    Cols cols;
    memset(&cols, 0, sizeof cols);
    int ok = 1;
    for (;;) {
        const char *q = c.p;
        int blank = 0;
        while (q < c.end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) blank |= *q++ == '\n';
        if (q >= c.end) break; /* whitespace to the end */
        if (blank) { ok = 0; break; } /* a blank line: record i is then not line i + 1; the caller numbers lines */
        c.p = q;
        if (!record(&c, &buf, &cols, predictions)) { ok = 0; break; }
        ws(&c);
        if (c.p < c.end && *c.p++ != '\n') { ok = 0; break; }
    }
    PyObject *result = ok && cols.n > 0 ? cols_dict(&cols) : NULL;
    if (PyErr_Occurred()) PyErr_Clear();
    free(buf.data);
    cols_free(&cols);
    PyBuffer_Release(&view);
    if (!result) Py_RETURN_NONE;
    return result;
}

/* ---------------------------------------------------------------- operating-point candidate pairs
 *
 * candidate_pairs(order, p_image, p_class, p_xywh, gt_order, g_start, g_count, g_class, g_xywh, g_crowd,
 *                 t, lo, error_iou, crowd_hit, near_same, near_other)
 * -> (same_pos, same_gt, same_iou, other_pos, other_gt, other_iou) as bytearrays (int64, int64, float64).
 * The loop of matching._candidate_pairs without its chunks: for each processing position a (prediction
 * p = order[a]) and each GT g of p's image in gt_order, the box IoU (iou1: pycocotools' arithmetic, the
 * same bits as eval/iou.pair_iou); pairs in the same order as the Python loop emits them. */
static PyObject *py_candidate_pairs(PyObject *self, PyObject *args) {
    PyObject *o[13];
    Buf b[13];
    double t, lo, error_iou;
    memset(b, 0, sizeof b);
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOdddOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                          &o[9], &t, &lo, &error_iou, &o[10], &o[11], &o[12]))
        return NULL;
    static const Py_ssize_t size[13] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 1, 1, 1, 1};
    static const char *names[13] = {"order", "p_image", "p_class", "p_xywh", "gt_order", "g_start", "g_count",
                                    "g_class", "g_xywh", "g_crowd", "crowd_hit", "near_same", "near_other"};
    for (int i = 0; i < 13; i++) {
        if (get(o[i], &b[i], size[i], i >= 10, names[i])) {
            release(b, 13);
            return NULL;
        }
    }
    const int64_t *order = b[0].view.buf, *p_image = b[1].view.buf, *p_class = b[2].view.buf;
    const double *p_xywh = b[3].view.buf, *g_xywh = b[8].view.buf;
    const int64_t *gt_order = b[4].view.buf, *g_start = b[5].view.buf, *g_count = b[6].view.buf;
    const int64_t *g_class = b[7].view.buf;
    const char *g_crowd = b[9].view.buf;
    char *crowd_hit = b[10].view.buf, *near_same = b[11].view.buf, *near_other = b[12].view.buf;
    Py_ssize_t n = len_of(&b[0]), n_img = len_of(&b[5]), m = len_of(&b[7]);
    int bad = len_of(&b[1]) != n || len_of(&b[2]) != n || len_of(&b[3]) != 4 * n || len_of(&b[6]) != n_img ||
              len_of(&b[4]) != m || len_of(&b[8]) != 4 * m || len_of(&b[9]) != m || len_of(&b[10]) != n ||
              len_of(&b[11]) != n || len_of(&b[12]) != n;
    for (Py_ssize_t a = 0; !bad && a < n; a++) {
        int64_t p = order[a];
        bad = p < 0 || p >= n || p_image[p] < 0 || p_image[p] >= n_img;
    }
    for (Py_ssize_t i = 0; !bad && i < n_img; i++)
        bad = g_count[i] < 0 || g_start[i] < 0 || g_start[i] + g_count[i] > m;
    for (Py_ssize_t i = 0; !bad && i < m; i++) bad = gt_order[i] < 0 || gt_order[i] >= m;
    if (bad) {
        release(b, 13);
        PyErr_SetString(PyExc_ValueError, "candidate_pairs: inconsistent array sizes or indices");
        return NULL;
    }
    Vec sp = {0}, sg = {0}, sv = {0}, op = {0}, og = {0}, ov = {0};
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t a = 0; ok && a < n; a++) {
        int64_t p = order[a], img = p_image[p], cls = p_class[p];
        const double *d = p_xywh + 4 * p;
        const int64_t *gs = gt_order + g_start[img];
        for (int64_t k = 0; k < g_count[img]; k++) {
            int64_t g = gs[k];
            const double *q = g_xywh + 4 * g;
            int crowd = g_crowd[g] != 0;
            double v = iou1(d[0], d[1], d[2], d[3], q[0], q[1], q[2], q[3], crowd);
            if (!(v >= lo)) continue;
            int same = cls == g_class[g], hit = v >= t, near = v >= error_iou;
            int64_t pos = (int64_t)a;
            if (crowd) {
                if (same && hit) crowd_hit[p] = 1;
                continue;
            }
            if (hit) {
                Vec *vp = same ? &sp : &op, *vg = same ? &sg : &og, *vv = same ? &sv : &ov;
                ok = vec_put(vp, &pos, 8) && vec_put(vg, &g, 8) && vec_put(vv, &v, 8);
            }
            if (near) {
                if (same) near_same[p] = 1;
                else near_other[p] = 1;
            }
        }
    }
    Py_END_ALLOW_THREADS
    release(b, 13);
    PyObject *out = NULL;
    if (!ok) PyErr_NoMemory();
    else {
        Vec *v[6] = {&sp, &sg, &sv, &op, &og, &ov};
        out = PyTuple_New(6);
        for (int i = 0; out && i < 6; i++) {
            PyObject *ba = PyByteArray_FromStringAndSize(v[i]->data ? v[i]->data : "", v[i]->len);
            if (!ba) { Py_CLEAR(out); break; }
            PyTuple_SET_ITEM(out, i, ba);
        }
    }
    free(sp.data); free(sg.data); free(sv.data); free(op.data); free(og.data); free(ov.data);
    return out;
}

static PyMethodDef methods[] = {
    {"counting_order", py_counting_order, METH_VARARGS, "counting_order(order, key, n_buckets, out)"},
    {"descending_score_order", py_descending_score_order, METH_VARARGS, "descending_score_order(order, score, out)"},
    {"match_groups", py_match_groups, METH_VARARGS, "match_groups(..., state)"},
    {"accumulate", py_accumulate, METH_VARARGS, "accumulate(...)"},
    {"step1", py_step1, METH_VARARGS, "step1(pair_pos, pair_gt, num_gt, status)"},
    {"step4", py_step4, METH_VARARGS, "step4(pair_pred, pair_gt, pair_score, pair_gt_tp_score, confidence, num_gt, assigned)"},
    {"coco_columns", py_coco_columns, METH_VARARGS, "coco_columns(recs, predictions, ...outputs) -> bool"},
    {"has_digit_run", py_has_digit_run, METH_VARARGS, "has_digit_run(data, n) -> bool"},
    {"parse_coco", py_parse_coco, METH_VARARGS, "parse_coco(data, predictions) -> (document, columns) | None"},
    {"parse_coco_lines", py_parse_coco_lines, METH_VARARGS, "parse_coco_lines(data, predictions) -> columns | None"},
    {"candidate_pairs", py_candidate_pairs, METH_VARARGS, "candidate_pairs(...) -> (same_pos, same_gt, same_iou, other_pos, other_gt, other_iou)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "vecexplore._native",
                                    "Evaluation kernels in C (see csrc/native.c).", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
