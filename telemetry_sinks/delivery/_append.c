/* The spool's append, in C: build an event's record and write it with write(2), keeping the GIL.

   Why: os.write releases the GIL around the system call, as it must for pipes and
   sockets that can block.  An append of a few hundred bytes into the page cache takes
   about a microsecond; while a sink's worker waits for the GIL, each release hands it
   over, and the emitting thread then waits for the worker's work on every event (the
   convoy effect).  So the append keeps the GIL, and doing the record's bytes, its
   CRC-32 and the write in one call leaves the emitting thread about a microsecond of
   work less an event than the same steps in Python.

   A spool's head segment goes further (`Ledger.map`, Linux): its file is mapped shared and
   a record is built straight in the page cache, without the system call, which is most of
   the microsecond.  It survives kill -9 as a write(2) does (the pages belong to the file,
   not the process).  The file grows a chunk at a time with fallocate(2), which reserves
   the blocks, so a full disk is an OSError on the append that needs the room, never a
   SIGBUS; `release` unmaps it and cuts it to its records.

   A file system that blocks (writeback throttling, a network file system) must not stop
   the application's other threads: if two writes within `again_ns` each take longer
   than `slow_ns`, the writes of the next `release_ns` release the GIL, as os.write does.
   The thresholds come from Python (`configure`); the state is this module's, guarded by
   the GIL.

   The record format is the one `telemetry_sinks.delivery.spool` documents and
   `encode_record` builds in Python: magic b"\x89TSR", the body's length and CRC-32
   (uint32, big-endian), the body: event id (ASCII), "\n", the event's JSON (UTF-8).

   `scan` reads runs of valid items back, as `spool.scan_in_python` (the specification,
   which the tests compare it with on fuzzed bytes) does, about four times faster: a sink
   whose backend is slower than its application reads what did not fit in memory back
   from disk. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#define HAVE_MAP 1
#endif

#define HEADER_SIZE 12
#define STACK_RECORD 8192

static int64_t slow_ns = 10000000;       /* a write longer than this is slow */
static int64_t again_ns = 1000000000;    /* two slow writes this close: the file system blocks */
static int64_t release_ns = 60000000000; /* then the writes release the GIL this long */
static int64_t release_until = 0;        /* monotonic ns before which writes release the GIL */
static int64_t last_slow = INT64_MIN / 2;

static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][i] = c;
        }
    }
}

/* CRC-32 (the polynomial of zlib.crc32) from state `crc` (not inverted), eight bytes a step. */
static uint32_t
crc32_tables(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        uint32_t a = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        a ^= crc;
        crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff]
              ^ crc_table[4][a >> 24] ^ crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff]
              ^ crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL 1
static int use_clmul = 0;

/* CRC-32 of n bytes (n >= 64) by folding 16-byte blocks with carry-less multiplication
   (PCLMULQDQ): no tables, so no cache misses when the call comes between a Python
   application's own work.  Returns the state after floor(n / 16) * 16 bytes; `*done`
   says how many.  The constants are powers of x modulo the CRC-32 polynomial (bit-reflected),
   as in Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ". */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc32_clmul(uint32_t crc, const unsigned char *p, size_t n, size_t *done)
{
    const __m128i k1k2 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    size_t left = n & ~(size_t)15;
    *done = left;
    __m128i x1 = _mm_loadu_si128((const __m128i *)p);
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    p += 64;
    left -= 64;
    while (left >= 64) {
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k1k2, 0x00), _mm_clmulepi64_si128(x1, k1k2, 0x11)),
                           _mm_loadu_si128((const __m128i *)p));
        x2 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x2, k1k2, 0x00), _mm_clmulepi64_si128(x2, k1k2, 0x11)),
                           _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x3, k1k2, 0x00), _mm_clmulepi64_si128(x3, k1k2, 0x11)),
                           _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x4, k1k2, 0x00), _mm_clmulepi64_si128(x4, k1k2, 0x11)),
                           _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        left -= 64;
    }
    /* four blocks into one */
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x2);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x3);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)), x4);
    while (left >= 16) {
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x00), _mm_clmulepi64_si128(x1, k3k4, 0x11)),
                           _mm_loadu_si128((const __m128i *)p));
        p += 16;
        left -= 16;
    }
    /* 128 bits to 64, then to 32 */
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(k3k4, x1, 0x01), _mm_srli_si128(x1, 8));
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00), x2);
    /* Barrett reduction to the 32-bit remainder */
    x2 = x1;
    x1 = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10), mask32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, poly, 0x00), x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

static uint32_t
crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
#ifdef HAVE_CLMUL
    if (use_clmul && n >= 64) {
        size_t done;
        crc = crc32_clmul(crc, p, n, &done);
        p += done;
        n -= done;
    }
#endif
    return ~crc32_tables(crc, p, n);
}

