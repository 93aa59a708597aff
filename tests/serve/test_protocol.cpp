// The two wire formats as pure functions: TensorFlow Serving's predict bodies (row and column
// forms, NaN/Infinity tokens, b64 values, every malformed case) and the open inference protocol's
// infer bodies (JSON and binary tensor data).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include <tessera/serve/protocol.hpp>

namespace serve = tessera::serve;
using serve::DataType;

namespace {
serve::Signature one_input() {
  serve::Signature s;
  s.inputs = {{"x", DataType::float32, {-1, 2}}};
  s.outputs = {{"y", DataType::float32, {-1, 2}}};
  return s;
}
serve::Signature two_inputs() {
  serve::Signature s;
  s.inputs = {{"a", DataType::float32, {-1, 2}}, {"n", DataType::int64, {-1}}};
  s.outputs = {{"p", DataType::float32, {-1, 2}}, {"k", DataType::int64, {-1}}};
  return s;
}
std::vector<float> floats(const serve::HostTensor& t) { return {t.data<float>(), t.data<float>() + t.elements()}; }
int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const serve::ServingError& e) {
    return e.status();
  }
  return 200;
}
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("predict: row form, column form, one or several inputs") {
  auto r = serve::parse_predict(R"({"instances": [[1, 2], [3.5, -4]]})", one_input());
  CHECK(r.row_form);
  REQUIRE(r.inputs.size() == 1);
  CHECK(r.inputs[0].shape == std::vector<std::int64_t>{2, 2});
  CHECK(floats(r.inputs[0]) == std::vector<float>{1, 2, 3.5f, -4});
  r = serve::parse_predict(R"({"signature_name": "serving_default", "inputs": [[1, 2]]})", one_input());
  CHECK_FALSE(r.row_form);
  CHECK(r.inputs[0].shape == std::vector<std::int64_t>{1, 2});
  r = serve::parse_predict(R"({"inputs": {"x": [[5, 6], [7, 8], [9, 10]]}})", one_input());
  CHECK(floats(r.inputs[0]) == std::vector<float>{5, 6, 7, 8, 9, 10});
  r = serve::parse_predict(R"({"instances": [{"x": [1, 2]}]})", one_input());
  CHECK(r.inputs[0].shape == std::vector<std::int64_t>{1, 2});

  // Two inputs: named in each instance (in any order), or as columns.
  r = serve::parse_predict(R"({"instances": [{"n": 3, "a": [1, 2]}, {"a": [3, 4], "n": -9}]})", two_inputs());
  REQUIRE(r.inputs.size() == 2);
  CHECK(floats(r.inputs[0]) == std::vector<float>{1, 2, 3, 4});
  CHECK(r.inputs[1].shape == std::vector<std::int64_t>{2});
  CHECK(r.inputs[1].data<std::int64_t>()[0] == 3);
  CHECK(r.inputs[1].data<std::int64_t>()[1] == -9);
  r = serve::parse_predict(R"({"inputs": {"a": [[1, 2]], "n": [12345678901]}})", two_inputs());
  CHECK(r.inputs[1].data<std::int64_t>()[0] == 12345678901);
}

TEST_CASE("predict: NaN and Infinity tokens, but not inside strings") {
  const auto r = serve::parse_predict(R"({"instances": [[NaN, Infinity], [-Infinity, 1e3]]})", one_input());
  const auto v = floats(r.inputs[0]);
  CHECK(std::isnan(v[0]));
  CHECK(v[1] == INFINITY);
  CHECK(v[2] == -INFINITY);
  CHECK(v[3] == 1000);
  // A string that spells a token is still a string (and not a number).
  CHECK(message_of([&] { serve::parse_predict(R"({"instances": [["NaN", 1]]})", one_input()); })
            .find("JSON value \"NaN\" is not a number") != std::string::npos);
  // The rewrite keeps escaped quotes inside strings intact.
  CHECK(serve::detail::rewrite_nonfinite_tokens(R"({"s": "a\"NaN", "v": NaN})") ==
        std::string(R"({"s": "a\"NaN", "v": "\u0001NaN"})"));
  // Outputs write the tokens back.
  serve::HostTensor y(DataType::float32, {1, 2});
  y.data<float>()[0] = NAN;
  y.data<float>()[1] = -INFINITY;
  CHECK(serve::predict_response({y}, one_input(), true) == R"({"predictions":[[NaN,-Infinity]]})");
}

