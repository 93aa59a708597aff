// Reverse-mode automatic differentiation: grad, value_and_grad, vjp, check_gradients, the tape.
#pragma once

#include "tessera/autodiff/backward.hpp"
#include "tessera/autodiff/grad.hpp"
#include "tessera/autodiff/var.hpp"
#include "tessera/autodiff/check.hpp"
#include "tessera/autodiff/tape.hpp"
#include "tessera/autodiff/scan.hpp"
