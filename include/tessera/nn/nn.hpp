// Neural-network building blocks: modules, layers, activations, losses, initializers.
#pragma once

#include "tessera/nn/activation.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/conv.hpp"
#include "tessera/nn/cut.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/loss.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/normalization.hpp"
#include "tessera/nn/recurrent.hpp"
#include "tessera/nn/residual.hpp"
#include "tessera/nn/sequential.hpp"
#include "tessera/nn/summary.hpp"