static void
put_uint32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether the appends release the GIL now (after slow ones: the file system blocks). */
static int
releasing_now(void)
{
    return release_until != 0 && now_ns() < release_until;
}

/* An append that began at `start` (monotonic ns) ended: two slow ones close together make the
   next ones release the GIL for `release_ns`. */
static void
append_took(int64_t start)
{
    int64_t took = now_ns() - start;
    if (took > slow_ns) {
        if (start - last_slow < again_ns) {
            release_until = start + took + release_ns;
        }
        last_slow = start;
    }
}

/* Write all of p[0:n] to fd; 0, or -1 with a Python exception set (OSError, or what a signal
   handler run on EINTR raised).  Bytes before an error may have been written. */
static int
write_all(int fd, const char *p, size_t n)
{
    int releasing = releasing_now();
    int64_t start = releasing ? 0 : now_ns();
    while (n > 0) {
        ssize_t written;
        if (releasing) {
            Py_BEGIN_ALLOW_THREADS
            written = write(fd, p, n);
            Py_END_ALLOW_THREADS
        }
        else {
            written = write(fd, p, n);
        }
        if (written < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    return -1;
                }
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        p += written;
        n -= (size_t)written;
    }
    if (!releasing) {
        append_took(start);
    }
    return 0;
}

static int
fd_of(PyObject *obj)
{
    long fd = PyLong_AsLong(obj);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a file descriptor must be a non-negative int");
        return -1;
    }
    return (int)fd;
}

PyDoc_STRVAR(append_doc,
"append(fd, event_id, data) -> (size, crc)\n\n"
"Append one event's spool record to fd (one write(2), the GIL kept unless the file system\n"
"blocks); return the record's size in bytes and the CRC-32 of its body.  Raises\n"
"UnicodeEncodeError for a non-ASCII event id or data that is not valid Unicode, and the\n"
"OSError os.write would raise (bytes before the error may have been written).");

/* An event's id and JSON as bytes to copy into its record. */
typedef struct {
    const char *id;
    Py_ssize_t id_size;
    const char *data;
    Py_ssize_t data_size;
    PyObject *owned; /* the UTF-8 copy of non-ASCII data, or NULL */
} parts_t;

/* Fill `p` from the str event_id and data; 0, or -1 with an exception set. */
static int
record_parts(PyObject *event_id, PyObject *data, parts_t *p)
{
    p->owned = NULL;
    if (!PyUnicode_Check(event_id) || !PyUnicode_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "append(): event_id and data must be str");
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(event_id) < 0 || PyUnicode_READY(data) < 0) {
        return -1;
    }
#endif
    if (!PyUnicode_IS_ASCII(event_id)) {
        PyObject *refused = PyUnicode_AsASCIIString(event_id); /* raises UnicodeEncodeError */
        Py_XDECREF(refused);
        if (refused != NULL) {
            PyErr_SetString(PyExc_ValueError, "append(): an event id must be ASCII");
        }
        return -1;
    }
    /* An ASCII str's characters are its bytes: no copy for the id, nor for ASCII data. */
    p->id = (const char *)PyUnicode_DATA(event_id);
    p->id_size = PyUnicode_GET_LENGTH(event_id);
    /* Not PyUnicode_AsUTF8AndSize for non-ASCII data: it keeps a UTF-8 copy in the str for
       its lifetime, and the event stays queued in memory. */
    if (PyUnicode_IS_ASCII(data)) {
        p->data = (const char *)PyUnicode_DATA(data);
        p->data_size = PyUnicode_GET_LENGTH(data);
    }
    else {
        p->owned = PyUnicode_AsUTF8String(data);
        if (p->owned == NULL) {
            return -1;
        }
        p->data = PyBytes_AS_STRING(p->owned);
        p->data_size = PyBytes_GET_SIZE(p->owned);
    }
    if ((size_t)p->id_size + 1 + (size_t)p->data_size > UINT32_MAX) {
        Py_CLEAR(p->owned);
        PyErr_SetString(PyExc_OverflowError, "an event of 4 GiB or more does not fit a spool record");
        return -1;
    }
    return 0;
}

/* The bytes of the record of `p`. */
static size_t
record_size(const parts_t *p)
{
    return HEADER_SIZE + (size_t)p->id_size + 1 + (size_t)p->data_size;
}

/* Build the record of `p` in `record` (record_size(p) bytes): the body first and the magic
   last, so that a record cut short (the process killed while it is copied into a mapped
   segment) never reads as one.  Returns the body's CRC-32. */
static uint32_t
build_record(char *record, const parts_t *p)
{
    size_t body = (size_t)p->id_size + 1 + (size_t)p->data_size;
    memcpy(record + HEADER_SIZE, p->id, (size_t)p->id_size);
    record[HEADER_SIZE + p->id_size] = '\n';
    memcpy(record + HEADER_SIZE + p->id_size + 1, p->data, (size_t)p->data_size);
    uint32_t crc = crc32_of((const unsigned char *)record + HEADER_SIZE, body);
    put_uint32(record + 4, (uint32_t)body);
    put_uint32(record + 8, crc);
    memcpy(record, "\x89TSR", 4);
    return crc;
}

