/* _raysys_jpeg_window: decode only a window of a JPEG, with the pixels of a full decode.
 *
 * raysys.data.jpeg_window is the Python side: the crop window is drawn on the
 * header's dimensions and decoded here; without this module images are decoded whole.
 *
 *   header(data) -> (height, width, ok)
 *       ok: a YCbCr, RGB or grayscale JPEG, which this module decodes to RGB as a full
 *       decode does.
 *   decode_rgb(data, top, left, height, width, margin) -> bytearray
 *       the window's RGB pixels, height x width x 3. Where a restart marker follows
 *       every MCU (with_restarts), only the MCUs the window touches are decoded, as a
 *       small JPEG of their own (mcu_window). Otherwise the region decoded starts
 *       ``margin`` rows above the window and spans ``margin`` columns beyond each side
 *       (clipped to the image; libjpeg widens it to iMCU columns), and ends with the
 *       window's last row. Fancy chroma upsampling computes a decoded region's first and
 *       last row and column differently, hence the margins. ValueError for bad data,
 *       and for any libjpeg warning (corrupt data), so that the caller's full decode decides.
 *   with_restarts(data) -> bytes
 *       the JPEG losslessly rewritten with a restart marker after every MCU.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

struct error_trap {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void trap_error(j_common_ptr cinfo) {
    struct error_trap *trap = (struct error_trap *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, trap->message);
    longjmp(trap->jump, 1);
}

/* Counts warnings (as libjpeg's own handler does) without printing them. */
static void count_warning(j_common_ptr cinfo, int level) {
    if (level < 0) cinfo->err->num_warnings++;
}

static void start(struct jpeg_decompress_struct *cinfo, struct error_trap *trap, const Py_buffer *data) {
    cinfo->err = jpeg_std_error(&trap->mgr);
    trap->mgr.error_exit = trap_error;
    trap->mgr.emit_message = count_warning;
    trap->message[0] = '\0';
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, (const unsigned char *)data->buf, (unsigned long)data->len);
}

static int plain_colour(const struct jpeg_decompress_struct *cinfo) {
    return cinfo->jpeg_color_space == JCS_YCbCr || cinfo->jpeg_color_space == JCS_GRAYSCALE ||
           cinfo->jpeg_color_space == JCS_RGB;
}

static PyObject *header(PyObject *self, PyObject *args) {
    Py_buffer data;
    struct jpeg_decompress_struct cinfo;
    struct error_trap trap;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    start(&cinfo, &trap, &data);
    if (setjmp(trap.jump)) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "%s", trap.message);
        return NULL;
    }
    jpeg_read_header(&cinfo, TRUE);
    PyObject *result = Py_BuildValue("(IIO)", cinfo.image_height, cinfo.image_width,
                                     plain_colour(&cinfo) ? Py_True : Py_False);
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    return result;
}

/* -- a rectangle of whole MCUs, where a restart marker follows every MCU ---------------------- */

/* Offset of the SOF0/SOF1 marker (baseline or extended sequential Huffman), or 0. */
static size_t sequential_sof(const unsigned char *data, size_t len) {
    size_t i = 2;
    while (i + 4 <= len && data[i] == 0xFF) {
        unsigned char marker = data[i + 1];
        if (marker == 0xFF) { i++; continue; }  /* fill byte */
        if (marker == 0xC0 || marker == 0xC1) return i;
        if (marker == 0xDA || (marker >= 0xC2 && marker <= 0xCF && marker != 0xC4 && marker != 0xCC)) return 0;
        i += 2 + ((size_t)data[i + 2] << 8 | data[i + 3]);
    }
    return 0;
}

/* Where each MCU's entropy-coded data starts (count of them), and where the last one ends
 * (*end: the EOI marker); NULL unless the scan is exactly count MCUs, each after a restart marker. */
static size_t *mcu_starts(const unsigned char *data, size_t len, size_t begin, size_t count, size_t *end) {
    size_t *starts = malloc(count * sizeof *starts);
    size_t found = 1, j = begin;
    if (starts == NULL) return NULL;
    starts[0] = begin;
    while (j + 1 < len) {
        const unsigned char *hit = memchr(data + j, 0xFF, len - j - 1);
        if (hit == NULL) break;
        j = (size_t)(hit - data);
        unsigned char next = data[j + 1];
        if (next == 0x00) { j += 2; continue; }  /* a stuffed 0xFF byte */
        if (next == 0xFF) { j += 1; continue; }  /* fill before a marker */
        if (next >= 0xD0 && next <= 0xD7 && found < count) { starts[found++] = j + 2; j += 2; continue; }
        if (next == 0xD9 && found == count) { *end = j; return starts; }
        break;  /* another marker (more scans, DNL) or a different MCU count: not this layout */
    }
    free(starts);
    return NULL;
}

