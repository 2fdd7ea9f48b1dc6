#!/usr/bin/python3
"""make_poison.py - writes the poison corpus beside itself.

The corpus is committed; this script documents how its larger files were
made and regenerates them all. NAME.json files are POST /generate bodies;
NAME.http files are raw requests, sent byte for byte. Every one must be
answered with a 2xx or 4xx and a JSON body, on a daemon that stays alive.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = '"height":2,"width":8,"iterations":2,"seed":1'

BODIES = {
    # The heap overflow of parse_text: an empty-string open marker.
    "open_nul": '{"text":["ab"],"open":"\\u0000","height":1,"width":2}',
    "open_nul_long_rows": '{"text":["%s","%s"],"open":"\\u0000"}' % ("a" * 128, "b" * 128),
    "open_empty": '{"text":["ab"],"open":"","height":1,"width":2}',
    "open_two_chars": '{"text":["ab"],"open":"ab"}',
    "open_four_bytes": '{"text":["a\\ud83d\\ude00b"],"open":"\\ud83d\\ude00"}',
    "open_lone_surrogate": '{"text":["ab"],"open":"\\ud800"}',
    "text_nul_bytes": '{"text":["a\\u0000b\\u0000"],"height":1,"width":4}',
    "text_all_open": '{"text":["%s"]}' % ("_" * 128),
    "text_too_long_row": '{"text":["%s"]}' % ("x" * 600),
    "text_multibyte_row": '{"text":["%s"]}' % ("\\u00e9" * 200),
    "text_and_given": '{"text":["ab"],"given":[[1,2]]}',
    "text_not_strings": '{"text":[1,[2],{"a":3},null]}',
    "text_height_mismatch": '{"text":["ab","cd"],"height":5,"width":2}',
    # deadline_ms: the signed overflow of deadline * 1e6.
    "deadline_huge": '{"height":32,"width":64,"iterations":16,"deadline_ms":10000000000000}',
    "deadline_int64_max": '{%s,"deadline_ms":9223372036854775807}' % SMALL,
    "deadline_int64_min": '{%s,"deadline_ms":-9223372036854775808}' % SMALL,
    "deadline_negative": '{%s,"deadline_ms":-1}' % SMALL,
    "deadline_zero": '{%s,"deadline_ms":0}' % SMALL,
    "deadline_real": '{%s,"deadline_ms":1e300}' % SMALL,
    # Sizes and counts at and past every bound.
    "height_huge": '{"height":1000000000000,"width":8}',
    "height_negative": '{"height":-1,"width":8}',
    "height_zero": '{"height":0,"width":8}',
    "width_int32_overflow": '{"height":2,"width":2147483648}',
    "area_overflow": '{"height":65536,"width":65536,"iterations":65536}',
    "iterations_huge": '{"height":2,"width":8,"iterations":9223372036854775807}',
    "iterations_negative": '{"height":2,"width":8,"iterations":-5}',
    "iterations_zero": '{"height":2,"width":8,"iterations":0}',
    "cells_64x64x64": '{"height":64,"width":64,"iterations":64}',
    "max_work_32x128x64": '{"height":32,"width":128,"iterations":64,"seed":7}',
    "max_work_stream": '{"height":32,"width":128,"iterations":64,"seed":7,"stream":true}',
    "seed_uint64_max": '{%s}' % SMALL.replace('"seed":1', '"seed":18446744073709551615'),
    "seed_negative": '{"height":2,"width":8,"seed":-1}',
    "top_k_huge": '{%s,"top_k":9223372036854775807}' % SMALL,
    "top_k_negative": '{%s,"top_k":-2147483649}' % SMALL,
    # Numbers jansson or the float conversions may choke on.
    "temperature_huge": '{%s,"temperature":1e308}' % SMALL,
    "temperature_overflow": '{%s,"temperature":1e400}' % SMALL,
    "temperature_denormal": '{%s,"temperature":4.9e-324}' % SMALL,
    "temperature_negative": '{%s,"temperature":-1e38}' % SMALL,
    "temperature_nan_literal": '{%s,"temperature":NaN}' % SMALL,
    "temperature_infinity_literal": '{%s,"temperature":Infinity}' % SMALL,
    "temperature_string": '{%s,"temperature":"nan"}' % SMALL,
    "top_p_huge": '{%s,"top_p":3.5e38}' % SMALL,
    "top_p_negative_zero": '{%s,"top_p":-0.0}' % SMALL,
    "remask_noise_huge": '{%s,"remask_noise":1e38}' % SMALL,
    "remask_noise_negative": '{%s,"remask_noise":-1}' % SMALL,
    "order_unknown": '{%s,"order":"%s"}' % (SMALL, "x" * 4000),
    "order_nul": '{%s,"order":"margin\\u0000raster"}' % SMALL,
    "order_number": '{%s,"order":1}' % SMALL,
    "remask_one": '{%s,"remask":1}' % SMALL,
    "remask_denormal": '{%s,"remask":4.9e-324,"order":"raster"}' % SMALL,
    "height_real": '{"height":2.0,"width":8}',
    "height_exponent": '{"height":1e2,"width":8}',
    "number_10k_digits": '{"height":%s,"width":8}' % ("9" * 10000),
    "exponent_huge": '{"height":2,"width":8,"temperature":1e999999999999}',
    # given: ids past every bound, wrong shapes.
    "given_id_huge": '{"given":[[2147483648,1]]}',
    "given_id_negative": '{"given":[[-1,1]]}',
    "given_id_int64_max": '{"given":[[9223372036854775807]]}',
    "given_id_vocab": '{"given":[[257,256]]}',
    "given_real_ids": '{"given":[[1.5,2]]}',
    "given_ragged": '{"given":[[1,2,3],[1],[]]}',
    "given_empty": '{"given":[]}',
    "given_empty_rows": '{"given":[[],[]]}',
    "given_not_array": '{"given":"abc"}',
    "given_rows_objects": '{"given":[{"0":1}]}',
    # Structure: depth, size, duplicates, types.
    "deep_array": '{"model":%s1%s}' % ("[" * 10000, "]" * 10000),
    "deep_object": '{"model":%s1%s}' % ('{"a":' * 10000, "}" * 10000),
    "deep_unclosed": '{"model":%s' % ("[" * 20000),
    "huge_given_rows": '{"given":[%s]}' % ",".join(["[0]"] * 20000),
    "huge_given_row": '{"given":[[%s]]}' % ",".join(["0"] * 100000),
    "huge_text_rows": '{"text":[%s]}' % ",".join(['"a"'] * 20000),
    "given_max_side": '{"given":[%s]}' % ",".join(["[%s]" % ",".join(["null"] * 128)] * 128),
    "many_keys": '{%s}' % ",".join('"k%d":1' % i for i in range(20000)),
    "duplicate_keys": '{"height":2,"height":3,"width":8}',
    "unknown_field": '{%s,"temprature":0.5}' % SMALL,
    "model_traversal": '{%s,"model":"../../../etc/passwd"}' % SMALL,
    "model_long": '{%s,"model":"%s"}' % (SMALL, "m" * 50000),
    "model_nul": '{%s,"model":"byte_f32\\u0000x"}' % SMALL,
    "model_number": '{%s,"model":1}' % SMALL,
    "stream_string": '{%s,"stream":"yes"}' % SMALL,
    "return_text_number": '{%s,"return_text":1}' % SMALL,
    "key_with_nul": '{"height\\u0000":2,"width":8}',
    "top_level_array": "[1,2,3]",
    "top_level_null": "null",
    "top_level_string": '"%s"' % ("s" * 50000),
    "top_level_number": "-0",
    "empty_object": "{}",
    "empty_body": "",
    "whitespace_only": " \n\t\r " * 1000,
    "trailing_garbage": '{%s}garbage' % SMALL,
    "two_objects": '{%s}{%s}' % (SMALL, SMALL),
    "truncated": '{"height":2,"wid',
    "string_escape_truncated": '{"model":"\\u12',
}

RAW_BODIES = {
    "invalid_utf8": b'{"text":["\xff\xfe\xc3("],"height":1,"width":3}',
    "overlong_utf8": b'{"model":"\xc0\xaf\xe0\x80\xaf"}',
    "utf8_bom": b'\xef\xbb\xbf{"height":2,"width":8}',
    "utf16_body": '{"height":2,"width":8}'.encode("utf-16"),
    "raw_nul_in_json": b'{"height":2,\x00"width":8}',
    "raw_control_in_string": b'{"model":"a\x01b"}',
}

GEN = b'{"height":2,"width":8,"iterations":2,"seed":1}'


def post(extra=b"", body=GEN, path=b"/generate", method=b"POST", version=b"HTTP/1.1",
         ctype=b"Content-Type: application/json\r\n"):
    return (method + b" " + path + b" " + version + b"\r\nHost: heptapod\r\n" + ctype + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


RAW = {
    "get_with_body": b"GET /healthz HTTP/1.1\r\nHost: heptapod\r\nContent-Length: 5\r\n\r\nhello",
    "no_content_type": post(ctype=b""),
    "content_type_huge": post(ctype=b"Content-Type: application/json; x=" + b"a" * 4000 +
                              b"\r\n"),
    "content_type_charset": post(ctype=b"Content-Type: application/json; charset=utf-8\r\n"),
    "absolute_uri": post(path=b"http://heptapod/generate"),
    "http10_no_host": b"POST /generate HTTP/1.0\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(GEN) + GEN,
    "pipelined_two": post() + post(),
    "expect_continue": post(extra=b"Expect: 100-continue\r\n"),
    "method_unknown": post(method=b"BREW"),
    "method_get_generate": b"GET /generate HTTP/1.1\r\nHost: heptapod\r\n\r\n",
    "query_string": post(path=b"/generate?model=../../x&a=%00"),
    "dot_segments": post(path=b"/x/../generate"),
    "double_slash": post(path=b"//generate"),
    "path_invalid_utf8": b"GET /%C3%28%FF%FE HTTP/1.1\r\nHost: heptapod\r\n\r\n",
    "path_long": b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: heptapod\r\n\r\n",
    "request_id_long": post(extra=b"X-Request-Id: " + b"r" * 4000 + b"\r\n"),
    "request_id_quotes": post(extra=b'X-Request-Id: "},{"injected":1\r\n'),
    "authorization_huge": post(extra=b"Authorization: Bearer " + b"k" * 8000 + b"\r\n"),
    "many_headers": post(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(200))),
    "content_length_zero": post(body=b""),
    "chunked_valid": b"POST /generate HTTP/1.1\r\nHost: heptapod\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n%s\r\n0\r\n\r\n" % (len(GEN), GEN),
    "chunked_many_tiny": b"POST /generate HTTP/1.1\r\nHost: heptapod\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         b"".join(b"1\r\n%c\r\n" % ch for ch in GEN) + b"0\r\n\r\n",
}


def main():
    for name, body in BODIES.items():
        with open(os.path.join(HERE, name + ".json"), "wb") as f:
            f.write(body.encode("utf-8"))
    for name, body in RAW_BODIES.items():
        with open(os.path.join(HERE, name + ".json"), "wb") as f:
            f.write(body)
    for name, req in RAW.items():
        with open(os.path.join(HERE, name + ".http"), "wb") as f:
            f.write(req)


if __name__ == "__main__":
    main()
