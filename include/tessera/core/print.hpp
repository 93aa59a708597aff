// operator<< for tensors in NumPy's str() layout: nested brackets, aligned columns, "..." when large.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera {

namespace detail {
/// Above this many elements only the first and last `print_edge` entries of each axis are shown.
inline constexpr index_t print_threshold = 1000;
inline constexpr index_t print_edge = 3;

/// How floating-point cells are written, chosen from all printed values as NumPy does
/// (floatmode "maxprec"): fixed notation with just enough decimals (at most 8), or scientific
/// when magnitudes are very large or small; cells are then aligned on the decimal point.
struct FloatFormat {
  bool scientific = false;
  int decimals = 0;
};

inline std::string trim_zeros(std::string s) {
  const auto dot = s.find('.');
  if (dot == std::string::npos) return s;
  std::size_t end = s.size();
  while (end > dot + 1 && s[end - 1] == '0') --end;
  return s.substr(0, end);
}

template <class T>
std::string fixed_string(T v, int decimals) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, static_cast<double>(v));
  return buf;
}

template <class T>
std::string format_element(T v, const FloatFormat& fmt) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "True" : "False";
  } else if constexpr (std::is_integral_v<T>) {
    return std::to_string(v);
  } else {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[512];
    if (fmt.scientific) {
      std::snprintf(buf, sizeof buf, "%.*e", fmt.decimals, static_cast<double>(v));
      std::string out = buf;
      if (fmt.decimals == 0) out.insert(out.find('e'), ".");  // NumPy writes 1.e-05
      return out;
    }
    std::string out = trim_zeros(fixed_string(v, fmt.decimals));
    if (out.find('.') == std::string::npos) out += '.';
    return out;
  }
}

template <class T, class Values>
FloatFormat choose_float_format(const Values& values) {
  FloatFormat fmt;
  if constexpr (std::is_floating_point_v<T>) {
    double max_abs = 0, min_abs = 0;
    bool any = false;
    for (T v : values) {
      if (!std::isfinite(v) || v == 0) continue;
      const double a = std::abs(static_cast<double>(v));
      max_abs = any ? std::max(max_abs, a) : a;
      min_abs = any ? std::min(min_abs, a) : a;
      any = true;
    }
    constexpr int digits = 8;
    fmt.scientific = any && (max_abs >= 1e8 || min_abs < 1e-4 || max_abs / min_abs > 1e3);
    if (fmt.scientific) {
      for (T v : values) {
        if (!std::isfinite(v)) continue;
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*e", digits, static_cast<double>(v));
        std::string m(buf);
        const std::string mant = trim_zeros(m.substr(0, m.find('e')));
        const auto dot = mant.find('.');
        fmt.decimals = std::max(fmt.decimals, static_cast<int>(mant.size() - dot - 1));
      }
    } else {
      for (T v : values) {
        if (!std::isfinite(v)) continue;
        const std::string s = trim_zeros(fixed_string(static_cast<T>(v), digits));
        fmt.decimals = std::max(fmt.decimals, static_cast<int>(s.size() - s.find('.') - 1));
      }
    }
  }
  return fmt;
}

/// Pads a cell: integer part right-aligned, fraction left-aligned (NumPy's column alignment).
inline std::string align_cell(const std::string& c, std::size_t int_width, std::size_t frac_width) {
  const auto dot = c.find('.');
  const std::size_t ip = dot == std::string::npos ? c.size() : dot;
  const std::size_t fp = dot == std::string::npos ? 0 : c.size() - dot;
  return std::string(int_width > ip ? int_width - ip : 0, ' ') + c + std::string(frac_width > fp ? frac_width - fp : 0, ' ');
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
  std::vector<T> values;
  if constexpr (R == 0) {
    values.push_back(t.data()[0]);
    return os << detail::format_element(values[0], detail::choose_float_format<T>(values));
  } else {
    if (t.size() == 0) return os << "[]";
    const bool summarize = t.size() > detail::print_threshold;
    detail::visit_printed(t, 0, 0, summarize, [&](T v) { values.push_back(v); });
    const detail::FloatFormat fmt = detail::choose_float_format<T>(values);
    std::vector<std::string> cells;
    std::size_t int_width = 0, frac_width = 0;
    for (T v : values) {
      cells.push_back(detail::format_element(v, fmt));
      const auto& c = cells.back();
      const auto dot = fmt.scientific ? std::string::npos : c.find('.');
      int_width = std::max(int_width, dot == std::string::npos ? c.size() : dot);
      frac_width = std::max(frac_width, dot == std::string::npos ? std::size_t{0} : c.size() - dot);
    }
    for (auto& c : cells) c = fmt.scientific ? std::string(int_width - c.size(), ' ') + c : detail::align_cell(c, int_width, frac_width);
    std::size_t cell = 0;
    detail::PrintBuffer buf;
    detail::print_axis(buf, t, 0, 0, cells, summarize, cell);
    os << buf.done << buf.line;
    return os;
  }
}

}  // namespace tessera
