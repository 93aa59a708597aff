// CSV files of numbers: a header line (optional), numeric feature columns and one label column.
//
//   auto [x, y, names, label] = data::read_csv<float, std::int64_t>("iris.csv", {.label = "species"});
//   data::TensorDataset ds(x, y);
//
// Fields may be quoted ("1.5", with "" for a quote) and surrounded by spaces; lines may end in
// CRLF; blank lines are skipped. Anything else -- a field that is not a number, a fractional or
// out-of-range integer label, a row with too many or too few fields, an unknown label column -- is
// an io_error naming the file, the line and the column: `iris.csv: line 7, column 3
// ("petal_length"): "1,4" is not a number`.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::data {

struct CsvOptions {
  bool header = true;      ///< the first non-blank line names the columns
  char delimiter = ',';
  std::string label;       ///< name of the label column (needs a header); empty: see label_index
  index_t label_index = -1;  ///< 0-based label column when `label` is empty; -1: the last column
};

/// What read_csv returns: features [rows, columns - 1], labels [rows], and the column names.
template <class T, class L>
struct CsvData {
  Tensor<T, 2> features;
  Tensor<L, 1> labels;
  std::vector<std::string> feature_names;  ///< from the header, or "column 1", ...
  std::string label_name;
};

namespace detail {

/// Splits one line into fields (quotes removed, surrounding spaces trimmed); `error` reports
/// malformed quoting with the 1-based column.
template <class Error>
std::vector<std::string> split_csv_line(std::string_view line, char delimiter, const Error& error) {
  std::vector<std::string> fields;
  std::size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t') && line[i] != delimiter) ++i;
    std::string field;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        field += line[i++];
      }
      if (!closed) throw error(fields.size() + 1, "unterminated quoted field");
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t') && line[i] != delimiter) ++i;
      if (i < line.size() && line[i] != delimiter) throw error(fields.size() + 1, "text after a closing quote");
    } else {
      const std::size_t start = i;
      while (i < line.size() && line[i] != delimiter) ++i;
      std::size_t end = i;
      while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
      field.assign(line.substr(start, end - start));
    }
    fields.push_back(std::move(field));
    if (i >= line.size()) break;
    ++i;  // the delimiter
  }
  return fields;
}

/// Parses all of `text` as a T; false when it is not exactly one number representable as T.
template <class T>
bool parse_number(const std::string& text, T& out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;  // from_chars does not take a leading '+'
  if constexpr (std::is_integral_v<T>) {
    long long v = 0;
    auto [p, ec] = std::from_chars(begin, end, v);
    if (ec != std::errc() || p != end) {
      // "3.0" is a fine integer label; "3.5" is not.
      double d = 0;
      auto [q, ec2] = std::from_chars(begin, end, d);
      if (ec2 != std::errc() || q != end || d != std::floor(d) || !(std::fabs(d) < 9.0e15)) return false;
      v = static_cast<long long>(d);
    }
    if (v < static_cast<long long>(std::numeric_limits<T>::min()) || v > static_cast<long long>(std::numeric_limits<T>::max())) {
      return false;
    }
    out = static_cast<T>(v);
    return true;
  } else {
    double v = 0;
    auto [p, ec] = std::from_chars(begin, end, v);
    if (ec != std::errc() || p != end || begin == end) return false;
    out = static_cast<T>(v);
    return true;
  }
}

}  // namespace detail

