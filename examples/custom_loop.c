/* custom_loop.c - a data-parallel training loop of your own on lockstep's public API.
 *
 * Each rank builds the same model (a spec written here; the same seed gives every rank the
 * same weights), takes its slice of every global batch, runs forward and backward,
 * all-reduces the gradients and steps: synchronous data parallelism, by hand. It then
 * measures test accuracy and saves a checkpoint directory that `lockstep eval`, `lockstep
 * train --resume` and PyTorch read.
 *
 *   cc custom_loop.c $(pkg-config --cflags --libs lockstep) -o custom_loop
 *   mpirun -n 2 ./custom_loop fashion-mnist 800 ckpt     (or one process: ./custom_loop)
 */
#include <lockstep/lockstep.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                               \
    do {                                                                          \
        if ((st = (expr)) != LK_OK) {                                             \
            fprintf(stderr, "custom_loop: error: %s\n", lk_error_message());      \
            goto done;                                                            \
        }                                                                         \
    } while (0)

static const char *SPEC = "{\"name\": \"example-mlp\", \"summary\": \"examples/custom_loop.c's model\", "
                          "\"layers\": [{\"type\": \"flatten\"}, {\"type\": \"linear\", \"out\": 64}, "
                          "{\"type\": \"relu\"}, {\"type\": \"linear\", \"out\": \"classes\"}]}";

/* Test accuracy: the arg-max of each sample's outputs against its label. */
static lk_status accuracy(lk_model *m, const lk_dataset *d, int batch, double *acc)
{
    lk_device *dev = m->dev;
    const int C = d->nclasses;
    float *x = malloc((size_t)batch * lk_dataset_sample_numel(d) * sizeof *x), *out = malloc((size_t)batch * C * sizeof *out);
    int32_t *y = malloc((size_t)batch * sizeof *y), *idx = malloc((size_t)batch * sizeof *idx);
    long right = 0;
    lk_status st = x && out && y && idx ? LK_OK : LK_ERR_NOMEM;
    for (int lo = 0; st == LK_OK && lo < d->n; lo += batch) {
        const int n = d->n - lo < batch ? d->n - lo : batch;
        for (int i = 0; i < n; i++) idx[i] = lo + i;
        lk_dataset_gather(d, idx, n, x, y);
        lk_copy_to_device(dev, lk_model_input(m), x, (size_t)n * lk_dataset_sample_numel(d) * sizeof *x);
        lk_tensor o;
        st = lk_model_forward(m, n, 0, 0, &o);
        if (st != LK_OK) break;
        lk_copy_to_host(dev, out, o.data, (size_t)n * C * sizeof *out);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < C; k++) best = out[(size_t)i * C + k] > out[(size_t)i * C + best] ? k : best;
            right += best == y[i];
        }
    }
    *acc = (double)right / d->n;
    free(x), free(out), free(y), free(idx);
    return st;
}

