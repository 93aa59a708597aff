// Neural-network building blocks: modules, layers, activations, losses, initializers.
#pragma once

#include "tessera/nn/activation.hpp"
#include "tessera/nn/conv.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/loss.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/sequential.hpp"
