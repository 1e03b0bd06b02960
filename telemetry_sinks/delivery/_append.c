/* The spool's append, in C: build an event's record and write it with write(2), keeping the GIL.

   Why: os.write releases the GIL around the system call, as it must for pipes and
   sockets that can block.  An append of a few hundred bytes into the page cache takes
   about a microsecond; while a sink's worker waits for the GIL, each release hands it
   over, and the emitting thread then waits for the worker's work on every event (the
   convoy effect).  So the append keeps the GIL, and doing the record's bytes, its
   CRC-32 and the write in one call leaves the emitting thread about a microsecond of
   work less an event than the same steps in Python.

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

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Write all of p[0:n] to fd; 0, or -1 with a Python exception set (OSError, or what a signal
   handler run on EINTR raised).  Bytes before an error may have been written. */
static int
write_all(int fd, const char *p, size_t n)
{
    int releasing = release_until != 0 && now_ns() < release_until;
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
        int64_t took = now_ns() - start;
        if (took > slow_ns) {
            if (start - last_slow < again_ns) {
                release_until = start + took + release_ns;
            }
            last_slow = start;
        }
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
    PyObject *event_id = args[1], *data = args[2];
    if (!PyUnicode_Check(event_id) || !PyUnicode_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "append(): event_id and data must be str");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(event_id) < 0 || PyUnicode_READY(data) < 0) {
        return NULL;
    }
#endif
    if (!PyUnicode_IS_ASCII(event_id)) {
        PyObject *refused = PyUnicode_AsASCIIString(event_id); /* raises UnicodeEncodeError */
        Py_XDECREF(refused);
        if (refused != NULL) {
            PyErr_SetString(PyExc_ValueError, "append(): an event id must be ASCII");
        }
        return NULL;
    }
    /* An ASCII str's characters are its bytes: no copy for the id, nor for ASCII data. */
    const char *id_chars = (const char *)PyUnicode_DATA(event_id);
    Py_ssize_t id_size = PyUnicode_GET_LENGTH(event_id);
    /* Not PyUnicode_AsUTF8AndSize for non-ASCII data: it keeps a UTF-8 copy in the str for
       its lifetime, and the event stays queued in memory. */
    PyObject *data_bytes = NULL;
    const char *data_chars;
    Py_ssize_t data_size;
    if (PyUnicode_IS_ASCII(data)) {
        data_chars = (const char *)PyUnicode_DATA(data);
        data_size = PyUnicode_GET_LENGTH(data);
    }
    else {
        data_bytes = PyUnicode_AsUTF8String(data);
        if (data_bytes == NULL) {
            return NULL;
        }
        data_chars = PyBytes_AS_STRING(data_bytes);
        data_size = PyBytes_GET_SIZE(data_bytes);
    }
    size_t body = (size_t)id_size + 1 + (size_t)data_size;
    PyObject *result = NULL;
    if (body > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "an event of 4 GiB or more does not fit a spool record");
        goto done;
    }
    size_t size = HEADER_SIZE + body;
    char stack[STACK_RECORD];
    char *record = size <= sizeof stack ? stack : PyMem_Malloc(size);
    if (record == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(record, "\x89TSR", 4);
    memcpy(record + HEADER_SIZE, id_chars, (size_t)id_size);
    record[HEADER_SIZE + id_size] = '\n';
    memcpy(record + HEADER_SIZE + id_size + 1, data_chars, (size_t)data_size);
    uint32_t crc = crc32_of((const unsigned char *)record + HEADER_SIZE, body);
    put_uint32(record + 4, (uint32_t)body);
    put_uint32(record + 8, crc);
    if (write_all(fd, record, size) == 0) {
        result = Py_BuildValue("(nk)", (Py_ssize_t)size, (unsigned long)crc);
    }
    if (record != stack) {
        PyMem_Free(record);
    }
done:
    Py_XDECREF(data_bytes);
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
        || PyModule_AddIntConstant(module, "CLMUL", use_clmul_value()) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