int main(int argc, char **argv)
{
    lk_comm *comm = NULL;
    lk_device *dev = NULL;
    lk_spec *spec = NULL;
    lk_model *m = NULL;
    lk_optim *opt = NULL;
    lk_dataset train, test;
    lk_sampler smp;
    memset(&train, 0, sizeof train), memset(&test, 0, sizeof test), memset(&smp, 0, sizeof smp);
    float *x = NULL, *loss = NULL;
    int32_t *y = NULL, *idx = NULL, *labels = NULL;
    lk_status st;
    const int B = 32; /* samples per rank per step */
    CHECK(lk_comm_open(&comm, "auto", &argc, &argv)); /* MPI when launched by mpirun */
    const char *data = argc > 1 ? argv[1] : "fashion-mnist", *save = argc > 3 ? argv[3] : NULL;
    const long steps = argc > 2 ? atol(argv[2]) : 300;
    if (steps < 1) CHECK(LK_ERR(LK_ERR_ARG, "steps must be at least 1, not '%s'", argv[2]));
    CHECK(lk_data_open(data, "train", 0, &train));
    CHECK(lk_data_open(data, "test", 0, &test));
    CHECK(lk_device_open(&dev, "cpu", 1));

    CHECK(lk_spec_parse(SPEC, "custom_loop.c", &spec));
    CHECK(lk_model_create(&m, dev, &train.sample));
    CHECK(lk_spec_build(spec, m, train.nclasses, NULL));
    CHECK(lk_model_build(m, B));
    CHECK(lk_model_init(m, LK_INIT_DEFAULT, 7)); /* the same seed: the same weights on every rank */
    lk_optim_config oc = lk_optim_defaults(LK_OPT_MOMENTUM);
    oc.lr = 0.05f;
    CHECK(lk_optim_create(&opt, dev, &oc, m->nparams));
    CHECK(lk_sampler_init(&smp, train.n, B, comm->rank, comm->world, 7, 1));

    const size_t per = lk_dataset_sample_numel(&train);
    x = malloc((size_t)B * per * sizeof *x);
    y = malloc((size_t)B * sizeof *y);
    idx = malloc((size_t)B * sizeof *idx);
    labels = lk_dev_alloc(dev, (size_t)B * sizeof *labels);
    loss = lk_dev_alloc(dev, sizeof *loss);
    if (!x || !y || !idx || !labels || !loss) CHECK(LK_ERR(LK_ERR_NOMEM, "out of memory"));
    for (long step = 0; step < steps; step++) {
        const int in_epoch = (int)(step % smp.steps);
        if (!in_epoch) lk_sampler_set_epoch(&smp, step / smp.steps);
        const int n = lk_sampler_batch(&smp, in_epoch, idx), global = lk_sampler_global_count(&smp, in_epoch);
        lk_dataset_gather(&train, idx, n, x, y);
        lk_copy_to_device(dev, lk_model_input(m), x, (size_t)n * per * sizeof *x);
        lk_copy_to_device(dev, labels, y, (size_t)n * sizeof *y);
        lk_tensor out;
        CHECK(lk_model_forward(m, n, 1, step, &out));
        /* the mean over the global batch: this rank's mean weighted n / global, summed below */
        const lk_loss_args la = {.out = out.data, .labels = labels, .batch = n, .features = train.nclasses};
        CHECK(lk_loss(dev, LK_LOSS_XENT, &la, loss, m->dout, (float)n / (float)global));
        lk_model_zero_grad(m);
        CHECK(lk_model_backward(m, n, step));
        CHECK(lk_comm_allreduce(comm, m->grads, m->nparams, LK_REDUCE_SUM));
        CHECK(lk_optim_step(opt, m->params, m->grads, 1.0f));
        if (comm->rank == 0 && (step + 1) % 100 == 0)
            printf("step %ld: loss %.4f (rank 0's batch)\n", step + 1, (double)lk_read_scalar(dev, loss));
    }
    double acc;
    CHECK(accuracy(m, &test, B, &acc));
    if (comm->rank == 0)
        printf("example-mlp: %ld steps of %d x %d ranks, test accuracy %.4f\n", steps, B, comm->world, acc);
    if (save) { /* a checkpoint directory lockstep's commands read (the spec goes with it) */
        lk_run_config rc;
        memset(&rc, 0, sizeof rc);
        snprintf(rc.model, sizeof rc.model, "%s", lk_spec_name(spec));
        snprintf(rc.data, sizeof rc.data, "%s", data);
        rc.in_shape = train.sample, rc.nclasses = train.nclasses, rc.step = steps, rc.seed = 7;
        rc.batch = B, rc.world = comm->world, rc.accum = 1, rc.train_samples = train.n, rc.optim = oc;
        rc.spec = spec;
        CHECK(lk_ckptdir_save(save, &rc, m, opt, comm->rank == 0, NULL, NULL));
    }
done:
    lk_dev_free(dev, labels);
    lk_dev_free(dev, loss);
    free(x), free(y), free(idx);
    lk_sampler_free(&smp);
    lk_optim_destroy(opt);
    lk_model_destroy(m);
    lk_spec_free(spec);
    lk_device_close(dev);
    lk_dataset_free(&train);
    lk_dataset_free(&test);
    if (st != LK_OK) lk_comm_abort(comm, 1); /* every rank stops */
    lk_comm_close(comm);
    return st == LK_OK ? 0 : 1;
}
