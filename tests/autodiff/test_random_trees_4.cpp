// Random expression trees 100 to 124 of the 200 (see random_trees.hpp). Built at -O0: these
// programs are dominated by compiling many distinct expression types, not by running them.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <utility>

#include "random_trees.hpp"

TEST_CASE("random expression trees 100-124: grad matches finite differences") {
  random_trees::check_range<100>(std::make_index_sequence<25>{});
}