/* Build the record of `p` and write it to fd; 0 (its CRC-32 in *crc), or -1 with an
   exception set. */
static int
write_record(int fd, const parts_t *p, uint32_t *crc)
{
    size_t size = record_size(p);
    char stack[STACK_RECORD];
    char *record = size <= sizeof stack ? stack : PyMem_Malloc(size);
    if (record == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *crc = build_record(record, p);
    int written = write_all(fd, record, size);
    if (record != stack) {
        PyMem_Free(record);
    }
    return written;
}

static PyObject *
append(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "append(fd, event_id, data) takes 3 arguments");
        return NULL;
    }
    int fd = fd_of(args[0]);
    if (fd < 0) {
        return NULL;
    }
    parts_t parts;
    if (record_parts(args[1], args[2], &parts) < 0) {
        return NULL;
    }
    uint32_t crc;
    PyObject *result = NULL;
    if (write_record(fd, &parts, &crc) == 0) {
        result = Py_BuildValue("(nk)", (Py_ssize_t)record_size(&parts), (unsigned long)crc);
    }
    Py_XDECREF(parts.owned);
    return result;
}

PyDoc_STRVAR(write_doc,
"write(fd, data) -> int\n\n"
"Write every byte of data (bytes) to fd, keeping the GIL as append() does; return the count.");

static PyObject *
write_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "write(fd, data) takes a file descriptor and bytes");
        return NULL;
    }
    int fd = fd_of(args[0]);
    if (fd < 0) {
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[1]);
    if (write_all(fd, PyBytes_AS_STRING(args[1]), (size_t)size) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(size);
}

PyDoc_STRVAR(crc32_doc, "crc32(data) -> int\n\nThe CRC-32 of data (bytes), as zlib.crc32(data).");

static PyObject *
crc32_py(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t crc = crc32_of((const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static uint32_t
get_uint32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Append the item at buf[pos:] to the lists (see scan()); its end, or 0 if there is no valid
   item there, or -1 with an exception set (memory). */
static Py_ssize_t
scan_item(const unsigned char *buf, Py_ssize_t len, Py_ssize_t pos, PyObject *records, PyObject *ends,
          PyObject *checksums, PyObject *checkpoints)
{
    Py_ssize_t body_start = pos + HEADER_SIZE;
    if (body_start > len) {
        return 0;
    }
    const unsigned char *head = buf + pos;
    uint32_t length = get_uint32(head + 4), crc = get_uint32(head + 8);
    if ((size_t)length > (size_t)(len - body_start)) {
        return 0;
    }
    Py_ssize_t end = body_start + (Py_ssize_t)length;
    const unsigned char *body = buf + body_start;
    int event = memcmp(head, "\x89TSR", 4) == 0;
    if (!event && !(memcmp(head, "\x89TSA", 4) == 0 && length == 12)) {
        return 0;
    }
    if (crc32_of(body, length) != crc) {
        return 0;
    }
    PyObject *item = NULL, *number = NULL;
    if (event) {
        const unsigned char *sep = memchr(body, '\n', length);
        if (sep == NULL || sep == body) {
            return 0;
        }
        Py_ssize_t id_size = sep - body;
        PyObject *event_id = PyUnicode_DecodeASCII((const char *)body, id_size, "strict");
        PyObject *data = event_id == NULL ? NULL
            : PyUnicode_DecodeUTF8((const char *)sep + 1, (Py_ssize_t)length - id_size - 1, "strict");
        if (data == NULL) {
            Py_XDECREF(event_id);
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        item = PyTuple_Pack(2, event_id, data);
        Py_DECREF(event_id);
        Py_DECREF(data);
        if (item == NULL || PyList_Append(records, item) < 0) {
            goto failed;
        }
        Py_DECREF(item);
        number = PyLong_FromSsize_t(end);
        if (number == NULL || PyList_Append(ends, number) < 0) {
            goto failed;
        }
        Py_DECREF(number);
        number = PyLong_FromUnsignedLong(crc);
        if (number == NULL || PyList_Append(checksums, number) < 0) {
            goto failed;
        }
        Py_DECREF(number);
        return end;
    }
    unsigned long long offset = ((unsigned long long)get_uint32(body) << 32) | get_uint32(body + 4);
    item = Py_BuildValue("(nKk)", pos, offset, (unsigned long)get_uint32(body + 8));
    if (item == NULL || PyList_Append(checkpoints, item) < 0) {
        goto failed;
    }
    Py_DECREF(item);
    return end;
failed:
    Py_XDECREF(item);
    Py_XDECREF(number);
    return -1;
}

PyDoc_STRVAR(scan_doc,
"scan(buf, pos, records, ends, checksums, checkpoints) -> int\n\n"
"Read the valid items of buf (bytes) from pos on, as the spool's Python reader does, until\n"
"the first position that holds none or the end; return that position.  Each event record\n"
"appends (event_id, data) to records, its end to ends and its CRC-32 to checksums; each\n"
"checkpoint appends (position, offset, checksum) to checkpoints.");

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan(buf, pos, records, ends, checksums, checkpoints): "
                        "buf is bytes, pos an int, the rest lists");
        return NULL;
    }
    for (int i = 2; i < 6; i++) {
        if (!PyList_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "scan(): records, ends, checksums and checkpoints are lists");
            return NULL;
        }
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    if (pos < 0) {
        PyErr_SetString(PyExc_ValueError, "scan(): pos must be >= 0");
        return NULL;
    }
    while (pos < len) {
        Py_ssize_t end = scan_item(buf, len, pos, args[2], args[3], args[4], args[5]);
        if (end < 0) {
            return NULL;
        }
        if (end == 0) {
            break;
        }
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* ---------------------------------------------------------------- Budget and Ledger */

/* Budget: the bytes a spool directory holds (`used`) and may hold (`limit`). */
typedef struct {
    PyObject_HEAD
    long long used;
    long long limit;
} BudgetObject;

static int
budget_init(BudgetObject *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"limit", "used", NULL};
    long long limit, used = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|L:Budget", names, &limit, &used)) {
        return -1;
    }
    self->limit = limit;
    self->used = used;
    return 0;
}

static PyMemberDef budget_members[] = {
    {"used", T_LONGLONG, offsetof(BudgetObject, used), 0, "Bytes held."},
    {"limit", T_LONGLONG, offsetof(BudgetObject, limit), 0, "Bytes that may be held."},
    {NULL},
};

static PyTypeObject BudgetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telemetry_sinks.delivery._append.Budget",
    .tp_basicsize = sizeof(BudgetObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Budget(limit, used=0): the bytes a spool directory holds and may hold.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)budget_init,
    .tp_members = budget_members,
};

