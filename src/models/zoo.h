/* zoo.h - the model zoo: a name -> a builder that composes layers. */
#ifndef LK_ZOO_H
#define LK_ZOO_H

#include "../core/layers.h"
#include "../core/model.h"

typedef struct {
    const char *name;
    const char *summary;
    lk_loss_kind loss;
} lk_zoo_entry;

/* Adds the named model's layers to m (created for the dataset's sample shape).
 * nclasses sizes the classifier head. Unknown names list the known ones. */
lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses);
const lk_zoo_entry *lk_zoo_find(const char *name);
int lk_zoo_count(void);
const lk_zoo_entry *lk_zoo_at(int i);

#endif
