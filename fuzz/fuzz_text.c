/*
 * fuzz_text.c - libFuzzer driver for text rows, both ways.
 *
 * Input: one control byte, then the payload. Bit 0 of the control byte picks
 * the direction, bits 1-3 the open character (from `opens` below), bits 4-5
 * the mask id.
 *
 *   out (bit 0 clear): the payload is a row of token ids - each byte one id,
 *     except 0xFE k, which is specials[k]: ids above 255, negative ones, the
 *     bytes 0xFE/0xFF themselves, the mask. proto_render_text_row must give
 *     one valid JSON string of valid UTF-8 that decodes to exactly what the
 *     documented rule gives, computed here by a reference that decodes code
 *     point values (fuzz/oracle.h): a valid shortest-form sequence of k byte
 *     cells is that character, a mask cell is the open character, any other
 *     cell one U+FFFD.
 *   in (bit 0 set): the payload is the bytes of one text row. Valid UTF-8 is
 *     sent as {"text": [row], "open": open} through proto_parse_generate and
 *     proto_validate_generate (a byte model wide enough for any row): a
 *     control character as `open` is refused naming it; otherwise the row is
 *     accepted, has one cell per byte except one per open character, and
 *     rendered back it round-trips to the same bytes. Invalid UTF-8 can only
 *     be sent raw inside the JSON string, and must be refused as invalid JSON.
 *
 * `make fuzz` builds and runs it with fuzz/text.dict on a copy of fuzz/corpus/text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/oracle.h"
#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Open characters: ordinary ones, JSON's own, multi-byte, U+FFFD; the last
 * three are controls that a request may not use (rendering copes anyway). */
static const char *const opens[8] = {"_",    "\"", "\\",      "\xC2\xB7", "\xF0\x9F\x98\x80",
                                     "\x01", "",   "\xC2\x85"};
static const int n_good_opens = 5;
static const int32_t masks[4] = {256, 'z', 0xFE, -7};
static const int32_t specials[8] = {0xFE, 0xFF, 256, 257, -1, INT32_MIN, INT32_MAX, 1000};

#define FFFD "\xEF\xBF\xBD"

/* The documented rendering of a row, as raw UTF-8 bytes (not JSON). */
static void reference_row(proto_buf *out, const int32_t *t, int n, int32_t mask, const char *open)
{
    uint32_t cp;
    size_t ol = strlen(open);
    for (int i = 0; i < n;) {
        if (t[i] == mask) {
            int one = ol > 0 && fz_utf8_char((const unsigned char *)open, ol, &cp) == (int)ol;
            proto_buf_append(out, one ? open : FFFD, one ? ol : 3);
            i++;
            continue;
        }
        unsigned char seq[4] = {0};
        int m = 0;
        while (m < 4 && i + m < n && t[i + m] != mask && t[i + m] >= 0 && t[i + m] <= 255) {
            seq[m] = (unsigned char)t[i + m];
            m++;
        }
        int len = fz_utf8_char(seq, (size_t)m, &cp);
        if (len > 0) {
            proto_buf_append(out, seq, (size_t)len);
            i += len;
        } else {
            proto_buf_append(out, FFFD, 3);
            i++;
        }
    }
}

/* Decodes a rendered JSON string and returns it (caller decrefs). */
static json_t *decode_row(const proto_buf *b)
{
    FZ_CHECK(b->len >= 2 && b->data[0] == '"' && b->data[b->len - 1] == '"', "not a JSON string");
    return fz_json(b->data, b->len, JSON_STRING);
}

static void tokens_out(const uint8_t *p, size_t n, int32_t mask, const char *open)
{
    int32_t *t = malloc((n ? n : 1) * sizeof *t);
    FZ_CHECK(t, "out of memory");
    int cells = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == 0xFE && i + 1 < n)
            t[cells++] = specials[p[++i] % 8];
        else
            t[cells++] = p[i];
    proto_buf b = {0}, want = {0};
    FZ_CHECK(proto_render_text_row(&b, t, cells, mask, open) == 0, "render failed");
    json_t *v = decode_row(&b);
    reference_row(&want, t, cells, mask, open);
    FZ_CHECK(json_string_length(v) == want.len &&
                 (want.len == 0 || !memcmp(json_string_value(v), want.data, want.len)),
             "row decodes to %zu bytes, the rule gives %zu", json_string_length(v), want.len);
    /* one code point per cell, except one for each valid multi-byte sequence */
    FZ_CHECK(fz_utf8_count(want.data ? want.data : "", want.len) <= (size_t)cells, "too many");
    json_decref(v);
    proto_buf_free(&b);
    proto_buf_free(&want);
    free(t);
}

