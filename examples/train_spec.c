/* train_spec.c - lockstep's data-parallel trainer (what `lockstep train` runs) from a program:
 * a model spec given as text, Fashion-MNIST, N ranks under mpirun, a checkpoint.
 *
 *   cc train_spec.c $(pkg-config --cflags --libs lockstep) -o train_spec
 *   mpirun -n 2 ./train_spec fashion-mnist 200 ckpt
 */
#include <lockstep/lockstep.h>

#include <stdio.h>
#include <stdlib.h>

static const char *SPEC = "{\"name\": \"example-cnn\", \"layers\": ["
                          "{\"type\": \"conv2d\", \"out\": 8, \"kernel\": 3, \"padding\": 1}, {\"type\": \"relu\"},"
                          "{\"type\": \"maxpool2d\", \"kernel\": 2}, {\"type\": \"flatten\"},"
                          "{\"type\": \"linear\", \"out\": \"classes\"}]}";

int main(int argc, char **argv)
{
    lk_comm *comm = NULL;
    lk_spec *spec = NULL;
    lk_status st = lk_comm_open(&comm, "auto", &argc, &argv);
    if (st == LK_OK) st = lk_spec_parse(SPEC, "train_spec.c", &spec);
    lk_train_result res;
    if (st == LK_OK) {
        lk_train_opts o = lk_train_defaults();
        o.spec = spec; /* (or o.model = "cnn", or o.model_file = "net.json") */
        o.data = argc > 1 ? argv[1] : "fashion-mnist";
        o.steps = argc > 2 ? atol(argv[2]) : 200;
        o.save_dir = argc > 3 ? argv[3] : NULL;
        o.batch = 32;
        o.optim.lr = 0.05f;
        o.threads = 1;
        o.val_limit = 2000;
        o.progress = 0;
        o.quiet = 1;
        o.comm = comm;
        st = lk_train(&o, &res);
    }
    if (st == LK_OK && comm->rank == 0)
        printf("example-cnn: %ld steps on %d rank%s, validation accuracy %.4f, %.0f samples/s\n", res.steps,
               comm->world, comm->world == 1 ? "" : "s", res.val_acc, res.samples_per_s);
    if (st != LK_OK) {
        fprintf(stderr, "train_spec: error: %s\n", lk_error_message());
        lk_comm_abort(comm, 1);
    }
    lk_spec_free(spec);
    lk_comm_close(comm);
    return st == LK_OK ? 0 : 1;
}
