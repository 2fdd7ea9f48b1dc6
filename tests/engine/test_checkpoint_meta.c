/*
 * test_checkpoint_meta.c - eng_model_load refuses checkpoints whose
 * __metadata__ breaks MODEL.md section 2, each with "PATH: fault" naming the
 * key and what is wrong with it. Checkpoints are written by ckpt_harness.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/engine/ckpt_harness.h"

static void test_meta_block(void **state)
{
    wspec s;
    w_init(&s, 1, "F32");
    s.no_meta = 1;
    EXPECT_REFUSED(&s, "missing __metadata__");
    s.no_meta = 0;
    s.meta_raw = "[\"heptapod\"]";
    EXPECT_REFUSED(&s, "__metadata__ is not an object");
    s.meta_raw = "{\"format\":\"heptapod\",\"dim\":8}";
    EXPECT_REFUSED(&s, "__metadata__ value of dim is not a string");
    s.meta_raw = NULL;
    w_set(&s, "dup", "1");
    s.key[s.n_meta] = "dup", s.val[s.n_meta++] = "2";
    EXPECT_REFUSED(&s, "duplicate __metadata__ key dup");
}

static void test_meta_format_arch(void **state)
{
    refuse_meta("format", NULL, "missing metadata format", NULL);
    refuse_meta("format", "safetensors", "format", "expected \"heptapod\"");
    refuse_meta("arch", NULL, "missing metadata arch", NULL);
    refuse_meta("arch", "heptapod-v2", "arch", "expected \"heptapod-v1\"");
}

static void test_meta_vocab_size(void **state)
{
    refuse_meta("vocab_size", NULL, "missing metadata vocab_size", NULL);
    refuse_meta("vocab_size", "1", "vocab_size", "out of range");
    refuse_meta("vocab_size", "7.0", "vocab_size", "not an integer");
    refuse_meta("vocab_size", " 7", "vocab_size", "not an integer");
    refuse_meta("vocab_size", "seven", "vocab_size", "not an integer");
}

static void test_meta_dim_heads(void **state)
{
    refuse_meta("dim", NULL, "missing metadata dim", NULL);
    refuse_meta("dim", "8.5", "dim", "not an integer");
    refuse_meta("dim", "0", "dim", "out of range");
    refuse_meta("heads", NULL, "missing metadata heads", NULL);
    refuse_meta("heads", "0", "heads", "out of range");
    refuse_meta("heads", "3", "not divisible by heads", NULL);
    refuse_meta("heads", "4", "head_dim", "not divisible by 4");
}

static void test_meta_depth(void **state)
{
    refuse_meta("depth", NULL, "missing metadata depth", NULL);
    refuse_meta("depth", "0", "depth", "out of range");
    refuse_meta("depth", "-2", "depth", "out of range");
    refuse_meta("depth", "3", "missing tensor blocks.2.",
                NULL); /* fine metadata, too few tensors */
}

static void test_meta_window(void **state)
{
    refuse_meta("window", NULL, "missing metadata window", NULL);
    refuse_meta("window", "1,2,3", "window", "3 entries, expected 1 or depth = 2");
    refuse_meta("window", "-1", "window", "out of range");
    refuse_meta("window", "1.5", "window", "not an integer or 'global'");
    refuse_meta("window", "glob", "window", "not an integer");
    refuse_meta("window", "1,", "window", "entry 1 is not an integer");
    refuse_meta("window", "", "window", "not an integer");
}

static void test_meta_dilation(void **state)
{
    refuse_meta("dilation", "0", "dilation", "out of range");
    refuse_meta("dilation", "1,2,3", "dilation", "3 entries");
    refuse_meta("dilation", "global", "dilation", "not an integer");
    refuse_meta("dilation", "1,x", "dilation", "entry 1 is not an integer");
}

static void test_meta_mlp_hidden(void **state)
{
    refuse_meta("mlp_hidden", "0", "mlp_hidden", "out of range");
    refuse_meta("mlp_hidden", "twelve", "mlp_hidden", "not an integer");
    refuse_meta("mlp_hidden", "13", "blocks.0.mlp.fc1.weight", "expected [13, 8]");
}

static void test_meta_rope_base_norm_eps(void **state)
{
    refuse_meta("rope_base", "1", "rope_base", "> 1");
    refuse_meta("rope_base", "0.5", "rope_base", "> 1");
    refuse_meta("rope_base", "abc", "rope_base", "not a number");
    refuse_meta("rope_base", "inf", "rope_base", "not a number");
    refuse_meta("rope_base", "0x10", "rope_base", "not a number");
    refuse_meta("rope_base", "1e999", "rope_base", "finite");
    refuse_meta("norm_eps", "0", "norm_eps", "> 0");
    refuse_meta("norm_eps", "-1e-5", "norm_eps", "> 0");
    refuse_meta("norm_eps", "1e-60", "norm_eps", "> 0"); /* zero as a float */
    refuse_meta("norm_eps", "", "norm_eps", "not a number");
}

static void test_meta_mask_token(void **state)
{
    refuse_meta("mask_token", NULL, "missing metadata mask_token", NULL);
    refuse_meta("mask_token", "7", "mask_token", "out of range [0, 6]");
    refuse_meta("mask_token", "-1", "mask_token", "out of range");
}

static void test_meta_tokenizer(void **state)
{
    refuse_meta("tokenizer", "bpe", "tokenizer", "not byte or none");
    refuse_meta("tokenizer", "Byte", "tokenizer", "not byte or none");
}

static void test_meta_grid_limits(void **state)
{
    refuse_meta("max_height", NULL, "missing metadata max_height", NULL);
    refuse_meta("max_height", "0", "max_height", "out of range");
    refuse_meta("max_width", NULL, "missing metadata max_width", NULL);
    refuse_meta("max_width", "-3", "max_width", "out of range");
    refuse_meta("max_width", "1e3", "max_width", "not an integer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_block),
        cmocka_unit_test(test_meta_format_arch),
        cmocka_unit_test(test_meta_vocab_size),
        cmocka_unit_test(test_meta_dim_heads),
        cmocka_unit_test(test_meta_depth),
        cmocka_unit_test(test_meta_window),
        cmocka_unit_test(test_meta_dilation),
        cmocka_unit_test(test_meta_mlp_hidden),
        cmocka_unit_test(test_meta_rope_base_norm_eps),
        cmocka_unit_test(test_meta_mask_token),
        cmocka_unit_test(test_meta_tokenizer),
        cmocka_unit_test(test_meta_grid_limits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
