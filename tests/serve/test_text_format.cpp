// The protocol-buffer text format parser and TF Serving's two config files read with it: every
// syntax form the format allows, exact "<source>:<line>:<column>: <what>" errors, every validation
// rule of the model server config and the batching parameters, hostile input (deep nesting,
// unterminated tokens, random bytes: only ever a value_error), and reading the files from disk.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tessera/serve/config.hpp"

using tessera::io_error;
using tessera::value_error;
using namespace tessera::serve;

namespace {

/// The message of the value_error that parsing `text` throws, or "" when it parses.
std::string syntax_error(const std::string& text) {
  try {
    parse_text_format(text, "t.txt");
  } catch (const value_error& e) {
    return e.what();
  }
  return "";
}

std::string model_error(const std::string& text) {
  try {
    parse_model_config(text, "models.config");
  } catch (const value_error& e) {
    return e.what();
  }
  return "";
}

std::string batching_error(const std::string& text) {
  try {
    parse_batching_parameters(text, "batching.config");
  } catch (const value_error& e) {
    return e.what();
  }
  return "";
}

/// A model_config_list with one config whose body is `body`.
std::string one_model(const std::string& body) { return "model_config_list { config { " + body + " } }"; }

/// A model config with name and base_path and `extra` appended to the config's body.
std::string model_with(const std::string& extra) { return one_model("name: 'm' base_path: '/m' " + extra); }

/// The integer of the first field of `text`.
std::int64_t int_of(const std::string& text) {
  const TextMessage m = parse_text_format(text, "t.txt");
  return text_int64(m.fields.at(0), "t.txt");
}

const char* const two_models = R"(# TF Serving model server config with two models.
model_config_list {
  config {
    name: 'fashion'
    base_path: '/models/fashion'
    model_platform: 'tessera'
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: 'stable' value: 3 }
    version_labels { key: 'canary' value: 5 }
  }
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_version_policy: {
      specific {
        versions: 7
        versions: 2
        versions: 7
      }
    }
  }
}
)";

/// A unique empty directory under the system temp directory, removed with its files on exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("tessera_text_format_" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = (path / name).string();
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << content;
    return p;
  }
};

}  // namespace

// ---- the generic grammar ------------------------------------------------------------------------

TEST_CASE("text format: scalars keep their kind and text") {
  const TextMessage m = parse_text_format(
      "a: 1 b: -2 c: 0x1F d: 1.5e3 e: true f: LATEST g: 'single' h: \"double\" i: .5 j: 2f k: -inf l: 017", "t");
  REQUIRE(m.fields.size() == 12);
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};
  const std::vector<std::string> texts = {"1",      "-2",     "0x1F", "1.5e3", "true", "LATEST",
                                          "single", "double", ".5",   "2f",    "-inf", "017"};
  using K = TextValue::Kind;
  const std::vector<K> kinds = {K::number, K::number, K::number, K::number, K::identifier, K::identifier,
                                K::string, K::string, K::number, K::number, K::identifier, K::number};
  for (std::size_t i = 0; i < names.size(); ++i) {
    CAPTURE(i);
    CHECK(m.fields[i].name == names[i]);
    CHECK(m.fields[i].value.text == texts[i]);
    CHECK(m.fields[i].value.kind == kinds[i]);
    CHECK_FALSE(m.fields[i].value.is_message());
  }
  CHECK(m.fields[6].value.quoted());
  CHECK(m.fields[7].value.quoted());
  CHECK_FALSE(m.fields[5].value.quoted());
  CHECK(parse_text_format("", "t").fields.empty());
  CHECK(parse_text_format("  # only a comment\n\n", "t").fields.empty());
}

TEST_CASE("text format: message forms { }, : { }, < >, : < > and nesting") {
  const TextMessage m =
      parse_text_format("m { x: 1 } m: { x: 2 } m < x: 3 > m: < x: 4 > e {} o { p { q { r: 'deep' } } }", "t");
  CHECK(m.fields.size() == 6);
  CHECK(m.count("m") == 4);
  const auto ms = m.all("m");
  REQUIRE(ms.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    REQUIRE(ms[i]->value.is_message());
    REQUIRE(ms[i]->value.message.fields.size() == 1);
    CHECK(ms[i]->value.message.fields[0].name == "x");
    CHECK(ms[i]->value.message.fields[0].value.text == std::to_string(i + 1));
  }
  REQUIRE(m.find("e"));
  CHECK(m.find("e")->value.is_message());
  CHECK(m.find("e")->value.message.fields.empty());
  CHECK(m.find("missing") == nullptr);
  CHECK(m.all("missing").empty());
  const TextField* r = m.find("o")->value.message.find("p")->value.message.find("q")->value.message.find("r");
  REQUIRE(r);
  CHECK(r->value.text == "deep");
}

