// operator<< for tensors in NumPy's str() layout: nested brackets, aligned columns, "..." when large.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera {

namespace detail {
/// Above this many elements only the first and last `print_edge` entries of each axis are shown.
inline constexpr index_t print_threshold = 1000;
inline constexpr index_t print_edge = 3;

/// Fewest significant digits that read back as exactly v (NumPy's "unique" float mode).
template <class T>
int unique_digits(T v) {
  constexpr int max_digits = std::is_same_v<T, float> ? 9 : 17;
  char buf[64];
  for (int p = 1; p < max_digits; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, static_cast<double>(v));
    if (static_cast<T>(std::strtod(buf, nullptr)) == v) return p;
  }
  return max_digits;
}

/// Decimal exponent of v as %e writes it (v finite, nonzero).
template <class T>
int decimal_exponent(T v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits - 1, static_cast<double>(v));
  return std::atoi(std::strchr(buf, 'e') + 1);
}

inline std::string nonfinite_string(double v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

/// Formats the printed elements the way NumPy's str() does (floatmode "maxprec", precision 8):
/// positional notation with each value's shortest round-trip digits (at most 8 decimals), padded
/// so decimal points align; scientific when values are tiny, huge or far apart, with a common
/// precision and exponent width. Integers and bools are right-aligned.
template <class T, class Values>
std::vector<std::string> format_cells(const Values& values) {
  std::vector<std::string> cells;
  cells.reserve(values.size());
  if constexpr (std::is_same_v<T, bool>) {
    for (auto v : values) cells.push_back(v ? " True" : "False");
  } else if constexpr (std::is_integral_v<T>) {
    std::size_t width = 0;
    for (auto v : values) {
      cells.push_back(std::to_string(v));
      width = std::max(width, cells.back().size());
    }
    for (auto& c : cells) c.insert(0, width - c.size(), ' ');
  } else {
    double max_abs = 0, min_abs = 0;
    bool any = false;
    for (T v : values) {
      if (!std::isfinite(v) || v == 0) continue;
      const double a = std::abs(static_cast<double>(v));
      max_abs = any ? std::max(max_abs, a) : a;
      min_abs = any ? std::min(min_abs, a) : a;
      any = true;
    }
    const bool scientific = any && (max_abs >= 1e8 || min_abs < 1e-4 || max_abs / min_abs > 1e3);
    constexpr int precision = 8;
    char buf[512];
    if (scientific) {
      int prec = 0, exp_digits = 2;
      for (T v : values) {
        if (!std::isfinite(v)) continue;
        prec = std::max(prec, std::min(unique_digits(v) - 1, precision));
        if (v != 0) exp_digits = std::max(exp_digits, static_cast<int>(std::to_string(std::abs(decimal_exponent(v, 1))).size()));
      }
      for (T v : values) {
        if (!std::isfinite(v)) {
          cells.push_back(nonfinite_string(static_cast<double>(v)));
          continue;
        }
        std::snprintf(buf, sizeof buf, "%.*e", prec, static_cast<double>(v));
        std::string c = buf;
        const auto e = c.find('e');
        std::string mant = c.substr(0, e), exp = c.substr(e + 2);
        if (prec == 0) mant += '.';
        exp.insert(0, static_cast<std::size_t>(exp_digits) - std::min(exp.size(), std::size_t(exp_digits)), '0');
        cells.push_back(mant + 'e' + c[e + 1] + exp);
      }
    } else {
      for (T v : values) {
        if (!std::isfinite(v)) {
          cells.push_back(nonfinite_string(static_cast<double>(v)));
          continue;
        }
        int decimals = 0;
        if (v != 0) {
          const int p = unique_digits(v);
          decimals = std::clamp(p - 1 - decimal_exponent(v, p), 0, precision);
        }
        std::snprintf(buf, sizeof buf, "%.*f", decimals, static_cast<double>(v));
        std::string c = buf;
        if (decimals == precision) {
          while (c.back() == '0') c.pop_back();  // rounding to 8 decimals may leave zeros
        }
        if (c.find('.') == std::string::npos) c += '.';
        cells.push_back(c);
      }
    }
    // Align: integer parts right-aligned, fractions left-aligned; nan/inf right-aligned to the
    // full width (NumPy's pad_left / pad_right).
    std::size_t pad_left = 0, pad_right = 0, nonfinite = 0;
    std::size_t k = 0;
    for (T v : values) {
      const std::string& c = cells[k++];
      if (!std::isfinite(v)) {
        nonfinite = std::max(nonfinite, c.size());
        continue;
      }
      const std::size_t dot = c.find('.');
      pad_left = std::max(pad_left, dot);
      pad_right = std::max(pad_right, c.size() - dot);
    }
    pad_left = std::max(pad_left, nonfinite > pad_right ? nonfinite - pad_right : 0);
    k = 0;
    for (T v : values) {
      std::string& c = cells[k++];
      if (!std::isfinite(v)) {
        c.insert(0, pad_left + pad_right > c.size() ? pad_left + pad_right - c.size() : 0, ' ');
        continue;
      }
      const std::size_t dot = c.find('.');
      c.insert(0, pad_left - dot, ' ');
      c.append(pad_right - (c.size() - pad_left), ' ');
    }
  }
  return cells;
}

/// A single value as NumPy prints a 0-d array (Python's repr for floats: 1.0, 1e-05, 1.5e+16).
template <class T>
std::string format_scalar(T v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "True" : "False";
  } else if constexpr (std::is_integral_v<T>) {
    return std::to_string(v);
  } else {
    if (!std::isfinite(v)) return nonfinite_string(static_cast<double>(v));
    if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
    const int p = unique_digits(v);
    const int e = decimal_exponent(v, p);
    const double limit = std::is_same_v<T, float> ? 1e7 : 1e16;
    char buf[512];
    if (std::abs(static_cast<double>(v)) >= 1e-4 && std::abs(static_cast<double>(v)) < limit) {
      const int decimals = std::max(p - 1 - e, 0);
      std::snprintf(buf, sizeof buf, "%.*f", decimals, static_cast<double>(v));
      std::string c = buf;
      if (decimals == 0) c += ".0";
      return c;
    }
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, static_cast<double>(v));
    return buf;
  }
}