/* Ledger: a segment's file, its size, and its records not settled yet (end offsets and
   checksums, oldest first, from index `first`): spool.Ledger in C. */
typedef struct {
    PyObject_HEAD
    int fd;
    long long size;
    long long limit;
    char *map;            /* the segment file mapped (shared), or NULL: records go by write(2) */
    size_t mapped;        /* the length of the mapping */
    long long allocated;  /* the file's length while mapped: bytes [size, allocated) are zeros */
    uint64_t *ends;
    uint32_t *sums;
    Py_ssize_t first, count, capacity;
} LedgerObject;

static int
ledger_push(LedgerObject *self, uint64_t end, uint32_t sum)
{
    if (self->count == self->capacity) {
        if (self->first >= 4096 && self->first * 2 >= self->count) {
            /* most of the arrays are settled records: move the rest to the front */
            Py_ssize_t keep = self->count - self->first;
            memmove(self->ends, self->ends + self->first, (size_t)keep * sizeof *self->ends);
            memmove(self->sums, self->sums + self->first, (size_t)keep * sizeof *self->sums);
            self->first = 0;
            self->count = keep;
        }
        else {
            Py_ssize_t capacity = self->capacity < 64 ? 64 : self->capacity * 2;
            uint64_t *ends = PyMem_Realloc(self->ends, (size_t)capacity * sizeof *ends);
            if (ends == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->ends = ends;
            uint32_t *sums = PyMem_Realloc(self->sums, (size_t)capacity * sizeof *sums);
            if (sums == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->sums = sums;
            self->capacity = capacity;
        }
    }
    self->ends[self->count] = end;
    self->sums[self->count] = sum;
    self->count++;
    return 0;
}

static void
ledger_forget(LedgerObject *self)
{
    PyMem_Free(self->ends);
    PyMem_Free(self->sums);
    self->ends = NULL;
    self->sums = NULL;
    self->first = self->count = self->capacity = 0;
}

/* A mapped segment file grows by this many bytes at a time (within its limit and the spool's
   budget), and is mapped for at least its limit up to this many bytes: the copy into the
   page cache then needs no system call for most records. */
#define MAP_CHUNK ((long long)1 << 20)
#define MAP_MOST ((long long)1 << 30)
/* What ledger_copy returns when the segment cannot be mapped after all: write(2) it. */
#define NO_MAP (-2)

static void
ledger_unmap(LedgerObject *self)
{
#ifdef HAVE_MAP
    if (self->map != NULL) {
        munmap(self->map, self->mapped);
    }
#endif
    self->map = NULL;
    self->mapped = 0;
}

/* Unmap the segment and cut its file to size (the reserved zeros); 0, or -1 with errno set
   (EPERM for an immutable file, EROFS, EIO: the file keeps its zeros, which readers skip). */
static int
ledger_cut(LedgerObject *self)
{
    long long allocated = self->allocated;
    ledger_unmap(self);
    self->allocated = 0;
    return allocated > self->size && ftruncate(self->fd, (off_t)self->size) < 0 ? -1 : 0;
}

#ifdef HAVE_MAP
static size_t
page_round(long long n)
{
    long long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        page = 4096;
    }
    return (size_t)((n + page - 1) / page * page);
}

/* Map `length` bytes (at least) of the segment file in place of the current mapping; 0, or
   -1 with errno set (the current mapping kept). */
static int
ledger_remap(LedgerObject *self, long long length)
{
    size_t bytes = page_round(length);
    char *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
    if (map == MAP_FAILED) {
        return -1;
    }
    ledger_unmap(self);
    self->map = map;
    self->mapped = bytes;
    return 0;
}

/* Extend the file to `end` with its blocks reserved (fallocate(2)); 0 or an errno value. */
static int
reserve_blocks(int fd, long long start, long long end)
{
    while (fallocate(fd, 0, (off_t)start, (off_t)(end - start)) < 0) {
        if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

/* Make the mapped file at least `need` bytes long: extend it by a chunk (at most to `cap`,
   at least to `need`) with fallocate(2), so that its blocks are reserved now and a full disk
   is an OSError here rather than a SIGBUS in the copy; map more of it if need be.  0; -1
   with OSError set (nothing written; the file may be longer, with zeros); or NO_MAP, nothing
   set, where the file system cannot reserve blocks (the segment goes back to write(2)). */
static int
ledger_reserve(LedgerObject *self, long long need, long long cap)
{
    if (need <= self->allocated) {
        return 0;
    }
    long long target = self->allocated + MAP_CHUNK;
    if (target > cap) {
        target = cap;
    }
    if (target < need) {
        target = need;
    }
    int err = reserve_blocks(self->fd, self->allocated, target);
    if ((err == ENOSPC || err == EFBIG) && target > need) {  /* room for this record, not a chunk */
        target = need;
        err = reserve_blocks(self->fd, self->allocated, target);
    }
    if (err == EOPNOTSUPP || err == ENOSYS) {
        return NO_MAP;
    }
    if (err == 0 && (size_t)target > self->mapped && ledger_remap(self, target * 2) < 0) {
        err = errno;
    }
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->allocated = target;
    return 0;
}
#endif

#ifdef HAVE_MAP
/* A copy into a mapped file that the kernel cannot back (the file cut or made immutable by
   someone else, an I/O error, a file system remounted read-only) raises SIGBUS in the copying
   thread.  The spool's handler turns that into an OSError of the append: the thread marks
   its copy (`copy_jump`), and the handler jumps back out of it.  Any other SIGBUS goes to the
   handler installed before (Python's faulthandler, or the default: the process ends). */
static __thread sigjmp_buf *volatile copy_jump;  /* volatile: the handler reads it */
static struct sigaction bus_before;
static int bus_installed;

static void
on_bus(int sig, siginfo_t *info, void *context)
{
    sigjmp_buf *jump = copy_jump;
    if (jump != NULL) {
        copy_jump = NULL;
        siglongjmp(*jump, 1);
    }
    if (bus_before.sa_flags & SA_SIGINFO) {
        bus_before.sa_sigaction(sig, info, context);
        return;
    }
    if (bus_before.sa_handler != SIG_DFL && bus_before.sa_handler != SIG_IGN) {
        bus_before.sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);  /* a fault: returning repeats it, now fatal */
    if (info == NULL || info->si_code <= 0) {
        raise(sig);  /* sent by kill(2) */
    }
}

/* Install the handler once (before the first mapping is written); 0, or -1 with errno set. */
static int
catch_bus(void)
{
    if (bus_installed) {
        return 0;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;  /* NODEFER: no mask to restore */
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &bus_before) < 0) {
        return -1;
    }
    bus_installed = 1;
    return 0;
}

/* The copy, with a SIGBUS in it turned into -1 (0: done).  No Python API: runs without the GIL. */
static int
copy_guarded(char *at, const parts_t *parts, const char *bytes, size_t n, uint32_t *crc)
{
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0) {
        return -1;
    }
    copy_jump = &jump;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);  /* marked before the first byte is copied ... */
    if (parts != NULL) {
        *crc = build_record(at, parts);
    }
    else {
        memcpy(at, bytes, n);
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);  /* ... and until the last one is */
    copy_jump = NULL;
    return 0;
}
#endif

