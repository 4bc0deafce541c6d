#!/usr/bin/python3
"""rdp_check.py - DP-SGD's epsilon computed independently of lockstep's accountant.

The Renyi divergence of the sampled Gaussian mechanism at order a is worked out from its
definition, A_a = E_{z ~ N(0, s^2)} [((1 - q) + q exp((2z - 1) / (2 s^2)))^a], by numerical
integration over z (numpy, a fine grid: the integrand is smooth), with A_a - 1 kept apart
for precision; RDP = steps x log(A_a) / (a - 1); epsilon at delta by the conversion of Balle
et al. (2020) that Opacus uses, the smallest over the orders 1.1 .. 10.9, 12 .. 63.
No series, no binomial sums: lockstep's rdp.c uses those.

  rdp_check.py Q SIGMA STEPS DELTA        prints epsilon
  rdp_check.py --metrics FILE             checks the summary's epsilon against it (1%)
"""
import json
import math
import sys

import numpy as np

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def log_a(q, sigma, a):
    """log A_a by integration (q in (0, 1)); infinity where it overflows."""
    z = np.linspace(-40.0 * sigma, 40.0 * sigma + 1.0, 200001)
    dz = z[1] - z[0]
    log_mu0 = -z * z / (2 * sigma * sigma) - math.log(sigma * math.sqrt(2 * math.pi))
    # log of the likelihood ratio: log1p(q (exp((2z - 1) / (2 s^2)) - 1)), stable on both sides
    t = (2 * z - 1) / (2 * sigma * sigma)
    ratio = np.where(t < 30, np.log1p(q * np.expm1(np.minimum(t, 30))),
                     t + np.log(q + (1 - q) * np.exp(-np.maximum(t, 30))))
    # mu0 (ratio^a - 1): expm1 where it is small, the difference of exponentials (in range:
    # mu0 is tiny where ratio^a is large) elsewhere
    np.seterr(over="ignore", invalid="ignore")
    small = a * ratio < 1
    term = np.where(small, np.exp(log_mu0) * np.expm1(np.where(small, a * ratio, 0)),
                    np.exp(np.where(small, 0, log_mu0 + a * ratio)) - np.exp(log_mu0))
    a_minus_1 = float(np.sum(term) * dz)
    return math.log1p(a_minus_1) if math.isfinite(a_minus_1) else math.inf


def epsilon(q, sigma, steps, delta):
    if q == 0:
        return 0.0
    best = math.inf
    for a in ORDERS:
        rdp = steps * log_a(q, sigma, a) / (a - 1)
        eps = rdp + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, max(eps, 0.0))
    return best


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--metrics":
        recs = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
        s = [r for r in recs if r.get("event") == "summary"][-1]
        want = epsilon(s["dp_q"], s["dp_sigma"], int(s["dp_steps"]), s["delta"])
        got = s["epsilon"]
        ok = abs(got - want) <= 0.01 * want
        print(f"epsilon: lockstep {got:.5g}, independent integration {want:.5g} "
              f"(q {s['dp_q']:.6g}, sigma {s['dp_sigma']:.6g}, {int(s['dp_steps'])} steps, delta {s['delta']:g}): "
              f"{'agree within 1%' if ok else 'DISAGREE'}")
        sys.exit(0 if ok else 1)
    q, sigma, steps, delta = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(f"{epsilon(q, sigma, steps, delta):.6g}")


if __name__ == "__main__":
    main()