TEST_CASE("text format: separators, comments and whitespace") {
  const TextMessage m = parse_text_format(
      "# leading comment\r\n"
      "a: 1, b: 2; c { d: 3; e: 4, }\n"
      "\tf: 'has # inside' # trailing comment with 'quote\n"
      "# g: 5\n"
      "h:7",
      "t");
  REQUIRE(m.fields.size() == 5);
  CHECK(m.fields[0].name == "a");
  CHECK(m.fields[1].name == "b");
  CHECK(m.fields[2].value.message.fields.size() == 2);
  CHECK(m.fields[3].value.text == "has # inside");
  CHECK(m.fields[4].name == "h");
  CHECK(m.fields[4].value.text == "7");
  CHECK(m.find("g") == nullptr);
  // Exactly one separator after a field.
  CHECK(syntax_error("a: 1,, b: 2") == "t.txt:1:6: expected a field name, got ','");
  CHECK(syntax_error(", a: 1") == "t.txt:1:1: expected a field name, got ','");
}

TEST_CASE("text format: string escapes, quotes and adjacent strings") {
  const TextMessage m = parse_text_format(
      R"(a: 'x\ny\tz\\q\'s\"d' b: "\x41\x4a\x7" c: '\101\60\0' d: 'caf\u00e9 \U0001F600' e: "it's" f: 'say "hi"')"
      R"( g: 'ab' "cd" 'e' h: '' i: '\a\b\f\v\r\?')",
      "t");
  REQUIRE(m.fields.size() == 9);
  CHECK(m.fields[0].value.text == "x\ny\tz\\q's\"d");
  CHECK(m.fields[1].value.text == std::string("AJ\x07"));
  CHECK(m.fields[2].value.text == std::string("A0\0", 3));
  CHECK(m.fields[3].value.text == "caf\xC3\xA9 \xF0\x9F\x98\x80");
  CHECK(m.fields[4].value.text == "it's");
  CHECK(m.fields[5].value.text == "say \"hi\"");
  CHECK(m.fields[6].value.text == "abcde");
  CHECK(m.fields[6].value.quoted());
  CHECK(m.fields[7].value.text.empty());
  CHECK(m.fields[7].value.quoted());
  CHECK(m.fields[8].value.text == "\a\b\f\v\r?");
  // Strings of two fields are not joined.
  const TextMessage two = parse_text_format("a: 'x' b: 'y'", "t");
  REQUIRE(two.fields.size() == 2);
  CHECK(two.fields[0].value.text == "x");

  CHECK(syntax_error(R"(a: 'bad \q escape')") == R"(t.txt:1:9: unknown escape '\q')");
  CHECK(syntax_error(R"(a: '\x')") == R"(t.txt:1:5: escape '\x' needs a hexadecimal digit)");
  CHECK(syntax_error(R"(a: '\u12')") == R"(t.txt:1:5: escape '\u' needs 4 hexadecimal digits)");
  CHECK(syntax_error(R"(a: '\uD800')") == R"(t.txt:1:5: escape '\u' is not a Unicode code point)");
  CHECK(syntax_error(R"(a: '\777')") == R"(t.txt:1:5: octal escape is more than \377)");
  CHECK(syntax_error("a: 'no end") == "t.txt:1:4: unterminated string");
  CHECK(syntax_error("a: \"two\nlines\"") == "t.txt:1:4: unterminated string");
  CHECK(syntax_error("a: 'ends in backslash\\") == "t.txt:1:4: unterminated string");
  CHECK(syntax_error("a: 'mixed\"") == "t.txt:1:4: unterminated string");
}

TEST_CASE("text format: lists of scalars and of messages") {
  const TextMessage m = parse_text_format("v: [1, -2, 0x3] w: [] s: ['a', \"b\" 'c'] n: [{x: 1}, <x: 2>] v: 4", "t");
  const auto v = m.all("v");
  REQUIRE(v.size() == 4);
  CHECK(v[0]->value.text == "1");
  CHECK(v[1]->value.text == "-2");
  CHECK(v[2]->value.text == "0x3");
  CHECK(v[3]->value.text == "4");
  CHECK(m.count("w") == 0);
  const auto s = m.all("s");
  REQUIRE(s.size() == 2);
  CHECK(s[1]->value.text == "bc");
  const auto n = m.all("n");
  REQUIRE(n.size() == 2);
  CHECK(n[1]->value.message.find("x")->value.text == "2");
  // Each element keeps its own position.
  CHECK(v[1]->value.column == 8);

  CHECK(syntax_error("v: [1 2]") == "t.txt:1:7: expected ',' or ']' in the list for field 'v', got '2'");
  CHECK(syntax_error("v: [1,]") == "t.txt:1:7: expected a value for field 'v', got ']'");
  CHECK(syntax_error("v: [1,\n 2") == "t.txt:2:3: unterminated list for field 'v' opened at 1:4");
  CHECK(syntax_error("v: [[1]]") == "t.txt:1:5: expected a value for field 'v', got '['");
  CHECK(syntax_error("v [1]") == "t.txt:1:3: expected ':' or '{' after field name 'v'");
}