/// Parses CSV `text`; `source` names it in error messages (read_csv passes the path).
template <class T = float, class L = std::int64_t>
CsvData<T, L> parse_csv(std::string_view text, const std::string& source, const CsvOptions& o = {}) {
  static_assert(std::is_floating_point_v<T>, "tessera::data::read_csv: features must be float or double");
  static_assert(std::is_arithmetic_v<L> && !std::is_same_v<L, bool>, "tessera::data::read_csv: labels must be numbers");
  if (o.delimiter == '"' || o.delimiter == '\n' || o.delimiter == '\r') throw value_error("read_csv: invalid delimiter");
  std::size_t line_no = 0;
  std::vector<std::string> names;
  auto fail_at = [&](std::size_t column, const std::string& what) {
    std::string where = source + ": line " + std::to_string(line_no);
    if (column > 0) {
      where += ", column " + std::to_string(column);
      if (column <= names.size()) where += " (\"" + names[column - 1] + "\")";
    }
    return io_error(where + ": " + what);
  };

  std::size_t columns = 0, label = 0;
  std::vector<T> features;
  std::vector<L> labels;
  bool have_columns = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank
    if (line.find('\0') != std::string_view::npos) throw fail_at(0, "contains a NUL byte (not a text file?)");
    auto fields = detail::split_csv_line(line, o.delimiter, fail_at);

    if (!have_columns) {
      columns = fields.size();
      if (columns < 2) throw fail_at(0, "need at least two columns (features and a label), found " + std::to_string(columns));
      if (o.header) {
        names = fields;
      } else {
        for (std::size_t c = 1; c <= columns; ++c) names.push_back("column " + std::to_string(c));
      }
      if (!o.label.empty()) {
        if (!o.header) throw value_error("read_csv: a label column name needs header = true");
        std::size_t found = columns;
        for (std::size_t c = 0; c < columns; ++c) {
          if (names[c] == o.label) found = c;
        }
        if (found == columns) throw io_error(source + ": no column named \"" + o.label + "\" in the header");
        label = found;
      } else if (o.label_index < 0) {
        label = columns - 1;
      } else {
        if (o.label_index >= static_cast<index_t>(columns)) {
          throw io_error(source + ": label column " + std::to_string(o.label_index) + " but only " + std::to_string(columns) +
                         " columns");
        }
        label = static_cast<std::size_t>(o.label_index);
      }
      have_columns = true;
      if (o.header) continue;
    }
    if (fields.size() != columns) {
      throw fail_at(0, "has " + std::to_string(fields.size()) + " fields, expected " + std::to_string(columns));
    }
    for (std::size_t c = 0; c < columns; ++c) {
      const std::string& f = fields[c];
      if (f.empty()) throw fail_at(c + 1, "empty field (missing value)");
      if (c == label) {
        L v{};
        if (!detail::parse_number(f, v)) {
          throw fail_at(c + 1, "label \"" + f + "\" is not " +
                                   (std::is_integral_v<L> ? std::string("an integer in range") : std::string("a number")));
        }
        labels.push_back(v);
      } else {
        T v{};
        if (!detail::parse_number(f, v)) throw fail_at(c + 1, "\"" + f + "\" is not a number");
        features.push_back(v);
      }
    }
  }
  if (!have_columns) throw io_error(source + ": no data (empty file)");
  if (labels.empty()) throw io_error(source + ": a header but no data rows");

  CsvData<T, L> out;
  const auto rows = static_cast<index_t>(labels.size());
  const auto width = static_cast<index_t>(columns - 1);
  out.features = Tensor<T, 2>::uninitialized({rows, width});
  std::copy(features.begin(), features.end(), out.features.data());
  out.labels = Tensor<L, 1>::uninitialized({rows});
  std::copy(labels.begin(), labels.end(), out.labels.data());
  for (std::size_t c = 0; c < columns; ++c) {
    if (c == label) out.label_name = names[c];
    else out.feature_names.push_back(names[c]);
  }
  return out;
}

/// Reads a CSV file of numbers (see the top of this header); io_error names file, line and column.
template <class T = float, class L = std::int64_t>
CsvData<T, L> read_csv(const std::string& path, const CsvOptions& o = {}) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw io_error(path + ": read failed");
  return parse_csv<T, L>(text, path, o);
}

/// Writes features and labels as CSV with a header (label last), full float precision.
template <class T, class L>
void write_csv(const std::string& path, const Tensor<T, 2>& features, const Tensor<L, 1>& labels,
               const std::vector<std::string>& feature_names, const std::string& label_name) {
  if (features.shape()[0] != labels.shape()[0] || static_cast<std::size_t>(features.shape()[1]) != feature_names.size()) {
    throw shape_error("write_csv: features, labels and names do not agree in size");
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw io_error(path + ": cannot create");
  for (const auto& n : feature_names) out << n << ',';
  out << label_name << '\n';
  out.precision(std::numeric_limits<T>::max_digits10);
  for (index_t i = 0; i < features.shape()[0]; ++i) {
    for (index_t j = 0; j < features.shape()[1]; ++j) out << features(i, j) << ',';
    out << labels(i) << '\n';
  }
  out.flush();
  if (!out) throw io_error(path + ": write failed");
}

}  // namespace tessera::data