TEST_CASE("predict: b64 values need a string input, which tessera's models do not take") {
  const std::string m = message_of([&] { serve::parse_predict(R"({"instances": [[{"b64": "AAAA"}, 1]]})", one_input()); });
  CHECK(m.find("input x: a {\"b64\": ...} value needs a string input, and this one is float32") != std::string::npos);
  CHECK(status_of([&] { serve::parse_predict(R"({"inputs": {"b64": "AAAA"}})", one_input()); }) == 400);
}

TEST_CASE("predict: every malformed request is a 400 that says what is wrong") {
  const auto sig = one_input();
  auto check = [&](const char* body, const char* expected) {
    CAPTURE(body);
    CHECK(status_of([&] { serve::parse_predict(body, sig); }) == 400);
    CHECK(message_of([&] { serve::parse_predict(body, sig); }).find(expected) != std::string::npos);
  };
  check("{", "JSON Parse error");
  check("[1, 2]", "must be a JSON object");
  check(R"({"instances": [[1, 2]], "inputs": [[1, 2]]})", "Missing 'inputs' or 'instances' key");
  check(R"({"signature_name": "serving_default"})", "Missing 'inputs' or 'instances' key");
  check(R"({"instances": [[1, 2]], "extra": 1})", "unexpected key 'extra'");
  check(R"({"signature_name": "other", "instances": [[1, 2]]})", "Serving signature name: \"other\" not found");
  check(R"({"instances": []})", "'instances' is empty");
  check(R"({"instances": {"x": 1}})", "'instances' must be a list");
  check(R"({"instances": [[1, 2, 3]]})", "shape [1, 3] does not fit the signature's [-1, 2]");
  check(R"({"instances": [[1, 2], [3]]})", "instance 1 of input x has shape [1], instance 0 has [2]");
  check(R"({"inputs": [[1, 2], [3]]})", "ragged");
  check(R"({"inputs": [[1, [2]]]})", "deeper in some places");
  check(R"({"instances": [[1, true]]})", "JSON value true is not a number");
  check(R"({"instances": [{"y": [1, 2]}]})", "unknown input 'y' (the signature's inputs: x)");
  check(R"({"inputs": {"y": [[1, 2]]}})", "unknown input 'y'");
  const auto two = two_inputs();
  CHECK(message_of([&] { serve::parse_predict(R"({"instances": [{"a": [1, 2]}]})", two); }).find("instance 0 lacks input n") !=
        std::string::npos);
  CHECK(message_of([&] { serve::parse_predict(R"({"instances": [{"a": [1, 2], "n": 1.5}]})", two); })
            .find("is not an integer") != std::string::npos);
  CHECK(message_of([&] { serve::parse_predict(R"({"inputs": [[1, 2]]})", two); }).find("several inputs") != std::string::npos);
  CHECK(message_of([&] { serve::parse_predict(R"({"inputs": {"a": [[1, 2]]}})", two); }).find("input n is missing") !=
        std::string::npos);
}

