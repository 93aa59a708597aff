// Every public op through one harness (tests/op_table.hpp, tests/op_harness.hpp): forward in
// double and float against an independent reference, and the gradient against finite differences.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <set>
#include <string>

#include "op_table.hpp"

TEST_CASE("every op: forward against its reference in double and float, gradient against finite differences") {
  std::set<std::string> seen;
  op_harness::for_each_op([&](const char* name, const auto& op, const auto& reference, const auto& o,
                              const auto&... inputs) {
    CHECK_MESSAGE(seen.insert(name).second, "two entries are named " << name);
    op_harness::check_op(name, op, reference, o, inputs...);
  });
  MESSAGE(seen.size() << " ops checked");
  CHECK(seen.size() >= 50);
}
