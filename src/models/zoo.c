/* zoo.c - the built-in models: specs (src/models/specs/NAME.json, compiled in), layer for
 * layer the PyTorch nn.Sequential definitions of bench/torch_ref.py, so parameter names
 * ("1.weight") line up. */
#include "zoo.h"

#include "zoo_rows.h"

int lk_zoo_count(void) { return lk_zoo_nrows; }
const char *lk_zoo_name(int i) { return i >= 0 && i < lk_zoo_nrows ? lk_zoo_rows[i].name : NULL; }
const char *lk_zoo_text(int i) { return i >= 0 && i < lk_zoo_nrows ? lk_zoo_rows[i].text : NULL; }

lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses, const lk_arch *arch)
{
    lk_spec *s;
    LK_CHECK(lk_spec_builtin(name, &s));
    lk_status st = lk_spec_build(s, m, nclasses, arch);
    lk_spec_free(s);
    return st;
}

lk_status lk_arch_for(const char *model, const lk_arch *given, lk_arch *out)
{
    lk_spec *s;
    LK_CHECK(lk_spec_builtin(model, &s));
    lk_status st = lk_spec_arch(s, given, out);
    lk_spec_free(s);
    return st;
}

lk_status lk_zoo_set_precision(lk_model *m, const lk_zoo_entry *z, lk_dtype precision, const lk_round *r)
{
    LK_CHECK(lk_model_set_precision(m, precision, r));
    return z->loss == LK_LOSS_XENT && !m->dev->bf16_emulated ? lk_model_set_output_bf16(m) : LK_OK;
}
