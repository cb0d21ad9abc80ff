/* load_aug.c — draws one sample's crop box and flip, with torchvision 0.14's semantics:
 *   RANDOM_RESIZED: RandomResizedCrop.get_params (10 attempts, then the centered fallback);
 *   CENTER:         Resize(int(out_h / 0.875)) then CenterCrop((out_h, out_w)), as a box in the
 *                   source image;
 *   NONE:           the whole image.
 * Every path consumes a fixed number of draws from the sample's generator (22 for the random crop,
 * 0 otherwise, then 1 for the flip), so the flip does not depend on which attempt succeeded. */
#include "load_internal.h"

#include <math.h>

#define RRC_ATTEMPTS 10
#define RRC_DRAWS    (2 * RRC_ATTEMPTS + 2)

/* Python's round(): half to even (the default rounding mode). */
static double round_even(double v) {
    return nearbyint(v);
}

/* torch.randint(0, n + 1): an integer in [0, n]. */
static double randint_incl(sp__rng *rng, double n) {
    double r = floor(sp__rng_uniform(rng) * (n + 1.0));
    return r > n ? n : r;
}

static void random_resized(const sp_loader_opts *opts, double W, double H, sp__rng *rng,
                           sp__aug *out) {
    double smin = opts->scale_min, smax = opts->scale_max;
    if (!(smin > 0 || smax > 0) || !isfinite(smin) || !isfinite(smax)) {
        smin = 0.08;
        smax = 1.0;
    }
    double rmin = opts->ratio_min, rmax = opts->ratio_max;
    if (!(rmin > 0 && rmax > 0) || !isfinite(rmin) || !isfinite(rmax)) {
        rmin = 3.0 / 4.0;
        rmax = 4.0 / 3.0;
    }
    double lmin = log(rmin), lmax = log(rmax);
    double area = W * H;
    int draws = 0;
    for (int attempt = 0; attempt < RRC_ATTEMPTS; attempt++) {
        double target = area * (smin + (smax - smin) * sp__rng_uniform(rng));
        double aspect = exp(lmin + (lmax - lmin) * sp__rng_uniform(rng));
        draws += 2;
        double w = round_even(sqrt(target * aspect));
        double h = round_even(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            out->y = randint_incl(rng, H - h);
            out->x = randint_incl(rng, W - w);
            out->w = w;
            out->h = h;
            for (draws += 2; draws < RRC_DRAWS; draws++)
                (void)sp__rng_next(rng);
            return;
        }
    }
    (void)sp__rng_next(rng); /* the two position draws of a successful attempt */
    (void)sp__rng_next(rng);
    double in_ratio = W / H, w, h;
    if (in_ratio < fmin(rmin, rmax)) {
        w = W;
        h = round_even(w / fmin(rmin, rmax));
    } else if (in_ratio > fmax(rmin, rmax)) {
        h = H;
        w = round_even(h * fmax(rmin, rmax));
    } else {
        w = W;
        h = H;
    }
    out->w = w;
    out->h = h;
    out->y = floor((H - h) / 2.0); /* Python's // on ints */
    out->x = floor((W - w) / 2.0);
}

static void center(const sp_loader_opts *opts, double W, double H, sp__aug *out) {
    double oh = opts->out_h ? opts->out_h : 224, ow = opts->out_w ? opts->out_w : 224;
    /* Resize(int(size / 0.875)): the short side becomes S, the long one int(S * long / short). */
    double S = floor(oh / 0.875);
    double rw, rh;
    if (W <= H) {
        rw = S;
        rh = floor(S * H / W);
    } else {
        rh = S;
        rw = floor(S * W / H);
    }
    /* CenterCrop: top = int(round((rh - oh) / 2.0)), in resized pixels. */
    double top = round_even((rh - oh) / 2.0), left = round_even((rw - ow) / 2.0);
    double sx = rw / W, sy = rh / H;
    out->x = left / sx;
    out->y = top / sy;
    out->w = ow / sx;
    out->h = oh / sy;
}

void sp__aug_draw(const sp_loader_opts *opts, int32_t src_w, int32_t src_h, sp__rng *rng,
                  sp__aug *out) {
    double W = src_w > 0 ? src_w : 1, H = src_h > 0 ? src_h : 1;
    out->x = 0;
    out->y = 0;
    out->w = W;
    out->h = H;
    switch (opts->crop) {
    case SP_CROP_RANDOM_RESIZED:
        random_resized(opts, W, H, rng, out);
        break;
    case SP_CROP_CENTER:
        center(opts, W, H, out);
        break;
    case SP_CROP_NONE:
    default:
        break;
    }
    out->flip = sp__rng_uniform(rng) < opts->flip;
}
