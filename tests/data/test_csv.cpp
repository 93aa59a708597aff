// The CSV reader: headers, label columns by name or position, quoting, CRLF, blank lines, integer
// and float labels, a write/read round trip; and bad files, each an io_error naming the file, the
// line and the column.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <cstdio>
#include <fstream>
#include <string>

using namespace tessera;

namespace {
std::string error_of(const std::string& text, const data::CsvOptions& o = {}) {
  try {
    data::parse_csv<float, std::int64_t>(text, "bad.csv", o);
  } catch (const io_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("csv: header, label column, quoting, CRLF and blank lines") {
  const std::string text = "a, \"b\" ,label,c\r\n1,2.5,0,-3\r\n\r\n  4 ,\"5e-1\", 2 ,+6\n7,8,1.0,9";
  const auto d = data::parse_csv<float, std::int64_t>(text, "mem.csv", {.header = true, .delimiter = ',', .label = "label", .label_index = -1});
  REQUIRE(d.features.shape() == Shape<2>{3, 3});
  CHECK(d.feature_names == std::vector<std::string>{"a", "b", "c"});
  CHECK(d.label_name == "label");
  CHECK(d.features(0, 1) == 2.5f);
  CHECK(d.features(0, 2) == -3.0f);
  CHECK(d.features(1, 0) == 4.0f);
  CHECK(d.features(1, 1) == 0.5f);
  CHECK(d.features(1, 2) == 6.0f);
  CHECK(d.labels(0) == 0);
  CHECK(d.labels(1) == 2);
  CHECK(d.labels(2) == 1);  // "1.0" is an integer label

  // No header, label by position, float targets, another delimiter.
  const auto r = data::parse_csv<double, double>("0.5;1;2\n1.5;3;4\n", "mem.csv", {.header = false, .delimiter = ';', .label = "", .label_index = 0});
  CHECK(r.labels(1) == 1.5);
  CHECK(r.features(1, 1) == 4.0);
  CHECK(r.feature_names == std::vector<std::string>{"column 2", "column 3"});
  // Default label: the last column.
  CHECK(data::parse_csv<float, std::int64_t>("x,y\n1,2\n", "mem.csv").labels(0) == 2);
}

TEST_CASE("csv: write and read back through a file") {
  const std::string path = "tessera_test_csv_roundtrip.csv";
  const Tensor<float, 2> x({{0.1f, -2.5f}, {3.25f, 1e-7f}});
  const Tensor<std::int64_t, 1> y({4, -1});
  data::write_csv(path, x, y, {"f1", "f2"}, "target");
  const auto d = data::read_csv<float, std::int64_t>(path, {.header = true, .delimiter = ',', .label = "target", .label_index = -1});
  CHECK(d.features(0, 0) == 0.1f);
  CHECK(d.features(1, 1) == 1e-7f);
  CHECK(d.labels(1) == -1);
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(data::read_csv<float>("tessera_no_such_file.csv"), doctest::Contains("tessera_no_such_file.csv: cannot open"), io_error);
}

TEST_CASE("csv: bad files name the file, line and column") {
  CHECK(error_of("a,b\n1,x\n") == "bad.csv: line 2, column 2 (\"b\"): label \"x\" is not an integer in range");
  CHECK(error_of("a,b,c\n1,2,3\n1,zz,3\n") == "bad.csv: line 3, column 2 (\"b\"): \"zz\" is not a number");
  CHECK(error_of("a,b\n1,2.5\n").find("line 2, column 2 (\"b\"): label \"2.5\" is not an integer") != std::string::npos);
  CHECK(error_of("a,b\n1,99999999999999999999\n").find("is not an integer") != std::string::npos);
  CHECK(error_of("a,b\n1,2\n1,2,3\n") == "bad.csv: line 3: has 3 fields, expected 2");
  CHECK(error_of("a,b\n1\n") == "bad.csv: line 2: has 1 fields, expected 2");
  CHECK(error_of("a,b\n,2\n") == "bad.csv: line 2, column 1 (\"a\"): empty field (missing value)");
  CHECK(error_of("a,b\n\"1,2\n").find("line 2, column 1 (\"a\"): unterminated quoted field") != std::string::npos);
  CHECK(error_of("a,b\n\"1\"x,2\n").find("text after a closing quote") != std::string::npos);
  CHECK(error_of("a,b\n1,2\n", {.header = true, .delimiter = ',', .label = "c", .label_index = -1}) ==
        "bad.csv: no column named \"c\" in the header");
  CHECK(error_of("a,b\n1,2\n", {.header = true, .delimiter = ',', .label = "", .label_index = 5}).find("label column 5") !=
        std::string::npos);
  CHECK(error_of("") == "bad.csv: no data (empty file)");
  CHECK(error_of("a,b\n") == "bad.csv: a header but no data rows");
  CHECK(error_of("a\n1\n").find("need at least two columns") != std::string::npos);
  CHECK(error_of(std::string("a,b\n1,2\0\n", 9)).find("NUL byte") != std::string::npos);
  CHECK(error_of("a,b\n1,2\n3,1e999\n").find("line 3, column 2") != std::string::npos);  // out of range
  CHECK_THROWS_AS(data::parse_csv<float>("1,2\n", "x", {.header = false, .delimiter = ',', .label = "a", .label_index = -1}), value_error);
}