/* Copy n bytes to the mapped segment at its size (room reserved up to `cap`); 0, or -1 with
   OSError set; or NO_MAP, nothing written, the segment unmapped and its file cut to size (a
   file system that cannot reserve blocks: write(2) from now on).  The copy releases the GIL
   while appends do (a file system that blocks). */
static int
ledger_copy(LedgerObject *self, const parts_t *parts, const char *bytes, size_t n, long long cap,
            uint32_t *crc)
{
#ifdef HAVE_MAP
    int reserved = ledger_reserve(self, self->size + (long long)n, cap);
    if (reserved == NO_MAP) {
        if (ledger_cut(self) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        return NO_MAP;
    }
    if (reserved < 0) {
        return -1;
    }
    char *at = self->map + self->size;
    int releasing = releasing_now(), faulted;
    int64_t start = releasing ? 0 : now_ns();
    if (releasing) {
        Py_BEGIN_ALLOW_THREADS
        faulted = copy_guarded(at, parts, bytes, n, crc);
        Py_END_ALLOW_THREADS
    }
    else {
        faulted = copy_guarded(at, parts, bytes, n, crc);
    }
    if (faulted) {
        /* The mapping is unusable: drop it and cut the file to its records, as release() does.
           What refuses the cut is the error to report. */
        if (ledger_cut(self) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        PyObject *error = Py_BuildValue("(is)", EIO, "the mapped spool segment cannot be written (SIGBUS: "
                                        "its file was cut by another process, or failed)");
        if (error != NULL) {
            PyErr_SetObject(PyExc_OSError, error);
            Py_DECREF(error);
        }
        return -1;
    }
    if (!releasing) {
        append_took(start);
    }
    return 0;
#else
    PyErr_SetString(PyExc_OSError, "the segment is not mapped");
    return -1;
#endif
}

static int
ledger_init(LedgerObject *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fd", "size", "limit", "ends", "sums", NULL};
    int fd = -1;
    long long size = 0, limit = INT64_MAX;
    PyObject *ends = NULL, *sums = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|iLLOO:Ledger", names, &fd, &size, &limit, &ends, &sums)) {
        return -1;
    }
    ledger_forget(self);
    ledger_unmap(self);
    self->fd = fd;
    self->size = size;
    self->allocated = 0;
    self->limit = limit;
    if (ends == NULL && sums == NULL) {
        return 0;
    }
    PyObject *e = PySequence_Fast(ends ? ends : Py_None, "Ledger(): ends must be a sequence");
    PyObject *c = e == NULL ? NULL : PySequence_Fast(sums ? sums : Py_None, "Ledger(): sums must be a sequence");
    int ok = c != NULL;
    if (ok && PySequence_Fast_GET_SIZE(e) != PySequence_Fast_GET_SIZE(c)) {
        PyErr_SetString(PyExc_ValueError, "Ledger(): as many ends as sums");
        ok = 0;
    }
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(e); i++) {
        unsigned long long end = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(e, i));
        unsigned long sum = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(c, i));
        ok = !PyErr_Occurred() && sum <= UINT32_MAX && ledger_push(self, end, (uint32_t)sum) == 0;
        if (ok == 0 && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_OverflowError, "Ledger(): a checksum is a uint32");
        }
    }
    Py_XDECREF(e);
    Py_XDECREF(c);
    return ok ? 0 : -1;
}

