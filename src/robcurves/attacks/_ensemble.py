"""Best-of ensembles under a budget, and ``auto``: the default minimal-norm pipeline.

``auto`` (all norms) is

1. **Linearised class ranking** (1 forward + up to 9 backward passes per point): at the clean
   input, every other class ``k`` is ranked by the DeepFool distance
   ``|z_k - z_y| / ||grad(z_k - z_y)||_q`` to its linearised boundary. Those logits and
   gradients at ``x`` are also the first step of every run below that starts at ``x`` (each
   aims at one of the ranked classes, or untargeted at the runner-up, which is one of them):
   2 passes per run and point fewer than a first step of its own, the same adversarials.
2. **FMN runs sharing one best-adversarial tracker**: FMN *targeted* at the nearest class, FMN
   targeted at the second nearest class, then untargeted FMN (pushing whichever class is the
   runner-up). Each run starts from the clean input. The runs after the first are **not
   confined** to the best ball the earlier ones proved: their norm constraint starts at the
   radius of the box, so their first step is a long one along the gradient (clipped to the
   box), then falls to the point's best distance, and may grow past it while the iterate is
   not adversarial (``fmn(confine=False)``); l1 then makes one more untargeted run that is
   confined to the best ball. For l1, two more runs target the 3rd and 4th
   nearest classes. ``restarts`` adds runs targeted at the next classes in the ranking, then
   untargeted runs from random starts inside the best ball (with ``restarts`` l2 also adds a
   run at the 3rd class and one random start). In l_inf and l2 the default
   (``restarts=0``) is the cheap one: the first run takes 60% of the steps and every later
   run stops a point after 12 (l_inf) or 10 (l2) steps without a 0.1% gain (they search
   inside a ball that is already tight); with ``restarts`` every run gets the full schedule.
   The l_inf and l2 defaults make no untargeted run (and l_inf no sweep); instead, after the
   first run they **rank the classes again** (1 forward + up to 9 backward passes per broken
   point) at the point halfway from ``x`` to its best adversarial, by the linearised
   distance from ``x`` through that point (``||m - x|| + |z_k - z_y| / ||grad||_q`` at the
   midpoint ``m``), and aim the second and third runs at the two nearest classes of that
   ranking other than the first run's; l2 then makes one untargeted run from a random start
   inside the best ball. In l2 the targeted runs after the first wait 15 steps instead of
   10 for a point that FMN's linearisation says is close to beating its best (the distance
   from ``x`` through the iterate to the boundary the run aims at below 1.1 times the best).
3. **Sweep** (l1, and l_inf with ``restarts``): one short FMN run (a quarter of the steps)
   aimed at each of the nearest 9 linearised classes that no run above targeted, unconfined
   like the later runs.
4. **l1 polish and line search**: for l1 a sparse-step FMN run from the best adversarial, then
   for every norm a 5-step bisection on the last 1/32 of the segment from ``x`` to the best
   adversarial (to within 2**-10 of the segment, as 10 steps on all of it would).
5. **Convergence**: inside each run a point stops costing once its best distance has not
   shrunk by more than 0.1% for ``max(10, steps // 5)`` steps.

Why (``benchmarks/attacks.py``; 100 Fashion-MNIST test points, small CNN; ratio to the best
distance any method found, median / 95th percentile, and optimality as defined there):

* untargeted FMN alone, the published algorithm, lands on the boundary of the *runner-up*
  class, which is often not the nearest one: l2 on a standard CNN 1.001 / 1.36 (optimality
  0.970) and 1.0003 / 1.28 on an l_inf-trained CNN; running it 10x longer does not help
  (1.002 / 1.37). Targeting the linearised nearest class first gives 1.0006 / 1.023, and
  adding the untargeted run 1.0003 / 1.007 (optimality 0.999).
* on adversarially trained models the linearisation is less reliable, so the second nearest
  class is worth its own run: l_inf-trained CNN, l_inf norm: targets (1, untargeted) 1.000 /
  1.128, targets (1, 2) 1.000 / 1.008, targets (1, 2, untargeted) 1.000 / 1.005 (optimality
  0.9988); l2 norm 1.000 / 1.004 (0.9994).
* for l1 the class ranking, the step and its length all matter. Ranking classes by the l2
  linearisation (the l1 one looks at a single gradient coordinate) and two more targeted runs
  (classes 3 and 4) take the l_inf-trained CNN from p95 1.59 to 1.05. Relative step 1.0 gives
  1.025 / 1.28 (optimality 0.959), 0.1-0.3 give 1.000-1.003 / 1.05-1.16. A dense step
  (l2-normalised gradient, sparsified by the exact l1-ball-and-box projection) beats the
  SLIDE-style top-1% step: standard CNN 1.000 / 1.005 (0.9994) against 1.013 / 1.167 (0.985),
  l_inf-trained CNN 1.001 / 1.021 (0.997) against 1.005 / 1.225 (0.986). The dense step can
  stall on an edge of the l1 ball on linear models (1.3% above the closed form), so ``auto``
  ends l1 with a short sparse polishing run from the best adversarial (``steps // 4``),
  which makes it exact there; with it the l_inf-trained CNN gives 1.000 / 1.008 (0.9985).
* a final forward-only bisection on the segment from ``x`` to the best adversarial removes any
  overshoot. FMN's best adversarial overshoots its boundary by far less than 1/32 of the
  segment: a 10-step bisection on all of it shrank no point by more than 0.9% (200 points of
  four benchmark models, every norm; 0.2% in l_inf), so 5 steps on the last 1/32 reach the
  same 2**-10 of the segment 5 passes per point cheaper (6 steps on the last 1/16: the same
  95th percentiles in l1 as 10 steps, 1.016-1.107, on the 7 models).
* l2 on adversarially trained CNNs showed the same failure as l1 (the nearest boundary is not
  among the two nearest linearised classes): with targets (1, 2, untargeted) the 95th
  percentile was 1.33 (l_inf-trained), 1.185 (l2-trained Fashion-MNIST) and 1.057 (l2-trained
  MNIST). The two extra targeted runs give 1.007, 1.021 and 1.086 (the reference, the best of
  all methods, got stronger too), for 1.3-1.4x the passes (about 190 -> 250-320 per point).
* benchmark (``benchmarks/RESULTS.md``, 7 models x 3 norms, 200 points each, with the sweep;
  l2 numbers from before the cheaper l2 default of the cost item below):
  median ratio to the best of all methods <= 1.003 everywhere; 95th percentile <= 1.05 on 15
  of 21: every l_inf pair (sweep), l2 except the l2-trained MNIST CNN (1.071; ``restarts=7``
  1.005), l1 on the two standard models only (adversarially trained ones 1.056-1.107;
  ``restarts=7`` 1.022-1.075). In l1 on robust models no single attack is best: FMN, FAB,
  EAD and Foolbox's FMN each find the closest adversarial on different points (each alone has
  a 95th percentile of 2.0-2.8 there).
* single attacks as starts or refinements (same benchmark): FAB (optimality 0.83-0.995 at
  310-710 passes), our CW (0.75-0.96 at 1,010-1,420 passes, l2) and EAD (0.86-0.98 at
  350-460 passes, l1) are each looser than ``auto`` on every model and norm at comparable or
  higher cost, so ``auto`` does not run them; they are there for users who want them.
* the sweep (added after a 200-point rerun of the benchmark showed heavier tails than 100
  points had: 95th percentiles 1.06-1.11 on four model/norm pairs, against 1.003-1.046 for
  ``restarts=7``). On 200 points, ratio to the best of the three variants, 95th percentile /
  optimality / passes per point: l2-trained Fashion-MNIST CNN in l_inf: without sweep 1.076 /
  0.9895 / 225, with sweep 1.000 / 0.9995 / 349, ``restarts=7`` 1.001 / 0.9999 / 463;
  standard Fashion-MNIST CNN in l_inf: 25-step runs at every class gave 1.002 / 0.9997 / 236
  against 1.061 / 0.9920 / 200 for the default, so short runs at the far classes suffice;
  l_inf-trained Fashion-MNIST CNN in l1: optimality 0.9966 -> 0.9975 for 346 -> 432 passes.
  In l2 on the l2-trained MNIST CNN the sweep changed nothing (0.9901, +105 passes): there
  ``restarts=7`` wins (1.0000) through its random-start runs, not its extra targets
  (``restarts=5``, targets only: 0.9909), so l2 does not sweep by default.
* cost (issue 19: the default at Foolbox FMN's ~201 passes per point without losing
  tightness). ``auto_traced`` records per point the passes spent and which run last shrank
  its best by more than 0.1%: most points are won by the first run (70-90 of 100), the later
  runs cost at least their patience (20 steps, 40 passes) on every point whatever they find.
  Tries, 100 points, reference the best of the old default, ``restarts=7``, FAB (and EAD for
  l1) and the variants in the same run, p95 ratio / passes per point (old default first):

  ====================================================  ===============  =============
  try                                                   l2, mnist-at-l2  l2, fmnist-st
  ====================================================  ===============  =============
  old default (targets 1-4, untargeted)                 1.086 / 336      1.004 / 313
  later runs patience 8                                 --               1.004 / 210
  later runs patience 5                                 --               1.004 / 184
  first run 60 steps, later patience 8                  1.086 / 189      1.005 / 183
  ... and a point stops after 2 runs without gain       1.087 / 144      --
  targets 1-2, untargeted, 1 random start               1.059 / 178      1.020 / 163
  targets 1-2, untargeted, target 3, 1 random (chosen)  1.059 / 197      1.005 / 183
  ... 2 random starts                                   1.058 / 217      --
  target 1, 2 random starts with full patience          1.070 / 215      --
  ====================================================  ===============  =============

  On 200 points of five models in l2 (``benchmarks/RESULTS.md``, section
  ``attacks-l2-default``, without the slow peers) the chosen default spends 162-193 passes per
  point (before: 269-320; Foolbox FMN 201), 95th percentile 1.004-1.053 (before
  1.004-1.071; the l2-trained MNIST CNN 1.071 -> 1.053, the standard Fashion-MNIST CNN
  1.0036 -> 1.0072), optimality 0.9919-0.9992 (before 0.9885-0.9994); ``restarts=7`` makes
  the same runs as before (614 passes on the l2-trained MNIST CNN before and after).
  On the l2-trained MNIST CNN the random start wins 14 of 100 points (its gradient at the
  clean point misleads every run started there). In l_inf and l1 every cut measured loses
  tightness on adversarially trained models, so they keep the full schedule: l_inf on the
  l2-trained MNIST CNN (old 1.0027 / 443): sweep patience 5 1.008 / 372; later patience 12
  and sweep patience 5 1.013 / 338; later patience 8, sweep patience 5, stop after 2 runs
  without gain 1.033 / 232 (first run 80 steps: 1.034 / 204). (On the standard MLP the same
  cuts keep tightness: 1.0008 / 373 -> 1.0012 / 131.) l1 on the standard MLP (old 1.034 /
  546): later patience 8, sweep patience 5 1.078 / 390, and stop after 2: 1.092 / 292; first
  run 60 steps and later patience 8: 1.080 / 367; on the standard CNN (old 1.025 / 555): first
  run 60 steps 1.031 / 487, later patience 8 1.044 / 445. The l1 first run alone costs about
  195 of 200 possible passes (it keeps improving by more than 0.1% per 20 steps to the end of
  its schedule); a box-aware linear estimate of the l1 distance (a fractional knapsack over
  the coordinates' room in the box) for FMN's radius before the first adversarial changed
  nothing (176 passes either way), so it was not kept.
* l_inf at Foolbox FMN's cost (issue 19): the clean ranking misleads on adversarially
  trained models (the first run is not within 0.1% of the best known on 80 of 160 points of
  the l_inf-trained Fashion-MNIST CNN, 73 of 164 of the l2-trained one); there, among the
  points the first run missed, the class of the best known adversarial is among the two
  nearest other classes of the clean ranking on 62 of 80 and 62 of 73 points, and of the
  ranking above through the point a fraction of the way to the first run's adversarial on 76
  and 68 (fraction 0.5), 78 and 69 (0.8), 77 and 69 (1.0); on the l2-trained MNIST CNN 24 of
  28 and 25 of 28 whichever the fraction. Measured on 200 points
  of the seven benchmark models (reference: the best of the old default, ``restarts=7``,
  FAB, FMN, Foolbox FMN and the variant), p95 ratio / passes per point, the 7 models' range:
  old default (targets 1-2, untargeted, 7-class sweep) 1.001-1.036 / 334-430; give up a
  later run when its linear estimate of the distance to its boundary exceeds 1.2x the best
  after 2 steps: standard CNN 1.003 / 230, l_inf-trained CNN 1.239 / 208 (the estimate is
  badly off on robust models); re-rank at 0.8 and three targeted runs, nothing else, full
  schedule 1.003-1.031 / 206-292; ... first run 60 steps 1.004-1.031 / 187-232; ... and later
  patience 12 1.004-1.038 / 158-199 (optimality 0.9891 on the l2-trained Fashion-MNIST CNN;
  later patience 8: 1.08 on the l_inf-trained one); the same re-ranked at 0.5 (chosen)
  1.002-1.040 / 158-200, optimality 0.9918-0.9985 (at 0.3: 1.002-1.041, 0.9915-0.9986; at 1.0:
  the MNIST standard CNN 1.031). Only one re-ranked target (0.8, full patience): 1.008-1.086
  / 148-188.
* l2 re-ranked too (issue 19): the l2 default of the previous item (clean ranking, targets 1-3,
  untargeted, random start, later patience 8) had been measured on five models; on the two
  l_inf-trained CNNs it gave 95th percentiles of 1.198 (Fashion-MNIST, optimality 0.9735) and
  1.045 (MNIST) at 166 passes per point, where ``restarts=7`` gives 1.005 and 1.016: on the
  Fashion-MNIST one its runs at the 5th-9th classes win 11 of 200 points. Same 200 points,
  reference as for l_inf, p95 / passes on the two l_inf-trained CNNs and the l2-trained MNIST
  one: re-rank at 0.5 in the old plan 1.166, 1.040 / 174-175; later patience 20 1.094, 1.033
  / 255; re-ranked targets 1-3 without the random start, later patience 8: 1.172, 1.083, 1.081
  / 157-178; re-ranked targets 1-2 and the random start, later patience 12: 1.030, 1.020,
  1.018 / 185-213; the same with patience 10 (chosen): 1.033, 1.033, 1.035 / 172-198 (the
  l2-trained Fashion-MNIST CNN 1.024 / 182; the three standard models 1.003-1.005 / 166-172,
  as before).
  On 1,000 points (``--large-n``) the l_inf-trained Fashion-MNIST CNN shows a heavier l2 tail
  than its first 200 points: 1.127 / 167 (``restarts=7`` 1.003-1.005 / 507), the default
  worse than ``restarts=7`` by more than 5% on 62 of 1,000 points. The later runs' patience is
  what matters there: patience 20 gives 1.025 / 222 (27 points), a first run of 100 steps
  1.126, an extra untargeted run, 4th target or second random start 1.124-1.128 / 184, targets
  1-5 1.117 / 218. Patience 14 costs 190 passes there but 224 on the l2-trained MNIST CNN
  (patience 10: 198), so no single patience meets both the 1.05 and the 201-pass targets on
  these models; the default keeps 10.
* the l2 tail on 1,000 points (the item above): a later run's point that FMN's linear estimate
  puts close to a gain is worth more patience. A point waits 15 steps instead of 10 while
  ``||delta|| + |z_t - z_y| / ||grad||_2`` at its iterate is below a ratio (1.1 chosen) times
  its best.
  The random-start run keeps 10, and the re-ranking skips the first run's class (1 backward
  pass less). 1,000 points, p95 / passes per point on the l_inf-trained Fashion-MNIST CNN and
  the l2-trained MNIST CNN; the reference is ``restarts=7`` and the variants. The rows
  starting "..." each add one change to "ratio 1.1, 15 steps", the last three on top of the
  6-step line search (since then 5 steps on the last 1/32, see the bisection item):

  ==========================================  ==================  ===============
  try                                         fmnist-cnn-at-linf  mnist-cnn-at-l2
  ==========================================  ==================  ===============
  patience 10 (before)                        1.128 / 167         1.039 / 199
  ratio 1.0, 20 steps                         1.124 / 169         --
  ratio 1.1, 20 steps                         1.040 / 192         1.028 / 233
  ratio 1.2, 20 steps                         1.035 / 196         1.027 / 241
  ratio 1.5, 20 steps                         1.027 / 205         --
  ratio 1.1, 15 steps                         1.043 / 181         1.032 / 216
  ... later patience 8                        1.125 / 165         1.034 / 200
  ... 6-step line search (kept)               1.043 / 177         1.032 / 212
  ... first run 50 steps                      1.060 / 167         1.034 / 202
  ... re-rank the nearest 5 classes only      1.110 / 174         1.029 / 209
  ... random-start run without it (chosen)    1.043 / 170         1.035 / 201
  ==========================================  ==================  ===============

  On 200 points of the seven models (reference as for l_inf above) the chosen l2 default
  gives 95th percentiles 1.003-1.030, optimality 0.9929-0.9995, at 165-200 passes per point.
  The l_inf default, with the same line search and re-ranking, gives 1.002-1.040 at 154-195.
* l1 at Foolbox FMN's cost is still open (the default spends 435-520 passes per point). More
  tries, 200 points, p95 / passes (the default first; reference as for l_inf): a faster radius
  schedule (``gamma_init`` 0.1 instead of 0.05) on the l_inf-trained MNIST CNN 1.173 / 455
  (default 1.107 / 468), on the standard Fashion-MNIST CNN 1.034 / 467 (1.036 / 489); the same
  with a 50-step first run 1.155 / 392 and 1.054 / 403. Later runs with patience 10 and 20
  steps for points near a gain (the l2 rule): ratio 1.1 loses on three of four models
  (l_inf-trained MNIST CNN 1.176, l2-trained Fashion-MNIST CNN 1.108 / 401 against 1.059 /
  464); ratio 1.3 keeps the others' tightness at 409-459 passes (about 60 fewer) but not the
  l_inf-trained MNIST CNN's (1.176). Per point the l1 runs rarely stop early: on the
  l2-trained MNIST CNN 250 of the pipeline's 420-500 model calls take the whole batch.
* run sequence, not run by run (tried, not kept): each point going through its later runs on
  its own, every step batching all points whatever run they are in, is exactly the same
  computation (same passes, same distances in double precision on an affine model) with
  16-22% fewer model calls, but no wall time measurably saved on the CPU at 200 points (the
  small batches at the end of each run cost little there).
* later runs not confined to the best ball: until this change a run after the first started
  with its radius at the point's best distance and never let it grow past it, so it searched
  only inside the ball the earlier runs proved. Started at the box radius instead (a long
  first step along the gradient, then the best distance, growth past it allowed), the later
  runs reach other local minima, most of all in l1, where they found points 10-40% closer
  than every method of the reference (``restarts=7``, FAB, EAD, our and Foolbox's FMN). 200
  points, reference the best of all methods and variants, p95 / optimality / passes per point
  (old confined runs -> unconfined):

  ==================  ===============================  ================================
  model               l1                               l2
  ==================  ===============================  ================================
  fmnist-cnn-at-linf  1.245 / 0.979 -> 1.046 / 0.996  1.033 / 0.991 -> 1.025 / 0.994
  fmnist-cnn-at-l2    1.228 / 0.986 -> 1.093 / 0.992  1.026 / 0.993 -> 1.014 / 0.994
  mnist-cnn-at-linf   1.194 / 0.978 -> 1.123 / 0.983  1.051 / 0.989 -> 1.014 / 0.997
  mnist-cnn-at-l2     1.182 / 0.978 -> 1.047 / 0.995  1.042 / 0.993 -> 1.013 / 0.997
  fmnist-cnn-st       1.036 / 0.998 -> 1.043 / 0.997  1.004 / 0.9995 -> 1.006 / 0.9992
  ==================  ===============================  ================================

  at the same passes (l1 435-518 -> 446-542, l2 172-199 -> 169-199). l_inf: 1.040 -> 1.023,
  1.024 -> 1.019, 1.022 -> 1.008 on the first three, 1.007 -> 1.008 and 1.005 -> 1.005 on the
  others, 155-194 -> 154-189 passes. On a 5-class linear model though, the confined later runs
  had been what refined a first l1 run stalled on an edge of the l1 ball (10% above the closed
  form; the sparse polish alone only reaches 7.8%, with twice its steps too); so l1 ends its
  runs with one more untargeted run confined to the best ball (within 0.5% of the closed form
  again). It costs 35-40 passes per point and leaves the 200-point figures above as they are or
  tighter (l1 p95 1.046, 1.106, 1.123, 1.043, 1.040 at 481-582 passes; the untargeted run
  confined instead loses on the MNIST CNNs: 1.162 and 1.122). Against exact distances
  (``benchmarks/exact_attacks.py``, the digits MLPs, l1, 100 points) the confined runs had been
  a little better on the standard MLP: 95th percentile 1.0075 -> 1.0131, worst point 1.020 ->
  1.043 (4 -> 6 points more than 1% above the optimum; the l_inf-trained MLP 1.0044 -> 1.0048,
  no point above 1%). Keeping the later targeted runs confined (only the untargeted run and the
  sweep free) restores those but gives back most of the gain on the CNNs (l1 p95 1.110, 1.127,
  1.135, 1.085 on the four adversarially trained ones), so it was not kept. Neither half alone
  does it (l1 p95 on the four adversarially trained models): the radius starting at the best
  but free to grow past it 1.18-1.25, the later runs starting like fresh runs (the linear
  estimate) and confined once they break a point 1.10-1.23. So the l1 tails measured before
  were against a weak reference: every l1 figure of the benchmark before this change (the 95th
  percentiles 1.017-1.107) is optimistic.
* l1 at Foolbox FMN's cost, tried again after the change above (issue 19), none kept. 200
  points of the five models of the table above, reference the best of every method and variant
  so far, p95 ratio / passes per point over the five (the default: 1.040-1.193 / 481-582; the
  l_inf-trained MNIST CNN is the 1.193):

  * re-ranking the classes at the midpoint to the first run's adversarial, as l_inf and l2 do:
    1.040-1.116 / 486-591 (that CNN 1.092); not kept: on 500 other points (test points
    200-699) of that CNN and the l2-trained Fashion-MNIST one it was looser than the default
    (1.070 against 1.059, 1.011 against 1.004; reference the best of the two and
    ``restarts=7``), and against the exact distances of ``benchmarks/exact_attacks.py`` too
    (95th percentile 1.0131 -> 1.0187 on the standard MLP, worst point 1.007 -> 1.053 on the
    l_inf-trained one);
  * sweeping only the 2 nearest classes no run targeted: 1.040-1.199 / 428-520; with the
    re-ranking 1.040-1.189 / 433-528 (the l2-trained Fashion-MNIST CNN 1.189);
  * re-ranked, later runs patience 10 but 20 steps near a gain (the l2 rule, ratio 1.3):
    1.043-1.132 / 415-507; re-ranked, first run 60 steps: 1.049-1.118 / 427-520;
  * a race: runs at the two nearest classes and an untargeted one, 20 steps each (on 100-step
    schedules), then 60 steps from the best of the three and the polish: 1.062-1.671 /
    219-263;
  * the first run (60 steps), the second class's and the untargeted run, no sweep, no
    confined run: 1.075-1.603 / 215-280.

  The default's trace says why: a point stopped after B passes has the distance of its last
  improvement before B, and at B = 200 (the end of the first run) the 95th percentile of that
  distance over the default's final one is 1.35 (standard Fashion-MNIST CNN) and 1.64
  (l_inf-trained MNIST CNN); 300 passes: 1.05 and 1.24. The runs after the first move the
  tail, each on its own points, so every run dropped loses some model's tail.
* the first step of the runs from ``x`` (issue 19): a run from ``x`` aimed at class ``t``
  first computes ``z_t - z_y`` and its gradient at ``x``, which the class ranking computed
  already; every such run (in l2 the three targeted ones, in l1 all but the polish) now starts
  from the ranking's, 2 passes per run and point fewer for the same adversarials (bit for bit
  on 200 points of five benchmark models, one norm each, every norm among them). The ranking
  also makes one forward pass now: it made a second one, with gradients, and counted one, so
  the traces undercounted by a pass per point (the ``attacks`` table's means, counted at the
  network, did not). On the 200 points of ``benchmarks/RESULTS.md`` (section ``auto-cost``)
  the median passes per point over all points went from 203 to 197 on the two models that
  were above Foolbox FMN's 201 in l2 (now l_inf 159-187, l2 173-197, l1 560 -> 538), and the
  ``attacks`` table's means by 5-7 in l_inf and l2 and 19-21 in l1.
* l1 under a tight ``budget``: the budget holds in the worst case (no point converging), so the
  full l1 plan (6 runs, 5 sweep runs, the polish) gets few steps per run: 9 at ``budget=200``,
  13 at 250, 17 at 300. Fewer, longer runs do better there: the runs at the two nearest
  classes and the untargeted run, no sweep, no confined run (25 steps each at 200). 200 points
  of the five models above, reference as above, ranges over the five:

  ======  =========  ===========  ===========  ===========  =============
  budget  plan       median       p95          optimality   passes/point
  ======  =========  ===========  ===========  ===========  =============
  200     full       1.073-1.163  1.37-2.07    0.846-0.960  159-188
  200     3 runs     1.019-1.044  1.14-1.82    0.938-0.987  107-131
  250     full       1.041-1.093  1.19-1.62    0.907-0.979  184-217
  250     3 runs     1.011-1.025  1.13-1.66    0.946-0.990  121-149
  300     full       1.029-1.066  1.16-1.43    0.933-0.986  193-229
  300     3 runs     1.008-1.019  1.12-1.64    0.948-0.991  137-172
  400     full       1.018-1.041  1.12-1.32    0.948-0.990  215-254
  400     3 runs     1.006-1.013  1.10-1.59    0.951-0.992  160-206
  ======  =========  ===========  ===========  ===========  =============

  At 250 the 3 runs are better on every model in median and optimality, and in the 95th
  percentile on three of the five (not on the two adversarially trained Fashion-MNIST CNNs:
  1.66 against 1.62, 1.45 against 1.42); at 300 they lose those two tails by more (1.64
  against 1.43, 1.37 against 1.28) and optimality on them too. So when the full plan would
  get fewer than 15 steps per run (``_SMALL_BELOW``; on 10 classes a budget under 273)
  ``auto`` makes the 3 runs (``_SMALL_PLAN``); with ``sweep`` or ``restarts`` given it keeps
  the plan asked for. On the 10-class linear model of the tests (l1, 50 points) the ratio to
  the closed form at ``budget=200`` is 1.079 / 1.28 (95th percentile / worst) against 1.47 /
  1.64 with the full plan.
* the previous default (DeepFool start, epsilon doubling, bisection with warm-started PGD) costs
  300-650 passes per point against 160-230 here and is looser on robust models (l_inf-trained
  CNN, l_inf: 1.003 / 1.17).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import torch

from .._norms import dual_norm, lp_norm
from ..model import Classifier
from ._core import BestAdversarial, attack, expand, generator_for, line_search, random_start
from ._deepfool import _class_gradients, _ranking
from ._fmn import fmn

__all__ = ["auto", "ensemble", "AUTO_STEPS", "auto_plan", "auto_traced", "AutoTrace"]

#: FMN steps per run when no budget is given.
AUTO_STEPS = 100
_CANDIDATES = 9
#: l1 only: sparsity of the final polishing run (steps on the top 1% of coordinates)
_POLISH_SPARSITY = 0.99
#: sweep runs (one per class no main run targets) and the l1 polish take ``_short(steps)``
#: steps: ``steps // _SWEEP_DIV``, at least 5
_SWEEP_DIV = 4
#: whether ``auto`` ends the runs with an untargeted run confined to the best ball (l1: the
#: unconfined later runs no longer refine a first run stalled on an edge of the l1 ball)
_CONFINED_RUN = {math.inf: False, 2.0: False, 1.0: True}
#: whether ``auto`` sweeps the remaining classes by default, per norm
_SWEEP = {math.inf: True, 2.0: False, 1.0: True}
#: forward-only bisection steps on the last ``1 - _REFINE_START`` of the segment from ``x`` to
#: the best adversarial at the end (to within 2**-10 of the segment, as 10 steps on all of it)
_REFINE = 5
_REFINE_START = 1 - 2.0**-5
#: relative FMN step length per norm used by ``auto``.
_ALPHA = {math.inf: 0.3, 2.0: 1.0, 1.0: 0.2}
#: the norm in which classes are ranked (the l1 linearisation, one gradient coordinate, ranks
#: poorly; the l2 one ranks better for l1 too)
_RANK_NORM = {math.inf: math.inf, 2.0: 2.0, 1.0: 2.0}
#: runs aimed at further classes that ``auto`` always adds for each norm
_EXTRA_TARGETS = {math.inf: 0, 2.0: 1, 1.0: 2}
#: untargeted runs from a random start inside the best ball that ``auto`` always adds, last
_EXTRA_RANDOM = {math.inf: 0, 2.0: 1, 1.0: 0}
#: default (``restarts=0``) only: the first run's steps as a fraction of the others', and the
#: convergence patience of the runs after the first (None: ``max(10, steps // 5)``)
_FIRST_FRACTION = {math.inf: 0.6, 2.0: 0.6, 1.0: 1.0}
_LATER_PATIENCE: dict[float, int | None] = {math.inf: 12, 2.0: 10, 1.0: None}
#: default only: the runs where they differ from ``_norm_plan`` (l_inf: three targeted runs, no
#: untargeted one; l2: the same and a random start), whether it sweeps, and where the runs
#: after the first re-rank the classes: at the point this fraction of the way from ``x`` to the
#: best adversarial (None: no re-ranking)
_DEFAULT_PLAN: dict[float, list[tuple[str, int]]] = {
    math.inf: [("target", 0), ("target", 1), ("target", 2)],
    2.0: [("target", 0), ("target", 1), ("target", 2), ("random", 0)]}
_DEFAULT_SWEEP = {math.inf: False, 2.0: False, 1.0: True}
#: default under a ``budget`` that would leave the norm's plan fewer than ``_SMALL_BELOW`` steps
#: per run: these runs instead, no sweep and no confined run (longer runs, fewer of them)
_SMALL_PLAN: dict[float, list[tuple[str, int]]] = {
    1.0: [("target", 0), ("target", 1), ("untargeted", 0)]}
_SMALL_BELOW = 15
_RERANK: dict[float, float | None] = {math.inf: 0.5, 2.0: 0.5, 1.0: None}
#: default only: the targeted runs after the first give a point ``patience`` steps without
#: gain, not ``_LATER_PATIENCE``, while FMN's linearised distance through its iterate to the
#: boundary it aims at is below ``ratio`` times the point's best: ``(ratio, patience)``
_NEAR: dict[float, tuple[float, int] | None] = {math.inf: None, 2.0: (1.1, 15), 1.0: None}
#: a run "won" a point (``AutoTrace.source``) when it shrank its best by more than this
_GAIN = 1e-3


def auto_plan(num_classes: int, restarts: int = 0) -> list[tuple[str, int]]:
    """The runs ``auto`` makes: ``("target", rank)`` (FMN aimed at the ``rank``-th nearest
    linearised class, 0-based), ``("untargeted", 0)`` and ``("random", i)`` (untargeted FMN from
    the ``i``-th random start inside the best ball)."""
    if int(restarts) < 0:
        raise ValueError(f"restarts must be >= 0; got {restarts}")
    others = num_classes - 1
    plan: list[tuple[str, int]] = [("target", 0)]
    if others >= 2:
        plan.append(("target", 1))
    plan.append(("untargeted", 0))
    rank, rnd = 2, 0
    for _ in range(int(restarts)):
        if rank < min(others, _CANDIDATES):
            plan.append(("target", rank))
            rank += 1
        else:
            plan.append(("random", rnd))
            rnd += 1
    return plan


def _norm_plan(num_classes: int, restarts: int, p: float) -> list[tuple[str, int]]:
    """``auto_plan`` with the runs ``auto`` always adds for norm ``p``: further targeted runs,
    then random-start runs at the end."""
    plan = auto_plan(num_classes, int(restarts) + _EXTRA_TARGETS[p])
    rnd = sum(kind == "random" for kind, _ in plan)
    return plan + [("random", rnd + k) for k in range(_EXTRA_RANDOM[p])]


def _reachable(plan: list[tuple[str, int]], candidates: int) -> list[tuple[str, int]]:
    """``plan`` without the targeted runs at ranks the model's classes do not reach."""
    return [r for r in plan if r[0] != "target" or r[1] < candidates]


