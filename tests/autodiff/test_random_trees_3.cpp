// Random expression trees 75 to 99 of the 200 (see random_trees.hpp). Built at -O0: these
// programs are dominated by compiling many distinct expression types, not by running them.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <utility>

#include "random_trees.hpp"

TEST_CASE("random expression trees 75-99: grad matches finite differences") {
  random_trees::check_range<75>(std::make_index_sequence<25>{});
}
