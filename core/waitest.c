#include "waitest.h"

#include <math.h>

double
cc_erlang_c(unsigned n, double a) {
    double b = 1.0;
    unsigned i;

    if (a <= 0)
        return 0;
    if (a >= (double)n)
        return 1;
    /* Erlang B by its recurrence, stable for any n; then C from B. */
    for (i = 1; i <= n; i++)
        b = a * b / ((double)i + a * b);
    return (double)n * b / ((double)n - a * (1 - b));
}

double
cc_gamma_quantile(double k, double rate, double z) {
    double c, t;

    if (!(k > 0) || !(rate > 0))
        return 0;
    c = 1.0 / (9.0 * k);
    t = 1.0 - c + z * sqrt(c);
    if (t < 0)
        t = 0;
    return k * t * t * t / rate;
}

double
cc_erlang_asa(unsigned n, double a, double aht_ms) {
    return cc_erlang_c(n, a) * aht_ms / ((double)n - a);
}

double
cc_erlang_wait_quantile(unsigned n, double a, double aht_ms, double q) {
    /* P(wait > t) = C exp(-(n - a) t / aht): solve for 1 - q. */
    double c = cc_erlang_c(n, a), left = 1 - q;

    if (c <= left)
        return 0;
    return aht_ms / ((double)n - a) * log(c / left);
}
