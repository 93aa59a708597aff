// The stacked LSTM and GRU against PyTorch's fixtures in float (tolerance 1e-5): a program of its
// own, so that the double and float instantiations compile in parallel and in less memory each.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "nn/recurrent_fixtures.hpp"

using namespace recurrent_test;

TEST_CASE("LSTM in float: 2 layers, bidirectional, initial state: outputs and every gradient equal PyTorch's") {
  check_lstm_fixture<float>(1e-5);
}

TEST_CASE("GRU in float: 2 layers, bidirectional, batch_first: outputs and every gradient equal PyTorch's") {
  check_gru_fixture<float>(1e-5);
}