/// NumPy's default line width for str().
inline constexpr std::size_t print_line_width = 75;

/// Text built line by line so long rows wrap as NumPy wraps them.
struct PrintBuffer {
  std::string done;
  std::string line;
  void new_line(std::size_t newlines, std::size_t indent) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    done += line;
    done.append(newlines, '\n');
    line.assign(indent, ' ');
  }
};

template <class T, std::size_t R, class B>
void print_axis(PrintBuffer& buf, const Tensor<T, R, B>& t, std::size_t axis, index_t offset,
                const std::vector<std::string>& cells, bool summarize, std::size_t& cell) {
  const index_t n = t.shape()[axis];
  buf.line += '[';
  // Each enclosing level reserves one column for its closing bracket.
  const std::size_t elem_width = print_line_width - axis - 1;
  auto add_word = [&](const std::string& word, bool last) {
    if (buf.line.size() + word.size() > elem_width) buf.new_line(1, axis + 1);
    buf.line += word;
    if (!last) buf.line += ' ';
  };
  for (index_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * print_edge && i == print_edge) {
      if (axis + 1 == R) {
        add_word("...", false);
      } else {
        buf.line += "...";
        buf.new_line(R - 1 - axis, axis + 1);
      }
      i = n - print_edge;
    }
    const index_t off = offset + i * t.strides()[axis];
    if (axis + 1 == R) {
      add_word(cells[cell++], i + 1 == n);
    } else {
      print_axis(buf, t, axis + 1, off, cells, summarize, cell);
      if (i + 1 < n) buf.new_line(R - 1 - axis, axis + 1);
    }
  }
  buf.line += ']';
}

template <class T, std::size_t R, class B, class F>
void visit_printed(const Tensor<T, R, B>& t, std::size_t axis, index_t offset, bool summarize, F&& f) {
  const index_t n = t.shape()[axis];
  for (index_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * print_edge && i == print_edge) i = n - print_edge;
    const index_t off = offset + i * t.strides()[axis];
    if (axis + 1 == R) {
      f(t.data()[off]);
    } else {
      visit_printed(t, axis + 1, off, summarize, f);
    }
  }
}
}  // namespace detail

/// Prints like NumPy's str(): `[[1. 2.]\n [3. 4.]]`.
template <class T, std::size_t R, class B>
std::ostream& operator<<(std::ostream& os, const Tensor<T, R, B>& t) {
  static_assert(B::host_accessible, "tessera: printing needs a host tensor; copy with .to<cpu>()");
  // bool goes through unsigned char: std::vector<bool> hands out proxies, not bools.
  using Stored = std::conditional_t<std::is_same_v<T, bool>, unsigned char, T>;
  if constexpr (R == 0) {
    return os << detail::format_scalar(t.data()[0]);
  } else {
    if (t.size() == 0) return os << "[]";
    const bool summarize = t.size() > detail::print_threshold;
    std::vector<Stored> values;
    detail::visit_printed(t, 0, 0, summarize, [&](T v) { values.push_back(static_cast<Stored>(v)); });
    const std::vector<std::string> cells = detail::format_cells<T>(values);
    std::size_t cell = 0;
    detail::PrintBuffer buf;
    detail::print_axis(buf, t, 0, 0, cells, summarize, cell);
    os << buf.done << buf.line;
    return os;
  }
}

}  // namespace tessera