def _sweep_ranks(plan: list[tuple[str, int]], candidates: int) -> list[int]:
    """Ranks of the linearised classes that ``plan`` does not target: the short sweep runs."""
    done = {i for kind, i in plan if kind == "target"}
    return [r for r in range(candidates) if r not in done]


def _rerank(model: Classifier, x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor,
            best: torch.Tensor, found: torch.Tensor, p: float, frac: float) -> torch.Tensor:
    """``classes`` with columns 1.. re-sorted by the linearised distance from ``x`` to each
    class's boundary through the point ``frac`` of the way to ``best`` (where ``found``);
    column 0 (the class the first run aimed at) stays first and is not looked at again. One
    forward and ``classes.shape[1] - 1`` backward passes per found point."""
    rows = found.nonzero().squeeze(1)
    if rows.numel() == 0:
        return classes
    x0 = x[rows]
    pt = x0 + frac * (best[rows] - x0)
    rest = classes[rows, 1:]
    _, _, f, w = _class_gradients(model, pt, y[rows], rest)
    wq = lp_norm(w.flatten(0, 1), dual_norm(p)).view(f.shape)  # (found points, classes)
    est = lp_norm(pt - x0, p)[:, None] + (-f).clamp_min(0) / wq.clamp_min(1e-12)
    out = classes.clone()
    out[rows, 1:rest.shape[1] + 1] = rest.gather(1, est.argsort(1))
    return out