/* A JPEG of just the MCUs [first_col, last_col) x [first_row, last_row) (its header with the
 * new size, their data, renumbered restart markers): the same coefficients, so the same pixels
 * away from its edges. Segment k of the source spans starts[k] up to the next restart marker
 * (or end, for the last of all `total` MCUs). NULL if out of memory. */
static unsigned char *mcu_substream(const unsigned char *data, size_t sof, size_t sos_end, const size_t *starts,
                                    size_t end, size_t total, JDIMENSION mcus_per_row, JDIMENSION first_col,
                                    JDIMENSION last_col, JDIMENSION first_row, JDIMENSION last_row,
                                    JDIMENSION width, JDIMENSION height, size_t *size) {
#define SEGMENT_END(k) ((k) + 1 < total ? starts[(k) + 1] - 2 : end)
    size_t bytes = sos_end + 2;
    for (JDIMENSION row = first_row; row < last_row; row++)
        for (JDIMENSION col = first_col; col < last_col; col++) {
            size_t k = (size_t)row * mcus_per_row + col;
            bytes += SEGMENT_END(k) - starts[k] + 2;
        }
    unsigned char *out = malloc(bytes), *at = out;
    if (out == NULL) return NULL;
    memcpy(at, data, sos_end);
    at[sof + 5] = (unsigned char)(height >> 8), at[sof + 6] = (unsigned char)height;
    at[sof + 7] = (unsigned char)(width >> 8), at[sof + 8] = (unsigned char)width;
    at += sos_end;
    unsigned int restart = 0;
    for (JDIMENSION row = first_row; row < last_row; row++)
        for (JDIMENSION col = first_col; col < last_col; col++) {
            size_t k = (size_t)row * mcus_per_row + col;
            if (at != out + sos_end) {  /* a restart marker before every MCU but the first */
                *at++ = 0xFF;
                *at++ = (unsigned char)(0xD0 + (restart++ & 7));
            }
            memcpy(at, data + starts[k], SEGMENT_END(k) - starts[k]);
            at += SEGMENT_END(k) - starts[k];
        }
    *at++ = 0xFF;
    *at++ = 0xD9;
#undef SEGMENT_END
    *size = (size_t)(at - out);
    return out;
}

/* Decode `size` bytes of JPEG and copy rows [top, top + height), columns [left, left + width) of
 * it into pixels (height x width x 3). 0 on success; -1 on any error or warning. No GIL needed. */
static int copy_window(const unsigned char *buf, size_t size, JDIMENSION top, JDIMENSION left, JDIMENSION height,
                       JDIMENSION width, unsigned char *pixels) {
    struct jpeg_decompress_struct cinfo;
    struct error_trap trap;
    JSAMPROW volatile scratch = NULL;
    cinfo.err = jpeg_std_error(&trap.mgr);
    trap.mgr.error_exit = trap_error;
    trap.mgr.emit_message = count_warning;
    jpeg_create_decompress(&cinfo);
    if (setjmp(trap.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(scratch);
        return -1;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (top + height > cinfo.output_height || left + width > cinfo.output_width ||
        (scratch = malloc((size_t)cinfo.output_width * 3)) == NULL) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < top + height) {
        JDIMENSION row = cinfo.output_scanline;
        JSAMPROW target = scratch;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) longjmp(trap.jump, 1);
        if (row >= top) memcpy(pixels + (size_t)(row - top) * width * 3, scratch + (size_t)left * 3, (size_t)width * 3);
    }
    int failed = trap.mgr.num_warnings != 0;
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(scratch);
    return failed ? -1 : 0;
}

/* The window from only the MCUs it touches, where a restart marker follows every MCU (what
 * raysys's `prepare` writes): even the entropy decoding of the rest is skipped. 0 on success;
 * -1 where the layout is not that (the caller then decodes scanlines). */