static void
ledger_dealloc(LedgerObject *self)
{
    ledger_forget(self);
    ledger_unmap(self);  /* the file keeps its length: release() truncates it */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
ledger_length(LedgerObject *self)
{
    return self->count - self->first;
}

static PyObject *
ledger_iter(LedgerObject *self)
{
    PyObject *list = PyList_New(self->count - self->first);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = self->first; i < self->count; i++) {
        PyObject *end = PyLong_FromUnsignedLongLong(self->ends[i]);
        if (end == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i - self->first, end);
    }
    PyObject *iterator = PyObject_GetIter(list);
    Py_DECREF(list);
    return iterator;
}

static PyObject *
ledger_empty(void)
{
    PyErr_SetString(PyExc_IndexError, "the ledger holds no unsettled record");
    return NULL;
}

static PyObject *
ledger_append(LedgerObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "append(end, checksum) takes 2 arguments");
        return NULL;
    }
    unsigned long long end = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long sum = PyLong_AsUnsignedLong(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (sum > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "append(): a checksum is a uint32");
        return NULL;
    }
    if (ledger_push(self, end, (uint32_t)sum) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
ledger_first(LedgerObject *self, PyObject *unused)
{
    if (self->first == self->count) {
        return ledger_empty();
    }
    return PyLong_FromUnsignedLongLong(self->ends[self->first]);
}

static PyObject *
ledger_pop_first(LedgerObject *self, PyObject *unused)
{
    if (self->first == self->count) {
        return ledger_empty();
    }
    Py_ssize_t i = self->first++;
    return Py_BuildValue("(Kk)", (unsigned long long)self->ends[i], (unsigned long)self->sums[i]);
}

static PyObject *
ledger_pop_run(LedgerObject *self, PyObject *ends)
{
    PyObject *fast = PySequence_Fast(ends, "pop_run(): ends must be a sequence");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t i = self->first, n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t k = 0; k < n && i < self->count; k++) {
        unsigned long long end = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, k));
        if (end == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return NULL;
        }
        if (end != self->ends[i]) {
            break;
        }
        i++;
    }
    Py_DECREF(fast);
    Py_ssize_t count = i - self->first;
    if (count == 0) {
        return Py_BuildValue("(iii)", 0, 0, 0);
    }
    self->first = i;
    return Py_BuildValue("(nKk)", count, (unsigned long long)self->ends[i - 1], (unsigned long)self->sums[i - 1]);
}