def _short(steps: int) -> int:
    """Steps of the short runs (sweep, l1 polish) when the others take ``steps``."""
    return max(5, steps // _SWEEP_DIV)


def _steps_for(budget: int | None, runs: int, sweeps: int, candidates: int,
               rerank: bool = False, polish: bool = False, hints: Sequence[str] = ()) -> int:
    """FMN steps per run such that no point spends more than ``budget`` passes even if no
    point converges early (the worst case); a budget too small for 5 steps per run raises,
    naming the least one and the ``hints`` (options that would make the plan cheaper)."""
    if budget is None:
        return AUTO_STEPS
    # one clean forward, the ranking (1 forward + candidates backward; if re-ranked, 1 forward +
    # candidates - 1 backward again), per run 2 passes per step plus one final forward, the
    # sweep runs and the l1 polish (1 forward for its target) likewise with
    # _short(steps) steps, the final line search; one more pass per step is kept
    # for the polish's steps and final forward, and what its 5-step floor needs beyond that
    # is added
    fixed = 2 + (1 + candidates) + (candidates if rerank else 0) + runs + sweeps + _REFINE

    def worst(s: int) -> int:
        short = 2 * _short(s)
        return (fixed + s * (2 * runs + 1) + sweeps * short
                + (max(0, short + 1 - s) if polish else 0))

    steps = max(0, int((int(budget) - fixed) // (2 * runs + 1)))
    while steps >= 5 and worst(steps) > int(budget):
        steps -= 1
    if steps < 5:
        raise ValueError(f"budget {budget} passes per point is too small for {runs} FMN runs"
                         + (f" and {sweeps} sweep runs" if sweeps else "")
                         + f"; need at least {worst(5)}" + "".join(f", or {h}" for h in hints))
    return steps


class _Ledger(BestAdversarial):
    """A :class:`BestAdversarial` that also keeps ``auto``'s books: the model passes spent on
    each point (read from the model's counters at every update: each model call of the runs is
    followed by an update of exactly the points it queried), the passes of each run
    (``by_run``, keyed by ``run``), and optionally the trace of improvements (``events``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, p: float, model: Classifier,
                 trace: bool = False) -> None:
        super().__init__(x, y, p)
        self.model = model
        self.spent = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        self.run = -1
        self.events: list | None = [] if trace else None
        self.by_run: dict[int, int] = {}
        self.mark()

    def _passes(self) -> int:
        return int(self.model.n_forward + self.model.n_backward)

    def mark(self) -> None:
        self._mark = self._passes()

    def charge(self, rows: torch.Tensor) -> None:
        """Split the passes since the last mark evenly over ``rows`` (who were queried)."""
        now = self._passes()
        if now > self._mark and rows.numel():
            self.spent[rows] += (now - self._mark) / rows.numel()
            self.by_run[self.run] = self.by_run.get(self.run, 0) + now - self._mark
        self._mark = now

    def update(self, cand: torch.Tensor, logits: torch.Tensor,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        rows = torch.arange(self.x.shape[0], device=self.x.device) if rows is None else rows
        self.charge(rows)
        if self.events is None:
            return super().update(cand, logits, rows)
        before = self.dist[rows]
        adv = super().update(cand, logits, rows)
        better = self.dist[rows] < before
        self.events.append((rows, self.spent[rows].clone(),
                            torch.where(better, self.dist[rows], math.nan)))
        return adv


@dataclasses.dataclass
class AutoTrace:
    """What ``auto`` did on the ``points`` it attacked (indices into ``x``: those the model
    classified correctly), per point in that order: ``spent`` model passes,
    ``runs`` the names of the runs made, ``source`` the index into ``runs`` of the last run
    that shrank the point's best by more than 0.1% (-1: none), ``cost_by_run`` the passes per
    point each run (and the class ranking) spent, averaged over the points, and
    ``improvements``: per point the list of
    ``(passes spent so far, best distance)`` at each improvement of its best distance."""

    points: torch.Tensor
    spent: torch.Tensor
    runs: list[str]
    source: torch.Tensor
    improvements: list[list[tuple[float, float]]]
    cost_by_run: dict[str, float]


def _improvements(ledger: _Ledger, offset: float) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = [[] for _ in range(ledger.x.shape[0])]
    for rows, spent, dist in ledger.events or []:
        for r, s, d in zip(rows.tolist(), spent.tolist(), dist.tolist(), strict=True):
            if not math.isnan(d):
                out[r].append((s + offset, d))
    return out


@attack()
def auto(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
         budget: int | None = None, restarts: int = 0, sweep: bool | None = None, seed: int = 0,
         tracker: BestAdversarial | None = None) -> torch.Tensor:
    """The default minimal-norm pipeline (see the module docstring); returns adversarials,
    ``x`` itself where none was found.

    Args:
        norm: ``inf``, ``2`` or ``1``.
        budget: most model passes (forward + backward) per point; ``None`` gives every FMN run
            100 steps (in l_inf and l2 with ``restarts=0`` the first 60; at most about 560
            passes per point for l_inf, 760 for l2 and 1,350 for l1), but points stop once
            converged: measured on the benchmark's CNNs and MLP (``benchmarks/RESULTS.md``)
            about 145-195 passes per point for l_inf and l2 and 460-565 for l1 (Foolbox FMN at
            its defaults: 201), counting the misclassified points (1 pass each); per correctly
            classified point 165-215 and 555-590 (section ``auto-cost``). In l1 a budget that
            would leave fewer than 15 steps per run (under 273 passes on 10 classes) gets fewer,
            longer runs (no sweep; see the module docstring) unless ``sweep`` or ``restarts`` is
            given.
        restarts: extra FMN runs (aimed at the next nearest classes, then from random starts)
            for a stronger evaluation; they share the budget.
        sweep: after the main runs, one short FMN run (a quarter of the steps) aimed at each
            of the nearest 9 linearised classes no main run targeted, inside the best ball
            found so far. Default (``None``): on for l1, and for l_inf with ``restarts``; off
            for l2 (where it did not help) and the l_inf default (which re-ranks the classes
            instead; see the module docstring).
        seed: seeds the random starts.
    """
    return _auto(model, x, y, p, budget=budget, restarts=restarts, sweep=sweep, seed=seed,
                 tracker=tracker)[0]


def auto_traced(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float,
                **kwargs: object) -> tuple[torch.Tensor, AutoTrace | None]:
    """``auto`` on a wrapped model, inputs on its device and a parsed norm, also returning its
    :class:`AutoTrace` (None when every point was misclassified already); for benchmarks."""
    return _auto(model, x, y, p, trace=True, **kwargs)


def _auto(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
          budget: int | None = None, restarts: int = 0, sweep: bool | None = None,
          seed: int = 0, tracker: BestAdversarial | None = None, trace: bool = False
          ) -> tuple[torch.Tensor, AutoTrace | None]:
    tracker = tracker if tracker is not None else BestAdversarial(x, y, p)
    with torch.no_grad():
        z = model.logits(x)
    tracker.update(x, z)
    num_classes = int(z.shape[1])
    candidates = min(_CANDIDATES, num_classes - 1)
    # the cheap default (restarts=0): a shorter first run, impatient later runs and, for
    # l_inf and l2, re-ranked targets instead of the untargeted run (and the l_inf sweep),
    # where that was measured not to lose tightness; with restarts every run gets the full
    # schedule
    cheap = int(restarts) == 0
    plan = _DEFAULT_PLAN.get(p) if cheap else None
    plan = _reachable(plan, candidates) if plan else _norm_plan(num_classes, restarts, p)
    rerank = _RERANK[p] if cheap and candidates >= 3 else None
    small_ok = cheap and sweep is None and budget is not None and p in _SMALL_PLAN
    sweep = (_DEFAULT_SWEEP if cheap else _SWEEP)[p] if sweep is None else bool(sweep)
    sweeps = _sweep_ranks(plan, candidates) if sweep else []
    confined = _CONFINED_RUN[p]
    hints = [h for h, cheaper in (("sweep=False", bool(sweeps)),
                                  ("fewer restarts", int(restarts) > 0)) if cheaper]
    try:
        steps = _steps_for(budget, len(plan) + confined, len(sweeps), candidates,
                           rerank is not None, polish=p == 1.0, hints=hints)
    except ValueError:
        if not small_ok:
            raise
        steps = 0
    if small_ok and steps < _SMALL_BELOW:
        # a tight budget: fewer, longer runs (see the module docstring)
        plan = _reachable(_SMALL_PLAN[p], candidates)
        sweeps, confined = [], False
        steps = _steps_for(budget, len(plan), 0, candidates, rerank is not None,
                           polish=p == 1.0)
    todo = (~tracker.found).nonzero().squeeze(1)
    if todo.numel() == 0:
        return x.clone(), None
    xs, ys = x[todo], y[todo]
    n = xs.shape[0]
    every = torch.arange(n, device=x.device)
    sub = _Ledger(xs, ys, p, model, trace)
    classes, _, (z0, f0, w0) = _ranking(model, xs, ys, _RANK_NORM[p], candidates)
    sub.charge(every)
    ranked = classes  # the columns of f0 and w0
    runner_up = ranked.gather(1, f0.argmax(1, keepdim=True)).squeeze(1)

    def at_x(tg: torch.Tensor | None, r: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The first step of a run from ``x`` itself on the points ``r``, aimed at the classes
        ``tg[r]`` (None: untargeted, at the runner-up), from what the ranking computed there
        (every class a run aims at is one of the ranked candidates): logits, loss, gradient."""
        t = runner_up[r] if tg is None else tg[r]
        hit = ranked[r] == t[:, None]
        if not bool(hit.any(1).all()):
            return None
        col = hit.int().argmax(1)
        return z0[r], f0[r].gather(1, col[:, None]).squeeze(1), w0[r, col]
    gen = generator_for(seed, x.device)
    alpha = _ALPHA[p]
    first_steps = max(5, int(steps * _FIRST_FRACTION[p])) if cheap else steps
    later_patience = _LATER_PATIENCE[p] if cheap else None
    names: list[str] = []
    source = torch.full((n,), -1, dtype=torch.long, device=x.device)

    def step(name: str) -> None:
        """Charge the passes from here on to a new step of the pipeline called ``name``."""
        names.append(name)
        sub.run = len(names) - 1
        sub.mark()

    def run(name: str, rows: torch.Tensor, fn: Callable[[_Ledger, torch.Tensor], object]
            ) -> None:
        """``fn(child, rows)`` on the points ``rows`` with a child ledger holding their best
        so far; its results, costs and trace go back into ``sub``."""
        step(name)
        if rows.numel() == 0:
            return
        before = sub.dist[rows].clone()
        child = _Ledger(xs[rows], ys[rows], p, model, trace)
        child.run = sub.run
        child.dist[:], child.best[:] = sub.dist[rows], sub.best[rows]
        fn(child, rows)
        sub.dist[rows], sub.best[rows] = child.dist, child.best
        if child.events is not None and sub.events is not None:
            base = sub.spent[rows].clone()
            sub.events.extend((rows[r], s + base[r], d) for r, s, d in child.events)
        sub.spent[rows] += child.spent
        for k, v in child.by_run.items():
            sub.by_run[k] = sub.by_run.get(k, 0) + v
        sub.mark()
        gained = sub.dist[rows] < before * (1 - _GAIN)
        source[rows] = torch.where(gained, sub.run, source[rows])

    for j, (kind, i) in enumerate(plan):
        if j == 1 and rerank is not None:
            step("rerank")
            classes = _rerank(model, xs, ys, classes, sub.best, sub.found, _RANK_NORM[p],
                              rerank)
            sub.charge(sub.found.nonzero().squeeze(1))
        st = first_steps if j == 0 else steps
        pat = None if j == 0 else later_patience
        near = None if j == 0 or not cheap else _NEAR[p]
        free = j > 0  # the runs after the first start unconfined by the best ball
        if kind == "target":
            tg = classes[:, i]
            run(f"target-{i}", every,
                lambda t, r, st=st, pat=pat, tg=tg, near=near, free=free: fmn._run(
                    model, xs[r], ys[r], p, steps=st, alpha_init=alpha, targets=tg[r],
                    sparsity=None, patience=pat, tracker=t, near=near, confine=not free,
                    _start=at_x(tg, r)))
        elif kind == "untargeted":
            run("untargeted", every, lambda t, r, st=st, pat=pat, free=free: fmn._run(
                model, xs[r], ys[r], p, steps=st, alpha_init=alpha, sparsity=None,
                patience=pat, tracker=t, confine=not free, _start=at_x(None, r)))
        else:
            radius = torch.where(sub.found, sub.dist, torch.zeros_like(sub.dist)).to(x.dtype)
            begin = random_start(xs, radius, p, model.bounds, gen)
            run(f"random-{i}", every, lambda t, r, st=st, pat=pat, b=begin, free=free: fmn._run(
                model, xs[r], ys[r], p, steps=st, alpha_init=alpha, x_init=b[r],
                sparsity=None, patience=pat, tracker=t, confine=not free))
    if confined:
        run("confined", every, lambda t, r: fmn._run(
            model, xs[r], ys[r], p, steps=steps, alpha_init=alpha, sparsity=None,
            patience=later_patience, tracker=t, _start=at_x(None, r)))
    for i in sweeps:
        tg = classes[:, i]
        run(f"sweep-{i}", every, lambda t, r, tg=tg: fmn._run(
            model, xs[r], ys[r], p, steps=_short(steps), alpha_init=alpha,
            targets=tg[r], sparsity=None, tracker=t, confine=False, _start=at_x(tg, r)))
    if p == 1.0 and bool(sub.found.any()):
        # the dense l1 steps can stall on an edge of the l1 ball instead of its vertex (1.3%
        # above the closed form on linear models): polish with sparse steps from the best
        def polish(t: _Ledger, r: torch.Tensor) -> None:
            with torch.no_grad():
                target = model.logits(t.best).argmax(1)
            t.charge(torch.arange(r.numel(), device=x.device))
            fmn._run(model, xs[r], ys[r], p, steps=_short(steps), alpha_init=alpha,
                     sparsity=_POLISH_SPARSITY, x_init=t.best.clone(), targets=target,
                     tracker=t)
        run("polish", sub.found.nonzero().squeeze(1), polish)
    step("line-search")
    line_search(model, sub, _REFINE, _REFINE_START)
    better = sub.dist < tracker.dist[todo]
    rows = todo[better]
    tracker.dist[rows] = sub.dist[better]
    tracker.best[rows] = sub.best[better]
    adv = torch.where(expand(tracker.found, x), tracker.best, x)
    if not trace:
        return adv, None
    # + the clean forward pass every point had before the pipeline
    return adv, AutoTrace(todo, sub.spent + 1, names, source, _improvements(sub, 1.0),
                          {(names[k] if k >= 0 else "ranking"): v / n
                           for k, v in sub.by_run.items()})


@attack()
def ensemble(model: Classifier, x: torch.Tensor, y: torch.Tensor, p: float, *,
             attacks: Sequence[Callable[..., torch.Tensor]],
             tracker: BestAdversarial | None = None) -> torch.Tensor:
    """Run ``attacks`` in order on the same points and keep, per point, the closest verified
    adversarial. Each is an attack of this package (every iterate it queries counts) or
    ``functools.partial`` of one fixing its own budget (``steps``...), or any other callable
    ``fn(model, x, y, norm) -> adversarials`` (only the adversarials it returns count, checked
    with one forward pass)."""
    tracker = tracker if tracker is not None else BestAdversarial(x, y, p)
    for fn in attacks:
        run = _with_tracker(fn)
        if run is not None:
            run(model, x, y, p, tracker=tracker)
        else:
            adv = torch.as_tensor(fn(model, x, y, p)).detach().to(x.device, x.dtype)
            inside = ((adv >= model.bounds[0]) & (adv <= model.bounds[1])).flatten(1).all(1)
            adv = torch.where(expand(inside, x), adv, x)
            with torch.no_grad():
                tracker.update(adv, model.logits(adv))
    return torch.where(expand(tracker.found, x), tracker.best, x)


def _with_tracker(fn: Callable) -> Callable | None:
    """The tracker-taking implementation behind an attack of this package (through any
    ``functools.partial``), or None for a foreign callable."""
    if isinstance(fn, functools.partial):
        inner = _with_tracker(fn.func)
        return None if inner is None else functools.partial(inner, *fn.args, **fn.keywords)
    return getattr(fn, "_run", None)
