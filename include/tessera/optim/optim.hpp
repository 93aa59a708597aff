// Optimizers (each step one fused pass per parameter), learning-rate schedules, gradient clipping.
#pragma once

#include "tessera/optim/optimizer.hpp"
#include "tessera/optim/optimizers.hpp"
#include "tessera/optim/schedule.hpp"