TEST_CASE("text format: fields and values know their line and column") {
  const TextMessage m = parse_text_format("a: 1\n  b {\n    c:   'x'\n  }\n", "t");
  REQUIRE(m.fields.size() == 2);
  CHECK(m.fields[0].line == 1);
  CHECK(m.fields[0].column == 1);
  CHECK(m.fields[0].value.line == 1);
  CHECK(m.fields[0].value.column == 4);
  CHECK(m.fields[1].line == 2);
  CHECK(m.fields[1].column == 3);
  CHECK(m.fields[1].value.line == 2);
  CHECK(m.fields[1].value.column == 5);
  CHECK(m.fields[1].value.message.line == 2);
  CHECK(m.fields[1].value.message.column == 5);
  const TextField& c = m.fields[1].value.message.fields.at(0);
  CHECK(c.line == 3);
  CHECK(c.column == 5);
  CHECK(c.value.column == 10);
  // A UTF-8 byte order mark is skipped and does not count as columns.
  const TextMessage bom = parse_text_format(std::string("\xEF\xBB\xBF") + "a: 1", "t");
  REQUIRE(bom.fields.size() == 1);
  CHECK(bom.fields[0].column == 1);
}

TEST_CASE("text format: syntax errors name source, line and column") {
  CHECK(syntax_error("model_config_list {\n  config {\n    name: 'a'\n base_path '/models/a'\n  }\n}\n") ==
        "t.txt:4:12: expected ':' or '{' after field name 'base_path'");
  CHECK(syntax_error("a {\n  b: 1\n") == "t.txt:3:1: unterminated message: expected '}' to close 'a' opened at 1:3");
  CHECK(syntax_error("a < b: 1 }") == "t.txt:1:10: expected '>' to close 'a' opened at 1:3, got '}'");
  CHECK(syntax_error("a: 1 }") == "t.txt:1:6: unexpected '}' with no message open");
  CHECK(syntax_error("a:") == "t.txt:1:3: expected a value for field 'a', got end of input");
  CHECK(syntax_error("a: }") == "t.txt:1:4: expected a value for field 'a', got '}'");
  CHECK(syntax_error("a: - b") == "t.txt:1:6: expected a number after '-' for field 'a', got 'b'");
  CHECK(syntax_error("1: 2") == "t.txt:1:1: expected a field name, got '1'");
  CHECK(syntax_error("'a': 2") == "t.txt:1:1: expected a field name, got the string \"a\"");
  CHECK(syntax_error("[ext.field]: 1") == "t.txt:1:1: extension and Any field names ('[...]') are not supported");
  CHECK(syntax_error("a: 1 @") == "t.txt:1:6: unexpected character '@'");
  CHECK(syntax_error("a: 1\n\x01") == "t.txt:2:1: unexpected character byte 0x01");
  CHECK(syntax_error(std::string("a: 1 \0", 6)) == "t.txt:1:6: unexpected character byte 0x00");
  CHECK(syntax_error("a: \xC3\xA9") == "t.txt:1:4: unexpected character byte 0xC3");
  // Numbers that run into letters or have a bad form are one bad token.
  CHECK(syntax_error("a: 12ab") == "t.txt:1:4: invalid number '12ab'");
  CHECK(syntax_error("a: 1.2.3") == "t.txt:1:4: invalid number '1.2.3'");
  CHECK(syntax_error("a: 09") == "t.txt:1:4: invalid number '09': a number with a leading 0 is octal");
  CHECK(syntax_error("a: 0x") == "t.txt:1:4: invalid number '0x': expected hexadecimal digits after '0x'");
  CHECK(syntax_error("a: 1e+") == "t.txt:1:4: invalid number '1e+': expected digits in the exponent");
  // The source is whatever the caller names.
  CHECK_THROWS_WITH_AS(parse_text_format("x", "--model_config_file=/etc/m.config"),
                       "--model_config_file=/etc/m.config:1:2: expected ':' or '{' after field name 'x'", value_error);
}

