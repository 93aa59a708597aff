// Training workflow: fit / evaluate / predict, callbacks and progress, cross-validation and grid search.
#pragma once

#include "tessera/train/callbacks.hpp"
#include "tessera/train/distributed.hpp"
#include "tessera/train/fit.hpp"
#include "tessera/train/model_selection.hpp"
#include "tessera/train/tensorboard.hpp"