/* A byte model as wide as any row this driver can send. */
static const int windows[1] = {ENG_WINDOW_GLOBAL};
static const int dilations[1] = {1};
static const eng_hparams wide = {.vocab_size = 257,
                                 .dim = 16,
                                 .depth = 1,
                                 .heads = 1,
                                 .head_dim = 16,
                                 .mlp_hidden = 64,
                                 .max_height = 1,
                                 .max_width = PROTO_MAX_SIDE,
                                 .mask_token = 256,
                                 .tokenizer = ENG_TOKENIZER_BYTE,
                                 .rope_base = 10000,
                                 .norm_eps = 1e-5f,
                                 .window = windows,
                                 .dilation = dilations};
static const proto_limits lim = {.max_iterations = 1};

/* {"text":["<row as is>"]}: bytes that are not UTF-8 cannot be escaped in JSON. */
static void raw_row_refused(const uint8_t *p, size_t n)
{
    proto_buf body = {0};
    proto_buf_puts(&body, "{\"text\":[\"");
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') proto_buf_append(&body, "\\", 1);
        if (p[i] < 0x20)
            proto_buf_printf(&body, "\\u%04x", p[i]);
        else
            proto_buf_append(&body, &p[i], 1);
    }
    proto_buf_puts(&body, "\"]}");
    proto_request req;
    proto_error err;
    proto_err e = proto_parse_generate(body.data, body.len, &req, &err);
    FZ_CHECK(e == PROTO_E_INVALID_JSON, "a row of invalid UTF-8 got %s", proto_err_code(e));
    proto_request_free(&req);
    proto_buf_free(&body);
}

static void text_in(const uint8_t *p, size_t n, int open_index)
{
    const char *open = opens[open_index];
    if (n > PROTO_MAX_SIDE) return; /* wider than any model: refused by design */
    json_t *row = json_stringn((const char *)p, n);
    FZ_CHECK(!row == !fz_utf8_valid((const char *)p, n),
             "jansson and the oracle disagree on UTF-8");
    if (!row) {
        raw_row_refused(p, n);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "text", json_pack("[o]", row));
    json_object_set_new(o, "open", json_string(open));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    FZ_CHECK(body, "out of memory");

    proto_request req;
    proto_error err;
    proto_err e = proto_parse_generate(body, strlen(body), &req, &err);
    if (open_index >= n_good_opens) {
        FZ_CHECK(e == PROTO_E_OUT_OF_RANGE && !strcmp(err.field, "open"),
                 "open '%s' got %s field '%s'", open, proto_err_code(e), err.field);
    } else if (n == 0) {
        if (!e) e = proto_validate_generate(&req, &wide, &lim, &err);
        FZ_CHECK(e == PROTO_E_INVALID_FIELD, "an empty row got %s", proto_err_code(e));
    } else {
        FZ_CHECK(!e, "parse refused a valid row: %s", err.message);
        e = proto_validate_generate(&req, &wide, &lim, &err);
        FZ_CHECK(!e, "validate refused a valid row: %s", err.message);
        size_t ol = strlen(open), opened = 0;
        for (int i = 0; i < req.width; i++)
            opened += req.given[i] == ENG_OPEN;
        FZ_CHECK((size_t)req.width == n - opened * (ol - 1), "%d cells for %zu bytes, %zu open",
                 req.width, n, opened);
        if (!memmem(p, n, open, ol))
            for (int i = 0; i < req.width; i++)
                FZ_CHECK(req.given[i] == p[i], "cell %d is %d, byte %d", i, req.given[i], p[i]);
        proto_buf b = {0};
        FZ_CHECK(!proto_render_text_row(&b, req.given, req.width, ENG_OPEN, req.open_char),
                 "render failed");
        json_t *v = decode_row(&b);
        FZ_CHECK(json_string_length(v) == n && !memcmp(json_string_value(v), p, n),
                 "row did not round-trip");
        json_decref(v);
        proto_buf_free(&b);
    }
    proto_request_free(&req);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    int open = (data[0] >> 1) & 7;
    if (data[0] & 1)
        text_in(data + 1, size - 1, open);
    else
        tokens_out(data + 1, size - 1, masks[(data[0] >> 4) & 3], opens[open]);
    return 0;
}