static PyObject *
ledger_clear(LedgerObject *self, PyObject *unused)
{
    ledger_forget(self);
    Py_RETURN_NONE;
}

/* Append the record of `parts` at size: copied into the mapped file, else written; 0 (its
   CRC-32 in *crc), or -1 with an exception set. */
static int
ledger_store(LedgerObject *self, const parts_t *parts, const BudgetObject *budget, uint32_t *crc)
{
    if (self->map != NULL) {
        long long room = self->size + (budget->limit - budget->used);
        int copied = ledger_copy(self, parts, NULL, record_size(parts), room < self->limit ? room : self->limit,
                                 crc);
        if (copied != NO_MAP) {
            return copied;
        }
    }
    return write_record(self->fd, parts, crc);
}

static PyObject *
ledger_write(LedgerObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[2], &BudgetType)) {
        PyErr_SetString(PyExc_TypeError, "write(event_id, data, budget) takes 2 str and a Budget");
        return NULL;
    }
    BudgetObject *budget = (BudgetObject *)args[2];
    parts_t parts;
    if (record_parts(args[0], args[1], &parts) < 0) {
        return NULL;
    }
    long long size = (long long)record_size(&parts);
    PyObject *result = NULL;
    uint32_t crc;
    if (self->size + size > self->limit || budget->used + size > budget->limit) {
        result = PyLong_FromLong(0);
    }
    else if (ledger_store(self, &parts, budget, &crc) == 0) {
        self->size += size;
        budget->used += size;
        if (ledger_push(self, (uint64_t)self->size, crc) == 0) {
            result = PyLong_FromLongLong(self->size);
        }
    }
    Py_XDECREF(parts.owned);
    return result;
}

static PyObject *
ledger_put(LedgerObject *self, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "put(data) takes bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    int done = NO_MAP;
    if (self->map != NULL) {
        done = ledger_copy(self, NULL, PyBytes_AS_STRING(data), (size_t)n, self->limit, NULL);
    }
    if (done == NO_MAP) {
        done = write_all(self->fd, PyBytes_AS_STRING(data), (size_t)n);
    }
    if (done < 0) {
        return NULL;
    }
    self->size += n;
    return PyLong_FromSsize_t(n);
}