TEST_CASE("predict responses: one output unnamed, several by name, in both forms") {
  serve::HostTensor p(DataType::float32, {2, 2});
  const float pv[] = {0.5f, 0.25f, 1e-8f, 3};
  std::memcpy(p.data<float>(), pv, sizeof pv);
  serve::HostTensor k(DataType::int64, {2});
  k.data<std::int64_t>()[0] = 7;
  k.data<std::int64_t>()[1] = -1;
  CHECK(serve::predict_response({p}, one_input(), true) == R"({"predictions":[[0.5,0.25],[1e-08,3]]})");
  CHECK(serve::predict_response({p}, one_input(), false) == R"({"outputs":[[0.5,0.25],[1e-08,3]]})");
  CHECK(serve::predict_response({p, k}, two_inputs(), true) ==
        R"({"predictions":[{"p":[0.5,0.25],"k":7},{"p":[1e-08,3],"k":-1}]})");
  CHECK(serve::predict_response({p, k}, two_inputs(), false) == R"({"outputs":{"p":[[0.5,0.25],[1e-08,3]],"k":[7,-1]}})");
  // Floats print in their shortest exact form: parsing them back gives the same bits.
  serve::HostTensor third(DataType::float32, {1, 2});
  third.data<float>()[0] = 1.0f / 3.0f;
  third.data<float>()[1] = 0.1f;
  const auto body = serve::predict_response({third}, one_input(), true);
  const auto back = nlohmann::json::parse(body)["predictions"][0];
  CHECK(back[0].get<float>() == 1.0f / 3.0f);
  CHECK(back[1].get<float>() == 0.1f);
}

TEST_CASE("infer: JSON data, flat or nested, and the outputs asked for") {
  auto r = serve::parse_infer(
      R"({"id": "q1", "inputs": [{"name": "n", "shape": [2], "datatype": "INT64", "data": [4, 5]},
                                 {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}],
          "outputs": [{"name": "k"}]})",
      std::nullopt, two_inputs());
  CHECK(r.id == "q1");
  REQUIRE(r.inputs.size() == 2);
  CHECK(floats(r.inputs[0]) == std::vector<float>{1, 2, 3, 4});
  CHECK(r.inputs[1].data<std::int64_t>()[1] == 5);
  CHECK(r.outputs == std::vector<std::size_t>{1});
  CHECK(r.binary == std::vector<bool>{false});
  serve::HostTensor p(DataType::float32, {2, 2}), k(DataType::int64, {2});
  k.data<std::int64_t>()[0] = 3;
  k.data<std::int64_t>()[1] = 1;
  const auto response = serve::infer_response(r, {p, k}, two_inputs(), "m", 4);
  CHECK_FALSE(response.json_length);
  CHECK(response.body ==
        R"({"model_name":"m","model_version":"4","id":"q1","outputs":[{"name":"k","datatype":"INT64","shape":[2],"data":[3,1]}]})");
}

TEST_CASE("infer: binary tensor data in and out (what tritonclient sends by default)") {
  const std::string json =
      R"({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                     {"name": "n", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}],
          "parameters": {"binary_data_output": true}})";
  const float a[2] = {1.5f, -2};
  const std::int64_t n = 42;
  std::string body = json;
  body.append(reinterpret_cast<const char*>(a), sizeof a);
  body.append(reinterpret_cast<const char*>(&n), sizeof n);
  const auto r = serve::parse_infer(body, json.size(), two_inputs());
  CHECK(floats(r.inputs[0]) == std::vector<float>{1.5f, -2});
  CHECK(r.inputs[1].data<std::int64_t>()[0] == 42);
  CHECK(r.binary == std::vector<bool>{true, true});
  const auto response = serve::infer_response(r, {r.inputs[0], r.inputs[1]}, two_inputs(), "m", 1);
  REQUIRE(response.json_length);
  const auto head = nlohmann::json::parse(response.body.substr(0, *response.json_length));
  CHECK(head["outputs"][0]["parameters"]["binary_data_size"] == 8);
  CHECK_FALSE(head["outputs"][0].contains("data"));
  CHECK(response.body.size() == *response.json_length + 16);
  float back[2];
  std::memcpy(back, response.body.data() + *response.json_length, 8);
  CHECK(back[1] == -2);

  auto bad = [&](const std::string& b, std::optional<std::size_t> length, const std::string& expected) {
    CAPTURE(expected);
    CAPTURE(message_of([&] { serve::parse_infer(b, length, two_inputs()); }));
    CHECK(status_of([&] { serve::parse_infer(b, length, two_inputs()); }) == 400);
    CHECK(message_of([&] { serve::parse_infer(b, length, two_inputs()); }).find(expected) != std::string::npos);
  };
  bad(body.substr(0, body.size() - 3), json.size(), "the binary data ends early");
  bad(body + "xx", json.size(), "2 bytes of binary data belong to no input");
  bad(body, body.size() + 1, "exceeds the body's");
  bad(body, std::nullopt, "the binary data ends early");  // without the header, the bytes are not data
}