static int mcu_window(const unsigned char *data, size_t len, const struct jpeg_decompress_struct *cinfo,
                      JDIMENSION top, JDIMENSION left, JDIMENSION height, JDIMENSION width, unsigned char *pixels) {
    if (cinfo->restart_interval != 1 || cinfo->progressive_mode || cinfo->arith_code ||
        cinfo->comps_in_scan != cinfo->num_components)
        return -1;
    size_t sof = sequential_sof(data, len);
    if (sof == 0) return -1;
    JDIMENSION mcu_width = cinfo->num_components == 1 ? DCTSIZE : DCTSIZE * cinfo->max_h_samp_factor;
    JDIMENSION mcu_height = cinfo->num_components == 1 ? DCTSIZE : DCTSIZE * cinfo->max_v_samp_factor;
    JDIMENSION columns = (cinfo->image_width + mcu_width - 1) / mcu_width;
    JDIMENSION rows = (cinfo->image_height + mcu_height - 1) / mcu_height;
    size_t sos_end = (size_t)(cinfo->src->next_input_byte - data), end = 0, total = (size_t)columns * rows;
    size_t *starts = mcu_starts(data, len, sos_end, total, &end);
    if (starts == NULL) return -1;
    /* Fancy upsampling computes a decoded image's first and last row and column from fewer
     * chroma samples, so those must lie outside the window: an MCU more on a side only where the
     * window's edge falls on an MCU boundary that is not the image's. */
    JDIMENSION first_col = left / mcu_width, first_row = top / mcu_height;
    JDIMENSION last_col = (left + width - 1) / mcu_width + 1, last_row = (top + height - 1) / mcu_height + 1;
    first_col -= first_col > 0 && left % mcu_width == 0;
    first_row -= first_row > 0 && top % mcu_height == 0;
    last_col += last_col < columns && (left + width) % mcu_width == 0;
    last_row += last_row < rows && (top + height) % mcu_height == 0;
    JDIMENSION right = last_col * mcu_width < cinfo->image_width ? last_col * mcu_width : cinfo->image_width;
    /* libjpeg upsamples a component only two samples wide by replication, not fancily: a
     * narrow last MCU column alone must not become such an image. */
    if (right - first_col * mcu_width <= 2 * (JDIMENSION)cinfo->max_h_samp_factor && first_col > 0) first_col--;
    JDIMENSION x0 = first_col * mcu_width, y0 = first_row * mcu_height;
    JDIMENSION sub_width = right - x0;
    JDIMENSION sub_height = (last_row * mcu_height < cinfo->image_height ? last_row * mcu_height : cinfo->image_height) - y0;
    size_t size = 0;
    unsigned char *sub = mcu_substream(data, sof, sos_end, starts, end, total, columns, first_col, last_col,
                                       first_row, last_row, sub_width, sub_height, &size);
    free(starts);
    if (sub == NULL) return -1;
    int result = copy_window(sub, size, top - y0, left - x0, height, width, pixels);
    free(sub);
    return result;
}

static PyObject *decode_rgb(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int top, left, height, width, margin;
    struct jpeg_decompress_struct cinfo;
    struct error_trap trap;
    PyObject *volatile out = NULL;
    JSAMPROW volatile scratch = NULL;
    PyThreadState *volatile released = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*IIIII", &data, &top, &left, &height, &width, &margin)) return NULL;
    start(&cinfo, &trap, &data);
    if (setjmp(trap.jump)) {
        if (released) PyEval_RestoreThread(released);
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        free(scratch);
        Py_XDECREF(out);
        PyErr_Format(PyExc_ValueError, "%s", trap.message);
        return NULL;
    }
    jpeg_read_header(&cinfo, TRUE);
    if (!plain_colour(&cinfo) || height == 0 || width == 0 || top + height > cinfo.image_height ||
        left + width > cinfo.image_width) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "window outside the image, or not a YCbCr/grayscale/RGB JPEG");
        return NULL;
    }
    cinfo.out_color_space = JCS_RGB;
    out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((size_t)width * 3 * height));
    if (out == NULL) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *pixels = (unsigned char *)PyByteArray_AS_STRING(out);
    int done;
    Py_BEGIN_ALLOW_THREADS
    done = mcu_window((const unsigned char *)data.buf, (size_t)data.len, &cinfo, top, left, height, width, pixels) == 0;
    Py_END_ALLOW_THREADS
    if (done) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return out;
    }
    jpeg_start_decompress(&cinfo);
    /* The decoded region: the window widened by the margin (clipped), then to iMCU columns by libjpeg. */
    JDIMENSION first_row = top > margin ? top - margin : 0;
    JDIMENSION region_left = left > margin ? left - margin : 0;
    JDIMENSION right = left + width + margin < cinfo.output_width ? left + width + margin : cinfo.output_width;
    JDIMENSION region_width = right - region_left;
    if (region_width < cinfo.output_width) jpeg_crop_scanline(&cinfo, &region_left, &region_width);
    scratch = malloc((size_t)region_width * 3);
    if (scratch == NULL) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    size_t row_bytes = (size_t)width * 3, offset = (size_t)(left - region_left) * 3;
    released = PyEval_SaveThread();  /* the decode itself runs without the GIL */
    if (first_row > 0 && jpeg_skip_scanlines(&cinfo, first_row) != first_row) {
        snprintf(trap.message, sizeof trap.message, "cannot skip %u rows", first_row);
        longjmp(trap.jump, 1);
    }
    while (cinfo.output_scanline < top + height) {
        JDIMENSION row = cinfo.output_scanline;
        JSAMPROW target = scratch;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) {
            snprintf(trap.message, sizeof trap.message, "the image ends before row %u", row);
            longjmp(trap.jump, 1);
        }
        if (row >= top) memcpy(pixels + row_bytes * (row - top), scratch + offset, row_bytes);
    }
    jpeg_abort_decompress(&cinfo);
    PyEval_RestoreThread(released);
    released = NULL;
    free(scratch);
    scratch = NULL;
    if (trap.mgr.num_warnings) {  /* corrupt data: the caller decodes it whole, as before */
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "libjpeg warned while decoding");
        return NULL;
    }
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    return out;
}

