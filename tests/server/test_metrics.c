/*
 * test_metrics.c - the Prometheus registry: the text exposition of counters,
 * gauges and histograms (cumulative buckets, +Inf, _sum, _count), label
 * escaping, number formatting, refused definitions, concurrent updates, and
 * removing a series.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"

static char *render(srv_registry *r, proto_buf *b)
{
    proto_buf_reset(b);
    assert_int_equal(srv__registry_render(r, b), 0);
    return b->data;
}

static void test_counter_and_gauge(void **state)
{
    srv_registry *r = srv__registry_create();
    proto_buf b;
    proto_buf_init(&b);
    srv_family *c = srv__family_add(r, SRV_COUNTER, "x_requests_total", "Requests.",
                                    "endpoint,status", NULL, 0);
    srv_family *g = srv__family_add(r, SRV_GAUGE, "x_depth", "Depth.", NULL, NULL, 0);
    const char *v1[] = {"/generate", "200"}, *v2[] = {"/metrics", "200"};
    srv_series *s1 = srv__series(c, v1);
    srv__metric_add(s1, 1);
    srv__metric_add(s1, 2);
    srv__metric_add(srv__series(c, v2), 1);
    /* The same labels find the same series. */
    assert_ptr_equal(srv__series(c, v1), s1);
    assert_true(srv__metric_value(s1) == 3.0);
    srv__metric_set(srv__series(g, NULL), 7.5);
    const char *want = "# HELP x_requests_total Requests.\n"
                       "# TYPE x_requests_total counter\n"
                       "x_requests_total{endpoint=\"/generate\",status=\"200\"} 3\n"
                       "x_requests_total{endpoint=\"/metrics\",status=\"200\"} 1\n"
                       "# HELP x_depth Depth.\n"
                       "# TYPE x_depth gauge\n"
                       "x_depth 7.5\n";
    assert_string_equal(render(r, &b), want);
    proto_buf_free(&b);
    srv__registry_free(r);
}

/* A removed series leaves the others in their order; the same labels then
 * make a new series from zero. */
static void test_series_remove(void **state)
{
    srv_registry *r = srv__registry_create();
    proto_buf b;
    proto_buf_init(&b);
    srv_family *g = srv__family_add(r, SRV_GAUGE, "x_state", "State.", "model,state", NULL, 0);
    const char *a[] = {"a", "ready"}, *bb[] = {"b", "ready"}, *c[] = {"c", "ready"};
    srv__metric_set(srv__series(g, a), 1);
    srv_series *sb = srv__series(g, bb);
    srv__metric_set(sb, 1);
    srv__metric_set(srv__series(g, c), 1);
    srv__series_remove(sb);
    srv__series_remove(NULL);
    assert_string_equal(render(r, &b), "# HELP x_state State.\n"
                                       "# TYPE x_state gauge\n"
                                       "x_state{model=\"a\",state=\"ready\"} 1\n"
                                       "x_state{model=\"c\",state=\"ready\"} 1\n");
    assert_true(srv__metric_value(srv__series(g, bb)) == 0.0);
    proto_buf_free(&b);
    srv__registry_free(r);
}

static void test_histogram(void **state)
{
    srv_registry *r = srv__registry_create();
    proto_buf b;
    proto_buf_init(&b);
    const double buckets[] = {0.1, 1, 10};
    srv_family *h =
        srv__family_add(r, SRV_HISTOGRAM, "x_duration_seconds", "Durations.", "model", buckets, 3);
    const char *v[] = {"m"};
    srv_series *s = srv__series(h, v);
    srv__metric_observe(s, 0.05);
    srv__metric_observe(s, 0.1); /* on the bound: counts in le="0.1" */
    srv__metric_observe(s, 5);
    srv__metric_observe(s, 100);
    const char *want = "# HELP x_duration_seconds Durations.\n"
                       "# TYPE x_duration_seconds histogram\n"
                       "x_duration_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
                       "x_duration_seconds_bucket{model=\"m\",le=\"1\"} 2\n"
                       "x_duration_seconds_bucket{model=\"m\",le=\"10\"} 3\n"
                       "x_duration_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
                       "x_duration_seconds_sum{model=\"m\"} 105.15\n"
                       "x_duration_seconds_count{model=\"m\"} 4\n";
    assert_string_equal(render(r, &b), want);
    assert_true(srv__metric_value(s) == 4.0);
    proto_buf_free(&b);
    srv__registry_free(r);
}