TEST_CASE("infer: malformed requests are 400s naming the input") {
  auto bad = [&](const char* body, const char* expected) {
    CAPTURE(body);
    CHECK(status_of([&] { serve::parse_infer(body, std::nullopt, one_input()); }) == 400);
    CHECK(message_of([&] { serve::parse_infer(body, std::nullopt, one_input()); }).find(expected) != std::string::npos);
  };
  bad(R"({})", "needs an 'inputs' list");
  bad(R"({"inputs": [{"name": "z", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})", "unexpected inference input 'z'");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]})",
      "has datatype FP64, the model expects FP32");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BF16", "data": [1, 2]}]})", "datatype 'BF16' is not supported");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2, 3]}]})",
      "'data' has 3 elements, shape [1, 2] needs 2");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})", "does not fit");
  bad(R"({"inputs": [{"name": "x", "shape": [1, -2], "datatype": "FP32", "data": []}]})", "non-negative integers");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32"}]})", "neither 'data' nor binary data");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                     {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})",
      "given twice");
  bad(R"({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], "outputs": [{"name": "q"}]})",
      "unexpected inference output 'q'");
  bad(R"({"inputs": []})", "expected input 'x'");
}

TEST_CASE("predict: the fast reader of plain numeric requests gives exactly what the document parser gives") {
  serve::Signature image;
  image.inputs = {{"x", DataType::float32, {-1, 2, 3}}};
  image.outputs = {{"y", DataType::float32, {-1, 2}}};
  serve::Signature doubles = image;
  doubles.inputs[0].dtype = DataType::float64;
  std::vector<std::string> bodies = {
      R"({"instances": [[[1, 2, 3], [4, 5, 6]]]})",
      R"( { "signature_name" : "serving_default" , "inputs" : [ [ [ -0.5 , 1e-3 , 2E+2 ] , [ 0 , -0 , 123456789 ] ] ] } )",
      R"({"instances": [[[0.1, 0.2, 0.3], [1.0000001, 3.4028235e38, 1e-45]], [[7, 8, 9], [10, 11, 12]]]})",
  };
  // Random numbers in every notation, through both readers.
  std::uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 11;
  };
  for (int k = 0; k < 50; ++k) {
    std::string b = R"({"instances": [)";
    for (int n = 0; n < 3; ++n) {
      b += n ? ",[" : "[";
      for (int r = 0; r < 2; ++r) {
        b += r ? ",[" : "[";
        for (int c = 0; c < 3; ++c) {
          char number[64];
          const double v = (double(next() % 2000000) - 1e6) * std::pow(10.0, double(int(next() % 30) - 20));
          std::snprintf(number, sizeof number, next() % 2 ? "%.17g" : "%.6e", v);
          b += (c ? "," : "") + std::string(number);
        }
        b += "]";
      }
      b += "]";
    }
    bodies.push_back(b + "]}");
  }
  for (const auto& body : bodies) {
    CAPTURE(body);
    for (const auto* sig : {&image, &doubles}) {
      const auto fast = serve::detail::NumericRequestReader(body, *sig).read();
      REQUIRE(fast.has_value());
      const auto general = serve::detail::parse_predict_document(body, *sig);
      CHECK(fast->row_form == general.row_form);
      CHECK(fast->inputs[0].shape == general.inputs[0].shape);
      CHECK(fast->inputs[0].bytes == general.inputs[0].bytes);
    }
  }
  // What the fast reader leaves to the document parser (which then answers or explains).
  for (const char* other : {R"({"instances": [[[1, 2, 3], [4, 5, NaN]]]})", R"({"instances": [[[1, 2, 3], [4, 5, 06]]]})",
                            R"({"instances": [[[1, 2, 3], [4, 5, 6.]]]})", R"({"instances": [[[1, 2, 3], [4, 5]]]})",
                            R"({"instances": [[[1, 2, 3], [4, 5, 6]]], "x": 1})", R"({"instances": [[[1, 2, 3], [4, 5, true]]]})",
                            R"({"inst\u0061nces": [[[1, 2, 3], [4, 5, 6]]]})", R"({"instances": [[[1, 2, 3], [4, 5, 6]]]} x)",
                            R"({"instances": [[[1, 2, 3, 4], [4, 5, 6, 7]]]})", R"({"instances": []})",
                            R"({"instances": [[[1, 2, 3], [4, 5, -inf]]]})", R"({"signature_name": "other", "instances": [[[1, 2, 3], [4, 5, 6]]]})"}) {
    CAPTURE(other);
    CHECK_FALSE(serve::detail::NumericRequestReader(other, image).read().has_value());
  }
  CHECK(serve::parse_predict(R"({"instances": [[[1, 2, 3], [4, 5, NaN]]]})", image).inputs[0].shape ==
        std::vector<std::int64_t>{1, 2, 3});
  CHECK(status_of([&] { serve::parse_predict(R"({"instances": [[[1, 2, 3], [4, 5, 06]]]})", image); }) == 400);
  CHECK(status_of([&] { serve::parse_predict(R"({"instances": [[[1, 2, 3], [4, 5]]]})", image); }) == 400);
}