/* The same JPEG, losslessly rewritten with a restart marker after every MCU: the same DCT
 * coefficients and quantisation tables (so the same pixels), optimised Huffman tables, a
 * sequential scan; APP1-APP13, APP15 and COM markers are kept (libjpeg writes JFIF/Adobe itself). */
static PyObject *with_restarts(PyObject *self, PyObject *args) {
    Py_buffer data;
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    struct error_trap trap;
    unsigned char *volatile written = NULL;
    unsigned long size = 0;
    int volatile have_dst = 0;
    PyThreadState *volatile released = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    start(&src, &trap, &data);
    if (setjmp(trap.jump)) {
        if (released) PyEval_RestoreThread(released);
        if (have_dst) jpeg_destroy_compress(&dst);
        jpeg_destroy_decompress(&src);
        PyBuffer_Release(&data);
        free(written);
        PyErr_Format(PyExc_ValueError, "%s", trap.message);
        return NULL;
    }
    jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
    for (int app = 1; app < 16; app++)
        if (app != 14) jpeg_save_markers(&src, JPEG_APP0 + app, 0xFFFF);
    jpeg_read_header(&src, TRUE);
    if (!plain_colour(&src)) {
        snprintf(trap.message, sizeof trap.message, "not a YCbCr, RGB or grayscale JPEG");
        longjmp(trap.jump, 1);
    }
    released = PyEval_SaveThread();
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    dst.err = &trap.mgr;
    jpeg_create_compress(&dst);
    have_dst = 1;
    jpeg_mem_dest(&dst, (unsigned char **)&written, &size);
    jpeg_copy_critical_parameters(&src, &dst);
    dst.restart_interval = 1;
    dst.optimize_coding = TRUE;
    jpeg_write_coefficients(&dst, coefficients);
    for (jpeg_saved_marker_ptr marker = src.marker_list; marker != NULL; marker = marker->next)
        jpeg_write_marker(&dst, marker->marker, marker->data, marker->data_length);
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&src);
    PyEval_RestoreThread(released);
    released = NULL;
    PyObject *result = NULL;
    if (trap.mgr.num_warnings)
        PyErr_SetString(PyExc_ValueError, "libjpeg warned while reading the image");
    else
        result = PyBytes_FromStringAndSize((const char *)written, (Py_ssize_t)size);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    PyBuffer_Release(&data);
    free(written);
    return result;
}

static PyMethodDef methods[] = {
    {"header", header, METH_VARARGS, "(height, width, ok) of a JPEG's header"},
    {"with_restarts", with_restarts, METH_VARARGS, "the JPEG, losslessly rewritten with a restart marker after every MCU"},
    {"decode_rgb", decode_rgb, METH_VARARGS, "a window's RGB pixels (height x width x 3), decoded with a margin around it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_raysys_jpeg_window", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__raysys_jpeg_window(void) { return PyModule_Create(&module); }
