// Random expression trees 150 to 174 of the 200 (see random_trees.hpp). Built at -O0: these
// programs are dominated by compiling many distinct expression types, not by running them.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <utility>

#include "random_trees.hpp"

TEST_CASE("random expression trees 150-174: grad matches finite differences") {
  random_trees::check_range<150>(std::make_index_sequence<25>{});
}