static PyObject *
ledger_map(LedgerObject *self, PyObject *unused)
{
#ifdef HAVE_MAP
    if (self->map != NULL) {
        Py_RETURN_TRUE;
    }
    struct stat st;
    if (fstat(self->fd, &st) < 0 || !S_ISREG(st.st_mode) || (long long)st.st_size != self->size
        || catch_bus() < 0) {
        Py_RETURN_FALSE;
    }
    long long length = self->limit < MAP_MOST ? self->limit : MAP_MOST;
    if (length < self->size + MAP_CHUNK) {
        length = self->size + MAP_CHUNK;
    }
    if (ledger_remap(self, length) < 0) {
        Py_RETURN_FALSE;  /* a file system that cannot map files: the segment is written by write(2) */
    }
    self->allocated = self->size;
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *
ledger_release(LedgerObject *self, PyObject *unused)
{
    if (self->map != NULL && ledger_cut(self) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
ledger_is_mapped(LedgerObject *self, void *unused)
{
    return PyBool_FromLong(self->map != NULL);
}

static PyGetSetDef ledger_getset[] = {
    {"mapped", (getter)ledger_is_mapped, NULL, "True while the segment file is mapped (see map()).", NULL},
    {NULL},
};

static PyMethodDef ledger_methods[] = {
    {"append", (PyCFunction)(void (*)(void))ledger_append, METH_FASTCALL,
     "append(end, checksum): a record ending at end was written."},
    {"first", (PyCFunction)ledger_first, METH_NOARGS, "The end offset of the oldest unsettled record."},
    {"pop_first", (PyCFunction)ledger_pop_first, METH_NOARGS,
     "Remove the oldest unsettled record; return its (end offset, checksum)."},
    {"pop_run", (PyCFunction)ledger_pop_run, METH_O,
     "pop_run(ends): remove the oldest records while they are ends, in order; return (how many,\n"
     "end offset and checksum of the last one removed)."},
    {"clear", (PyCFunction)ledger_clear, METH_NOARGS, "Forget every unsettled record."},
    {"write", (PyCFunction)(void (*)(void))ledger_write, METH_FASTCALL,
     "write(event_id, data, budget) -> int\n\n"
     "Append the event's record to fd (as append()) if it fits under limit and the budget; return\n"
     "where it ends (0: it does not fit, nothing written).  The record is unsettled, its bytes\n"
     "counted in size and budget.used."},
    {"put", (PyCFunction)ledger_put, METH_O,
     "put(data) -> int\n\n"
     "Append data (bytes: a checkpoint, records written again) at size; size grows by its length."},
    {"map", (PyCFunction)ledger_map, METH_NOARGS,
     "map() -> bool\n\n"
     "Write the segment through a shared mapping of its file from now on (Linux): a record is\n"
     "copied into the page cache, as write(2) would put it there, without a system call.  The\n"
     "file grows a chunk at a time (reserved with posix_fallocate), so it ends in zeros until\n"
     "release().  False (nothing changed) where files cannot be mapped."},
    {"release", (PyCFunction)ledger_release, METH_NOARGS,
     "Unmap the segment and cut its file to size (after map()); later writes use write(2)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ledger_members[] = {
    {"fd", T_INT, offsetof(LedgerObject, fd), 0, "The segment's file, open for appending."},
    {"size", T_LONGLONG, offsetof(LedgerObject, size), 0, "Bytes in the segment."},
    {"limit", T_LONGLONG, offsetof(LedgerObject, limit), 0, "write() keeps size at or below this."},
    {NULL},
};

static PySequenceMethods ledger_sequence = {
    .sq_length = (lenfunc)ledger_length,
};

static PyTypeObject LedgerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telemetry_sinks.delivery._append.Ledger",
    .tp_basicsize = sizeof(LedgerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ledger(fd=-1, size=0, limit=2**63-1, ends=(), sums=()): a segment's file, size and\n"
              "unsettled records (12 bytes each); spool.Ledger in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ledger_init,
    .tp_dealloc = (destructor)ledger_dealloc,
    .tp_iter = (getiterfunc)ledger_iter,
    .tp_methods = ledger_methods,
    .tp_members = ledger_members,
    .tp_getset = ledger_getset,
    .tp_as_sequence = &ledger_sequence,
};

PyDoc_STRVAR(configure_doc,
"configure(slow_ns, again_ns, release_ns)\n\n"
"Set when writes release the GIL: after two writes within again_ns each longer than\n"
"slow_ns, for release_ns.  Forgets the slow writes seen so far.");

static PyObject *
configure(PyObject *module, PyObject *args)
{
    long long slow, again, release;
    if (!PyArg_ParseTuple(args, "LLL:configure", &slow, &again, &release)) {
        return NULL;
    }
    if (slow < 0 || again < 0 || release < 0) {
        PyErr_SetString(PyExc_ValueError, "configure(): durations must be >= 0 ns");
        return NULL;
    }
    slow_ns = slow;
    again_ns = again;
    release_ns = release;
    release_until = 0;
    last_slow = INT64_MIN / 2;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(releasing_doc, "releasing() -> bool\n\nTrue while writes release the GIL (after slow writes).");

static PyObject *
releasing(PyObject *module, PyObject *unused)
{
    return PyBool_FromLong(release_until != 0 && now_ns() < release_until);
}

static PyMethodDef methods[] = {
    {"append", (PyCFunction)(void (*)(void))append, METH_FASTCALL, append_doc},
    {"write", (PyCFunction)(void (*)(void))write_py, METH_FASTCALL, write_doc},
    {"crc32", crc32_py, METH_O, crc32_doc},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {"configure", configure, METH_VARARGS, configure_doc},
    {"releasing", releasing, METH_NOARGS, releasing_doc},
    {NULL, NULL, 0, NULL},
};

static int
use_clmul_value(void)
{
#ifdef HAVE_CLMUL
    return use_clmul;
#else
    return 0;
#endif
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "telemetry_sinks.delivery._append",
    "The spool's append in C (the record built and written in one call, keeping the GIL) and its reader's scan.",
    -1,
    methods,
};

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 "unknown"
#endif

PyMODINIT_FUNC
PyInit__append(void)
{
    crc_init();
#ifdef HAVE_CLMUL
    __builtin_cpu_init();
    use_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    /* The SHA-256 of this file when it was built (setup.py): a stale build differs from the source. */
    if (PyModule_AddStringConstant(module, "SOURCE_SHA256", SOURCE_SHA256) < 0
        || PyModule_AddIntConstant(module, "CLMUL", use_clmul_value()) < 0
        || PyType_Ready(&BudgetType) < 0 || PyModule_AddObjectRef(module, "Budget", (PyObject *)&BudgetType) < 0
        || PyType_Ready(&LedgerType) < 0 || PyModule_AddObjectRef(module, "Ledger", (PyObject *)&LedgerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