TEST_CASE("hostile shapes and values are 400s before anything large is allocated") {
  serve::Signature tokens;
  tokens.inputs = {{"t", DataType::int64, {-1, -1}}};
  tokens.outputs = {{"y", DataType::float32, {-1}}};
  // Element counts that overflow, or claim gigabytes the body does not carry.
  CHECK(message_of([&] {
          serve::parse_infer(R"({"inputs": [{"name": "t", "shape": [4294967296, 4294967296], "datatype": "INT64", "data": []}]})",
                             std::nullopt, tokens);
        }).find("too large") != std::string::npos);
  CHECK(message_of([&] {  // beside a zero extent too (an empty tensor whose strides would overflow)
          serve::parse_infer(R"({"inputs": [{"name": "t", "shape": [0, 1099511627776], "datatype": "INT64", "data": []}]})",
                             std::nullopt, tokens);
        }).find("too large") != std::string::npos);
  CHECK(message_of([&] {
          serve::parse_infer(R"({"inputs": [{"name": "t", "shape": [549755813888, 4194304], "datatype": "INT64",
                                             "parameters": {"binary_data_size": 0}}]})",
                             std::nullopt, tokens);
        }).find("too large") != std::string::npos);
  CHECK(message_of([&] {
          serve::parse_infer(R"({"inputs": [{"name": "t", "shape": [100000000, 8], "datatype": "INT64", "data": []}]})",
                             std::nullopt, tokens);
        }).find("'data' has 0 elements") != std::string::npos);
  // Row form: one good instance, then scalars; column form: a ragged list behind a long first row.
  CHECK(status_of([&] { serve::parse_predict(R"({"instances": [[1, 2], 0, 0, 0]})", one_input()); }) == 400);
  CHECK(status_of([&] { serve::parse_predict(R"({"inputs": [[1, 2], 0, 0, 0]})", one_input()); }) == 400);
  // A deeply nested value where a number belongs: a message, not a recursive dump.
  std::string deep = R"({"instances": [[1, )";
  for (int i = 0; i < 20000; ++i) deep += R"({"a":)";
  deep += "1";
  for (int i = 0; i < 20000; ++i) deep += "}";
  deep += "]]}";
  CHECK(message_of([&] { serve::parse_predict(deep, one_input()); }).find("a JSON object is not a number") != std::string::npos);
  // "1.e5" is not JSON, through either reader.
  CHECK(status_of([&] { serve::parse_predict(R"({"instances": [[1.e5, 2]]})", one_input()); }) == 400);
}
