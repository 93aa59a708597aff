// Learning-rate schedules and gradient clipping.
#include <doctest/doctest.h>

#include <cmath>

#include <tessera/tessera.hpp>

using namespace tessera;

TEST_CASE("StepLR and ExponentialLR") {
  optim::SGD<float> opt({.lr = 1.0});
  optim::StepLR step(opt, 2, 0.5);
  std::vector<double> lrs;
  for (int i = 0; i < 5; ++i) {
    step.step();
    lrs.push_back(opt.lr());
  }
  CHECK(lrs == std::vector<double>{1.0, 0.5, 0.5, 0.25, 0.25});
  optim::SGD<float> opt2({.lr = 2.0});
  optim::ExponentialLR exp_lr(opt2, 0.9);
  exp_lr.step();
  exp_lr.step();
  CHECK(opt2.lr() == doctest::Approx(2.0 * 0.81));
}

TEST_CASE("CosineWithWarmup: linear warmup, cosine decay to min_lr, then held") {
  optim::Adam<float> opt({.lr = 1.0});
  optim::CosineWithWarmup sched(opt, 4, 14, 0.1);
  CHECK(opt.lr() == doctest::Approx(0.25));  // set for step 0 on construction
  CHECK(sched.lr_at(3) == doctest::Approx(1.0));
  CHECK(sched.lr_at(4) == doctest::Approx(1.0));
  CHECK(sched.lr_at(9) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(M_PI * 0.5))));
  CHECK(sched.lr_at(14) == doctest::Approx(0.1));
  CHECK(sched.lr_at(100) == doctest::Approx(0.1));
  sched.step();
  CHECK(opt.lr() == doctest::Approx(0.5));
  CHECK_THROWS_AS(optim::CosineWithWarmup(opt, 5, 5), value_error);
}

TEST_CASE("ReduceLROnPlateau: patience, factor, cooldown, min_lr, maximize") {
  optim::SGD<float> opt({.lr = 1.0});
  optim::ReduceLROnPlateau plateau(opt, {.factor = 0.5, .patience = 2, .cooldown = 1, .min_lr = 0.2});
  CHECK(!plateau.step(1.0));
  CHECK(!plateau.step(1.0));  // 1 bad
  CHECK(!plateau.step(1.0));  // 2 bad
  CHECK(plateau.step(1.0));   // 3 > patience: reduce
  CHECK(opt.lr() == doctest::Approx(0.5));
  CHECK(!plateau.step(1.0));  // cooldown
  CHECK(!plateau.step(0.5));  // improvement
  CHECK(!plateau.step(0.6));
  CHECK(!plateau.step(0.6));
  CHECK(plateau.step(0.6));
  CHECK(opt.lr() == doctest::Approx(0.25));
  for (int i = 0; i < 10; ++i) plateau.step(0.6);
  CHECK(opt.lr() == doctest::Approx(0.2));  // floored at min_lr

  optim::SGD<float> opt2({.lr = 1.0});
  optim::ReduceLROnPlateau acc(opt2, {.maximize = true, .factor = 0.1, .patience = 0});
  CHECK(!acc.step(0.5));
  CHECK(!acc.step(0.6));
  CHECK(acc.step(0.6));
  CHECK(opt2.lr() == doctest::Approx(0.1));
}

TEST_CASE("clip_grad_norm scales all gradients to the global norm, returns the norm before") {
  struct Two : nn::Module<Two> {
    Tensor<double, 1> a;
    Tensor<double, 2> b;
    auto members() { return std::make_tuple(nn::param("a", a), nn::param("b", b)); }
  };
  Two g;
  g.a = Tensor<double, 1>{3.0, 0.0};
  g.b = Tensor<double, 2>{{0.0, 4.0}};
  const double norm = optim::clip_grad_norm(g, 1.0);
  CHECK(norm == doctest::Approx(5.0));
  CHECK(g.a(0) == doctest::Approx(0.6).epsilon(1e-6));
  CHECK(g.b(0, 1) == doctest::Approx(0.8).epsilon(1e-6));
  const double again = optim::clip_grad_norm(g, 10.0);  // below max: untouched
  CHECK(again == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(g.a(0) == doctest::Approx(0.6).epsilon(1e-6));
  CHECK_THROWS_AS(optim::clip_grad_norm(g, 0.0), value_error);
}