static void test_unlabelled_histogram(void **state)
{
    srv_registry *r = srv__registry_create();
    proto_buf b;
    proto_buf_init(&b);
    const double buckets[] = {1};
    srv_series *s =
        srv__series(srv__family_add(r, SRV_HISTOGRAM, "x_bytes", "Sizes.", NULL, buckets, 1), NULL);
    srv__metric_observe(s, 2);
    const char *want = "# HELP x_bytes Sizes.\n"
                       "# TYPE x_bytes histogram\n"
                       "x_bytes_bucket{le=\"1\"} 0\n"
                       "x_bytes_bucket{le=\"+Inf\"} 1\n"
                       "x_bytes_sum 2\n"
                       "x_bytes_count 1\n";
    assert_string_equal(render(r, &b), want);
    proto_buf_free(&b);
    srv__registry_free(r);
}

static void test_escaping(void **state)
{
    srv_registry *r = srv__registry_create();
    proto_buf b;
    proto_buf_init(&b);
    srv_family *f = srv__family_add(r, SRV_GAUGE, "x_info", "A \\ help\nline.", "path", NULL, 0);
    const char *v[] = {"a\"b\\c\nd"};
    srv__metric_set(srv__series(f, v), 1);
    const char *want = "# HELP x_info A \\\\ help\\nline.\n"
                       "# TYPE x_info gauge\n"
                       "x_info{path=\"a\\\"b\\\\c\\nd\"} 1\n";
    assert_string_equal(render(r, &b), want);
    proto_buf_free(&b);
    srv__registry_free(r);
}

static void test_format_numbers(void **state)
{
    char buf[40];
    srv__fmt_double(buf, sizeof buf, 0.005);
    assert_string_equal(buf, "0.005");
    srv__fmt_double(buf, sizeof buf, 1e-5);
    assert_string_equal(buf, "1e-05");
    srv__fmt_double(buf, sizeof buf, 123456789.0);
    assert_string_equal(buf, "123456789");
    srv__fmt_double(buf, sizeof buf, 1.0 / 0.0);
    assert_string_equal(buf, "+Inf");
    srv__fmt_double(buf, sizeof buf, -1.0 / 0.0);
    assert_string_equal(buf, "-Inf");
    srv__fmt_double(buf, sizeof buf, 0.0 / 0.0);
    assert_string_equal(buf, "NaN");
}

static void test_refused_definitions(void **state)
{
    srv_registry *r = srv__registry_create();
    const double unsorted[] = {1, 0.5};
    const double nan[] = {0.0 / 0.0};
    assert_null(srv__family_add(r, SRV_HISTOGRAM, "x_a", "h", NULL, unsorted, 2));
    assert_null(srv__family_add(r, SRV_HISTOGRAM, "x_b", "h", NULL, nan, 1));
    assert_null(srv__family_add(r, SRV_HISTOGRAM, "x_c", "h", NULL, NULL, 0));
    assert_null(srv__family_add(r, SRV_GAUGE, "x_d", "h", "a,,b", NULL, 0));
    assert_null(srv__family_add(r, SRV_GAUGE, "x_e", "h", "a,b,c,d,e,f,g,h,i,j,k,l,m", NULL, 0));
    /* A refused definition leaves nothing behind. */
    proto_buf b;
    proto_buf_init(&b);
    assert_int_equal(srv__registry_render(r, &b), 0);
    assert_true(b.len == 0);
    proto_buf_free(&b);
    srv__registry_free(r);
}

typedef struct hammer {
    srv_series *c, *h;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *x = arg;
    for (int i = 0; i < 10000; i++) {
        srv__metric_add(x->c, 1);
        srv__metric_observe(x->h, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    srv_registry *r = srv__registry_create();
    const double buckets[] = {1};
    hammer x = {
        .c = srv__series(srv__family_add(r, SRV_COUNTER, "x_total", "h", NULL, NULL, 0), NULL),
        .h = srv__series(srv__family_add(r, SRV_HISTOGRAM, "x_s", "h", NULL, buckets, 1), NULL),
    };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer_main, &x);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(srv__metric_value(x.c) == 40000.0);
    assert_true(srv__metric_value(x.h) == 40000.0);
    srv__registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),    cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_unlabelled_histogram), cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_format_numbers),       cmocka_unit_test(test_refused_definitions),
        cmocka_unit_test(test_concurrent_updates),   cmocka_unit_test(test_series_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