TEST_CASE("text format: integers, strings and bools of fields") {
  CHECK(int_of("a: 0") == 0);
  CHECK(int_of("a: 42") == 42);
  CHECK(int_of("a: -42") == -42);
  CHECK(int_of("a: 0x1f") == 31);
  CHECK(int_of("a: 0X1F") == 31);
  CHECK(int_of("a: -0x10") == -16);
  CHECK(int_of("a: 017") == 15);  // leading 0: octal, as in protobuf
  CHECK(int_of("a: 9223372036854775807") == std::numeric_limits<std::int64_t>::max());
  CHECK(int_of("a: -9223372036854775808") == std::numeric_limits<std::int64_t>::min());
  CHECK(int_of("a: 0x7fffffffffffffff") == std::numeric_limits<std::int64_t>::max());
  CHECK_THROWS_WITH_AS(int_of("a: 9223372036854775808"),
                       "t.txt:1:4: integer '9223372036854775808' for field 'a' is out of range (64-bit signed)",
                       value_error);
  CHECK_THROWS_WITH_AS(int_of("a: -9223372036854775809"), doctest::Contains("out of range"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a: 0x8000000000000000"), doctest::Contains("out of range"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a: 99999999999999999999999"), doctest::Contains("out of range"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a: 1.5"), "t.txt:1:4: field 'a' expects an integer, got '1.5'", value_error);
  CHECK_THROWS_WITH_AS(int_of("a: 1e3"), doctest::Contains("expects an integer, got '1e3'"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a: 2f"), doctest::Contains("expects an integer, got '2f'"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a: '3'"), "t.txt:1:4: field 'a' expects an integer, got a string", value_error);
  CHECK_THROWS_WITH_AS(int_of("a: true"), doctest::Contains("expects an integer, got 'true'"), value_error);
  CHECK_THROWS_WITH_AS(int_of("a { }"), doctest::Contains("expects an integer, got a message"), value_error);

  const TextMessage m = parse_text_format("s: 'x' u: x t: true f: False o: 1 z: 0 n: 2", "t");
  CHECK(text_string(m.fields[0], "t") == "x");
  CHECK_THROWS_WITH_AS(text_string(m.fields[1], "t"), "t:1:11: field 'u' expects a quoted string, got 'x'",
                       value_error);
  CHECK(text_bool(m.fields[2], "t"));
  CHECK_FALSE(text_bool(m.fields[3], "t"));
  CHECK(text_bool(m.fields[4], "t"));
  CHECK_FALSE(text_bool(m.fields[5], "t"));
  CHECK_THROWS_WITH_AS(text_bool(m.fields[6], "t"), doctest::Contains("field 'n' expects true or false, got '2'"),
                       value_error);
  CHECK_THROWS_WITH_AS(text_bool(m.fields[0], "t"), doctest::Contains("got a string"), value_error);
}

// ---- hostile input ------------------------------------------------------------------------------

TEST_CASE("text format: nesting is limited to max_text_nesting levels") {
  REQUIRE(max_text_nesting == 100);
  auto nested = [](std::size_t levels, const char* open, const char* close) {
    std::string s;
    for (std::size_t i = 0; i < levels; ++i) s += std::string("a ") + open;
    for (std::size_t i = 0; i < levels; ++i) s += close;
    return s;
  };
  const TextMessage ok = parse_text_format(nested(100, "{", "}"), "t");
  std::size_t depth = 0;
  for (const TextMessage* m = &ok; !m->fields.empty(); m = &m->fields[0].value.message) ++depth;
  CHECK(depth == 100);
  CHECK_NOTHROW(parse_text_format(nested(100, "<", ">"), "t"));
  CHECK(syntax_error(nested(101, "{", "}")) == "t.txt:1:303: messages nested deeper than 100 levels (at field 'a')");
  CHECK_THROWS_WITH_AS(parse_text_format(nested(101, "<", ">"), "t"), doctest::Contains("nested deeper than 100"),
                       value_error);
  // 100000 open braces, with and without names, and with ':'.
  CHECK_THROWS_WITH_AS(parse_text_format(nested(100000, "{", ""), "t"), doctest::Contains("nested deeper than 100"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_text_format(nested(100000, ": {", ""), "t"), doctest::Contains("nested deeper than 100"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_text_format("a " + std::string(100000, '{'), "t"), "t:1:4: expected a field name, got '{'",
                       value_error);
  CHECK_THROWS_WITH_AS(parse_text_format("a: " + std::string(100000, '['), "t"), doctest::Contains("expected a value"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_text_format(std::string(100000, '}'), "t"), doctest::Contains("no message open"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config("model_config_list { " + nested(100000, "{", ""), "t"),
                       doctest::Contains("nested deeper than 100"), value_error);
}

TEST_CASE("text format: unterminated and truncated input") {
  const std::string full = two_models;
  std::size_t failures = 0;
  // Every prefix of a valid config either parses or is a value_error naming the source.
  for (std::size_t n = 0; n <= full.size(); ++n) {
    try {
      parse_model_config(full.substr(0, n), "cut");
    } catch (const value_error& e) {
      ++failures;
      CHECK(std::string(e.what()).rfind("cut:", 0) == 0);
    }
  }
  CHECK(failures == full.size() - 1);  // only the whole text, with or without its last newline, is valid
  CHECK(syntax_error("a { b { c: 'x' }") ==
        "t.txt:1:17: unterminated message: expected '}' to close 'a' opened at 1:3");
  CHECK(syntax_error("a: '") == "t.txt:1:4: unterminated string");
  CHECK(syntax_error("a: \"abc") == "t.txt:1:4: unterminated string");
}

TEST_CASE("text format: random input only ever parses or throws value_error") {
  // Strings made of the grammar's own characters (so that they get past the lexer often), plus a
  // few bytes outside it, and random edits of a valid config. A fixed seed keeps this reproducible.
  const std::string alphabet = "{}<>[]:,;#'\"\\-.0123456789xXeEf_abnuUtrv \n\t{}:'";
  std::vector<std::string> words;
  {
    const std::string list =
        "model_config_list config name base_path model_version_policy latest all specific versions num_versions "
        "version_labels key value max_batch_size 'm' 3 { } : < > [ ] ,";
    for (std::size_t at = 0, end = 0; at < list.size(); at = end + 1) {
      end = std::min(list.find(' ', at), list.size());
      words.push_back(list.substr(at, end - at));
    }
  }
  std::mt19937 rng(20240611u);
  std::size_t parsed = 0, rejected = 0, other = 0;
  auto run = [&](const std::string& text) {
    const auto attempt = [&](auto&& parse) {
      try {
        parse();
        ++parsed;
      } catch (const value_error& e) {
        ++rejected;
        if (std::string(e.what()).rfind("fuzz:", 0) != 0) ++other;
      } catch (...) {
        ++other;
      }
    };
    attempt([&] { parse_text_format(text, "fuzz"); });
    attempt([&] { parse_model_config(text, "fuzz"); });
    attempt([&] { parse_batching_parameters(text, "fuzz"); });
  };
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const std::size_t length = rng() % 64;
    for (std::size_t k = 0; k < length; ++k) {
      const unsigned r = rng() % 100;
      if (r < 3) {
        s += static_cast<char>(rng() % 256);
      } else if (r < 40) {
        s += words[rng() % words.size()] + " ";
      } else {
        s += alphabet[rng() % alphabet.size()];
      }
    }
    run(s);
  }
  const std::string base = two_models;
  for (int i = 0; i < 2000; ++i) {
    std::string s = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1 + rng() % 8);
          break;
        default:
          s.insert(at, words[rng() % words.size()]);
          break;
      }
    }
    run(s);
  }
  CHECK(other == 0);
  // Both outcomes happen, so the loop tests something.
  CHECK(parsed > 100);
  CHECK(rejected > 1000);
}

// ---- the model server config --------------------------------------------------------------------

TEST_CASE("model config: TF Serving's example with two models") {
  const std::vector<ModelConfig> models = parse_model_config(two_models, "models.config");
  REQUIRE(models.size() == 2);
  const ModelConfig& f = models[0];
  CHECK(f.name == "fashion");
  CHECK(f.base_path == "/models/fashion");
  CHECK(f.platform == "tessera");
  CHECK(f.policy.kind == VersionPolicy::Kind::latest);
  CHECK(f.policy.num_versions == 2);
  CHECK(f.policy.versions.empty());
  CHECK(f.labels == std::map<std::string, std::int64_t>{{"canary", 5}, {"stable", 3}});
  const ModelConfig& m = models[1];
  CHECK(m.name == "mnist");
  CHECK(m.base_path == "/models/mnist");
  CHECK(m.platform.empty());
  CHECK(m.policy.kind == VersionPolicy::Kind::specific);
  CHECK(m.policy.versions == std::vector<std::int64_t>{2, 7});  // sorted, duplicates dropped
  CHECK(m.labels.empty());
}

TEST_CASE("model config: defaults, the all policy, list syntax and an empty list") {
  const auto models = parse_model_config(
      "model_config_list: {\n"
      "  config: { name: 'a', base_path: '/a' }\n"
      "  config < name: 'b'; base_path: '/b'; model_version_policy < all {} > >\n"
      "  config { name: 'c' base_path: '/c' model_version_policy { latest {} } model_platform: 'tensorflow' }\n"
      "  config { name: 'd' base_path: '/d' model_version_policy { specific { versions: [3, 0, 1] } } }\n"
      "  config { name: 'e' base_path: '/e' model_version_policy {} version_labels { key: 'x-1_Y' value: 0 } }\n"
      "}\n",
      "models.config");
  REQUIRE(models.size() == 5);
  CHECK(models[0].policy.kind == VersionPolicy::Kind::latest);
  CHECK(models[0].policy.num_versions == 1);
  CHECK(models[0].platform.empty());
  CHECK(models[1].policy.kind == VersionPolicy::Kind::all);
  CHECK(models[2].policy.kind == VersionPolicy::Kind::latest);
  CHECK(models[2].policy.num_versions == 1);
  CHECK(models[2].platform == "tensorflow");
  CHECK(models[3].policy.versions == std::vector<std::int64_t>{0, 1, 3});
  CHECK(models[4].policy.kind == VersionPolicy::Kind::latest);
  CHECK(models[4].labels.at("x-1_Y") == 0);

  CHECK(parse_model_config("model_config_list {}", "m").empty());
  CHECK(parse_model_config("# comment\nmodel_config_list: { }  # no models yet\n", "m").empty());
}

TEST_CASE("model config: every validation error") {
  // No model_config_list at all.
  CHECK(model_error("") ==
        "models.config: no model_config_list (a model config file holds 'model_config_list "
        "{ config { name: ... base_path: ... } }')");
  CHECK_THROWS_WITH_AS(parse_model_config("# nothing\n", "m"), doctest::Contains("no model_config_list"), value_error);
  // Unknown fields, at every level, name the field and the allowed ones.
  CHECK(model_error("model_config_list {}\ncustom_model_config {}") ==
        "models.config:2:1: unknown field 'custom_model_config' in the model server config; allowed fields: "
        "model_config_list");
  CHECK(model_error("model_config_list { model {} }") ==
        "models.config:1:21: unknown field 'model' in model_config_list; allowed fields: config");
  CHECK(model_error(model_with("model_type: 1")) ==
        "models.config:1:56: unknown field 'model_type' in model_config_list.config; allowed fields: name, base_path, "
        "model_platform, model_version_policy, version_labels");
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { newest {} }"), "m"),
                       doctest::Contains("unknown field 'newest' in model_version_policy of model 'm'; allowed "
                                         "fields: latest, all, specific"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { latest { versions: 1 } }"), "m"),
                       doctest::Contains("unknown field 'versions' in latest policy of model 'm'; allowed fields: "
                                         "num_versions"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { all { num_versions: 1 } }"), "m"),
                       doctest::Contains("unknown field 'num_versions' in all policy of model 'm'; allowed fields: "
                                         "(none)"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { specific { version: 1 } }"), "m"),
                       doctest::Contains("unknown field 'version' in specific policy of model 'm'"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a' value: 1 label: 'x' }"), "m"),
                       doctest::Contains("unknown field 'label' in version_labels of model 'm'; allowed fields: key, "
                                         "value"),
                       value_error);
  // Missing or empty name and base_path.
  CHECK(model_error("model_config_list {\n  config { base_path: '/a' }\n}") ==
        "models.config:2:3: model config is missing 'name'");
  CHECK(model_error("model_config_list {\n  config { name: 'a' }\n}") ==
        "models.config:2:3: model 'a' is missing 'base_path'");
  CHECK_THROWS_WITH_AS(parse_model_config(one_model("name: '' base_path: '/a'"), "m"),
                       doctest::Contains("model name is empty"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(one_model("name: 'a' base_path: ''"), "m"),
                       doctest::Contains("base_path of model 'a' is empty"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(one_model("name: a base_path: '/a'"), "m"),
                       doctest::Contains("field 'name' expects a quoted string, got 'a'"), value_error);
  // Duplicate model names.
  CHECK(model_error("model_config_list {\n"
                    "  config { name: 'a' base_path: '/a' }\n"
                    "  config { name: 'a' base_path: '/b' }\n"
                    "}") == "models.config:3:18: duplicate model name 'a' (first at line 2)");
  // A field given twice where it does not repeat.
  CHECK(model_error(one_model("name: 'a'\nname: 'b' base_path: '/a'")) ==
        "models.config:2:1: field 'name' given more than once in model_config_list.config (first at line 1)");
  CHECK_THROWS_WITH_AS(parse_model_config("model_config_list {} model_config_list {}", "m"),
                       doctest::Contains("field 'model_config_list' given more than once"), value_error);
  CHECK_THROWS_WITH_AS(
      parse_model_config(model_with("model_version_policy { all {} } model_version_policy { all {} }"), "m"),
      doctest::Contains("field 'model_version_policy' given more than once"), value_error);
  CHECK_THROWS_WITH_AS(
      parse_model_config(model_with("model_version_policy { latest { num_versions: 1 num_versions: 2 } }"), "m"),
      doctest::Contains("field 'num_versions' given more than once"), value_error);
  // num_versions < 1.
  CHECK(model_error(model_with("model_version_policy { latest { num_versions: 0 } }")) ==
        "models.config:1:102: num_versions of model 'm' must be >= 1, got 0");
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { latest { num_versions: -3 } }"), "m"),
                       doctest::Contains("num_versions of model 'm' must be >= 1, got -3"), value_error);
  // Empty specific, negative versions.
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { specific {} }"), "m"),
                       doctest::Contains("specific policy of model 'm' lists no versions"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { specific { versions: [] } }"), "m"),
                       doctest::Contains("lists no versions"), value_error);
  CHECK_THROWS_WITH_AS(
      parse_model_config(model_with("model_version_policy { specific { versions: 1 versions: -1 } }"), "m"),
      doctest::Contains("version of model 'm' must be >= 0, got -1"), value_error);
  // More than one policy kind.
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { latest {} all {} }"), "m"),
                       doctest::Contains("model_version_policy of model 'm' sets more than one policy ('latest' and "
                                         "'all'); choose one of latest, all, specific"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { all {} all {} }"), "m"),
                       doctest::Contains("field 'all' given more than once"), value_error);
  // Labels: negative value, duplicate key, bad key, missing key or value.
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a' value: -1 }"), "m"),
                       doctest::Contains("version label 'a' of model 'm' must name a version >= 0, got -1"),
                       value_error);
  CHECK(model_error(model_with("version_labels { key: 'a' value: 1 }\nversion_labels { key: 'a' value: 2 }")) ==
        "models.config:2:23: version label 'a' of model 'm' given more than once");
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'has space' value: 1 }"), "m"),
                       doctest::Contains("version label 'has space' of model 'm' must be letters, digits, '_' and '-' "
                                         "only"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a/b' value: 1 }"), "m"),
                       doctest::Contains("must be letters, digits"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: '' value: 1 }"), "m"),
                       doctest::Contains("version label '' of model 'm' must be letters"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { value: 1 }"), "m"),
                       doctest::Contains("version_labels entry of model 'm' has no 'key'"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a' }"), "m"),
                       doctest::Contains("version_labels entry of model 'm' has no 'value'"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a' value: '1' }"), "m"),
                       doctest::Contains("field 'value' expects an integer, got a string"), value_error);
  // A scalar where a message is expected, and the other way round.
  CHECK(model_error("model_config_list: 3") ==
        "models.config:1:20: field 'model_config_list' in the model server config expects a message "
        "('model_config_list { ... }'), got a scalar value");
  CHECK_THROWS_WITH_AS(parse_model_config("model_config_list { config: 'x' }", "m"),
                       doctest::Contains("field 'config' in model_config_list expects a message"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy: 'latest'"), "m"),
                       doctest::Contains("field 'model_version_policy' in model_config_list.config expects a message"),
                       value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { latest: 2 }"), "m"),
                       doctest::Contains("field 'latest' in model_version_policy of model 'm' expects a message"),
                       value_error);
  CHECK(model_error(one_model("name { } base_path: '/a'")) ==
        "models.config:1:35: field 'name' in model_config_list.config expects a scalar value ('name: ...'), got a "
        "message");
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { latest { num_versions { } } }"), "m"),
                       doctest::Contains("field 'num_versions' in latest policy of model 'm' expects a scalar value"),
                       value_error);
  // Integer overflow.
  CHECK_THROWS_WITH_AS(
      parse_model_config(model_with("model_version_policy { specific { versions: 99999999999999999999 } }"), "m"),
      doctest::Contains("integer '99999999999999999999' for field 'versions' is out of range"), value_error);
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("version_labels { key: 'a' value: 0x10000000000000000 }"), "m"),
                       doctest::Contains("out of range"), value_error);
  // Floats are not versions.
  CHECK_THROWS_WITH_AS(parse_model_config(model_with("model_version_policy { specific { versions: 1.0 } }"), "m"),
                       doctest::Contains("field 'versions' expects an integer, got '1.0'"), value_error);
}

// ---- the batching parameters --------------------------------------------------------------------

TEST_CASE("batching parameters: TF Serving's example, defaults and partial files") {
  const BatchingParameters p = parse_batching_parameters(
      "max_batch_size { value: 64 }\n"
      "batch_timeout_micros { value: 0 }\n"
      "max_enqueued_batches { value: 1000 }\n"
      "num_batch_threads { value: 4 }\n",
      "batching.config");
  CHECK(p.max_batch_size == 64);
  CHECK(p.batch_timeout_micros == 0);
  CHECK(p.max_enqueued_batches == 1000);
  CHECK(p.num_batch_threads == 4);

  const BatchingParameters d = parse_batching_parameters("# all defaults\n", "b");
  CHECK(d.max_batch_size == 32);
  CHECK(d.batch_timeout_micros == 1000);
  CHECK(d.max_enqueued_batches == 100);
  CHECK(d.num_batch_threads == 0);

  const BatchingParameters q =
      parse_batching_parameters("max_batch_size: { value: 0x10 }, num_batch_threads < value: 0 >", "b");
  CHECK(q.max_batch_size == 16);
  CHECK(q.batch_timeout_micros == 1000);
  CHECK(q.max_enqueued_batches == 100);
  CHECK(q.num_batch_threads == 0);
}

TEST_CASE("batching parameters: every validation error") {
  for (const char* unsupported :
       {"allowed_batch_sizes: 8", "allowed_batch_sizes: [8, 16]", "pad_variable_length_inputs: true",
        "thread_pool_name { value: 'pool' }", "enable_large_batch_splitting { value: true }",
        "max_execution_batch_size { value: 8 }"}) {
    CAPTURE(unsupported);
    const std::string text = std::string("max_batch_size { value: 8 }\n") + unsupported;
    const std::string name = std::string(unsupported).substr(0, std::string(unsupported).find_first_of(" :"));
    CHECK(batching_error(text) ==
          "batching.config:2:1: batching parameter '" + name + "' is not supported by tessera's server yet");
  }
  CHECK(batching_error("max_batch_size { value: 8 }\nbatch_size { value: 8 }") ==
        "batching.config:2:1: unknown field 'batch_size' in the batching parameters; allowed fields: max_batch_size, "
        "batch_timeout_micros, max_enqueued_batches, num_batch_threads");
  CHECK(batching_error("max_batch_size { value: 0 }") == "batching.config:1:25: max_batch_size must be >= 1, got 0");
  CHECK_THROWS_WITH_AS(parse_batching_parameters("batch_timeout_micros { value: -1 }", "b"),
                       doctest::Contains("batch_timeout_micros must be >= 0, got -1"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_enqueued_batches { value: 0 }", "b"),
                       doctest::Contains("max_enqueued_batches must be >= 1, got 0"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("num_batch_threads { value: -2 }", "b"),
                       doctest::Contains("num_batch_threads must be >= 0, got -2"), value_error);
  CHECK(batching_error("max_batch_size: 32") ==
        "batching.config:1:17: field 'max_batch_size' in the batching parameters expects a message "
        "('max_batch_size { ... }'), got a scalar value");
  CHECK(batching_error("max_batch_size {}") ==
        "batching.config:1:1: max_batch_size has no value (write 'max_batch_size { value: N }')");
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { val: 3 }", "b"),
                       doctest::Contains("unknown field 'val' in max_batch_size; allowed fields: value"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value: 3 value: 4 }", "b"),
                       doctest::Contains("field 'value' given more than once in max_batch_size"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value: 3 } max_batch_size { value: 4 }", "b"),
                       doctest::Contains("field 'max_batch_size' given more than once"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value { } }", "b"),
                       doctest::Contains("field 'value' in max_batch_size expects a scalar value"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value: 9223372036854775808 }", "b"),
                       doctest::Contains("out of range"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value: 1.5 }", "b"),
                       doctest::Contains("field 'value' expects an integer, got '1.5'"), value_error);
  CHECK_THROWS_WITH_AS(parse_batching_parameters("max_batch_size { value: 3 ", "b"),
                       doctest::Contains("unterminated message"), value_error);
}

// ---- files --------------------------------------------------------------------------------------

TEST_CASE("config files are read from disk; unreadable files are io_errors naming the path") {
  const TempDir dir;
  const std::string models = dir.write("models.config", two_models);
  const auto configs = read_model_config_file(models);
  REQUIRE(configs.size() == 2);
  CHECK(configs[0].name == "fashion");
  CHECK(configs[1].policy.versions == std::vector<std::int64_t>{2, 7});

  const std::string batching =
      dir.write("batching.config", "max_batch_size { value: 8 }\nnum_batch_threads { value: 2 }\n");
  const BatchingParameters p = read_batching_parameters_file(batching);
  CHECK(p.max_batch_size == 8);
  CHECK(p.num_batch_threads == 2);
  CHECK(p.batch_timeout_micros == 1000);

  // Errors in a file name the file.
  const std::string bad = dir.write("bad.config", "model_config_list {\n  config { name: 'a' }\n}\n");
  CHECK_THROWS_WITH_AS(read_model_config_file(bad), (bad + ":2:3: model 'a' is missing 'base_path'").c_str(),
                       value_error);
  const std::string bad_batching = dir.write("bad_batching.config", "\n\nmax_batch_size { value: -1 }");
  CHECK_THROWS_WITH_AS(read_batching_parameters_file(bad_batching),
                       (bad_batching + ":3:25: max_batch_size must be >= 1, got -1").c_str(), value_error);
  // An empty file has no model_config_list, and all-default batching parameters.
  const std::string empty = dir.write("empty.config", "");
  CHECK_THROWS_WITH_AS(read_model_config_file(empty), doctest::Contains((empty + ": no model_config_list").c_str()),
                       value_error);
  CHECK(read_batching_parameters_file(empty).max_batch_size == 32);

  const std::string missing = (dir.path / "missing.config").string();
  CHECK_THROWS_WITH_AS(read_model_config_file(missing),
                       (missing + ": cannot open for reading: No such file or directory").c_str(), io_error);
  CHECK_THROWS_WITH_AS(read_batching_parameters_file(missing), doctest::Contains((missing + ": cannot open").c_str()),
                       io_error);
  // A directory opens on some systems but cannot be read.
  CHECK_THROWS_WITH_AS(read_model_config_file(dir.path.string()),
                       doctest::Contains((dir.path.string() + ": cannot").c_str()), io_error);
}
