// Tensor<T, Rank, Backend>: a strided, reference-counted n-d array and the leaf of every expression.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "tessera/backend/concept.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/dtype.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/expr_base.hpp"
#include "tessera/core/shape.hpp"

namespace tessera {

namespace detail {
/// std::initializer_list nested Rank times: the type of `{{1, 2}, {3, 4}}` for rank 2.
template <class T, std::size_t R>
struct nested_init {
  using type = std::initializer_list<typename nested_init<T, R - 1>::type>;
};
template <class T>
struct nested_init<T, 0> {
  using type = T;
};

template <class T, std::size_t Rank, class Backend, class E>
void assign_expression(Tensor<T, Rank, Backend>& dst, const E& expr);
template <class T, std::size_t Rank, class Backend, class E>
Tensor<T, Rank, Backend> evaluate_expression(const E& expr);

template <class... I>
inline constexpr bool all_integral_v = (std::is_integral_v<std::decay_t<I>> && ...);
}  // namespace detail

/// An n-dimensional array of `T` with rank fixed at compile time and extents at run time.
///
/// Copies share storage (like torch::Tensor or a NumPy array): use clone() for a deep copy.
/// Views (reshape, transpose, slice, ...) share storage too. Assigning an expression to a named
/// tensor rebinds it to the result (reusing its buffer when nobody else sees it); assigning to a
/// temporary view, `t.slice(0, 1, 3) = expr`, or calling assign() writes into the viewed elements.
template <class T, std::size_t Rank, class Backend = cpu>
class Tensor : public ExprBase<Tensor<T, Rank, Backend>> {
  static_assert(is_supported_dtype_v<T>,
                "tessera::Tensor: element type must be float, double, int32_t, int64_t or bool");
  static_assert(is_backend_v<Backend>, "tessera::Tensor: Backend does not satisfy backend/concept.hpp (for the CPU backend, include <tessera/tessera.hpp>)");
  static_assert(Rank <= max_rank, "tessera::Tensor: rank exceeds tessera::max_rank");

 public:
  using value_type = T;
  using backend_type = Backend;
  static constexpr std::size_t rank = Rank;
  using shape_type = Shape<Rank>;

  /// Empty tensor (all extents 0); a rank-0 tensor holds one zero.
  Tensor() {
    if constexpr (Rank == 0) allocate_zeroed();
  }

  /// Zero-filled tensor with the given extents, like std::vector<T>(n).
  template <class... I, std::enable_if_t<sizeof...(I) == Rank && (Rank > 0) && detail::all_integral_v<I...>, int> = 0>
  explicit Tensor(I... extents) : shape_{static_cast<index_t>(extents)...} {
    check_extents();
    allocate_zeroed();
  }

  /// Zero-filled tensor of shape `s`.
  explicit Tensor(const shape_type& s) : shape_(s) {
    check_extents();
    allocate_zeroed();
  }

  /// From nested braces: `Tensor<double, 2> a = {{1, 2}, {3, 4}};` (rank 0: from one value).
  Tensor(typename detail::nested_init<T, Rank>::type values) {
    if constexpr (Rank == 0) {
      allocate_uninitialized();
      if constexpr (Backend::host_accessible) {
        data_[0] = values;
      } else {
        const T value = values;
        Backend::copy_from_host(data_, &value, sizeof(T));
      }
    } else {
      infer_shape<0>(values);
      allocate_uninitialized();
      if constexpr (Backend::host_accessible) {
        T* out = data_;
        fill_from<0>(values, out);
      } else {  // filled on the host, then copied
        const auto staging = std::make_unique<T[]>(static_cast<std::size_t>(size()));
        T* out = staging.get();
        fill_from<0>(values, out);
        Backend::copy_from_host(data_, staging.get(), static_cast<std::size_t>(size()) * sizeof(T));
      }
    }
  }

  /// Evaluates an expression (one fused pass for elementwise chains).
  template <class E, std::enable_if_t<is_expr_v<E> && !std::is_same_v<std::decay_t<E>, Tensor>, int> = 0>
  Tensor(const E& expr) : Tensor(from_expression(expr)) {}

  Tensor(const Tensor&) = default;
  Tensor(Tensor&&) noexcept = default;
  /// Rebinds this handle to `other`'s storage.
  Tensor& operator=(const Tensor&) & = default;
  Tensor& operator=(Tensor&&) & noexcept = default;
  /// On a temporary view (`t.slice(...) = u`), copies `u`'s elements into the viewed ones.
  Tensor& operator=(const Tensor& other) && {
    assign(other);
    return *this;
  }

  /// Rebinds to the expression's value; reuses this buffer when the shape matches and it is unshared.
  template <class E, std::enable_if_t<is_expr_v<E> && !std::is_same_v<std::decay_t<E>, Tensor>, int> = 0>
  Tensor& operator=(const E& expr) & {
    check_assignable<E>();
    if constexpr (assignable_v<E>) {
      if (base_ && base_.use_count() == 1 && is_contiguous() && shape_ == expr.shape()) {
        detail::assign_expression(*this, expr);
      } else {
        *this = detail::evaluate_expression<T, Rank, Backend>(expr);
      }
    }
    return *this;
  }
  /// On a temporary view, writes the expression into the viewed elements.
  template <class E, std::enable_if_t<is_expr_v<E> && !std::is_same_v<std::decay_t<E>, Tensor>, int> = 0>
  Tensor& operator=(const E& expr) && {
    assign(expr);
    return *this;
  }

  /// Writes `expr` (broadcast to this shape) into this tensor's elements, in place.
  template <class E>
  Tensor& assign(const ExprBase<E>& expr) {
    static_assert(rank_v<E> <= Rank, "tessera: cannot assign an expression of higher rank to a tensor");
    static_assert(std::is_same_v<value_type_t<E>, T>,
                  "tessera: expression element type differs from the tensor's; use cast<T>(expr)");
    static_assert(std::is_same_v<common_backend_t<backend_t<E>, Backend>, Backend>,
                  "tessera: expression and tensor live on different backends");
    if constexpr (rank_v<E> <= Rank && std::is_same_v<value_type_t<E>, T>) {
      detail::assign_expression(*this, expr.derived());
    }
    return *this;
  }
  /// Sets every element to `value`.
  Tensor& fill(T value);

  template <class E>
  Tensor& operator+=(const E& rhs);
  template <class E>
  Tensor& operator-=(const E& rhs);
  template <class E>
  Tensor& operator*=(const E& rhs);
  template <class E>
  Tensor& operator/=(const E& rhs);

  // ---- inspection --------------------------------------------------------------------------
  const shape_type& shape() const noexcept { return shape_; }
  /// Extent of one axis (negative counts from the end).
  index_t shape(index_t axis) const { return shape_[normalize_axis(axis, Rank, "shape")]; }
  const shape_type& strides() const noexcept { return strides_; }
  index_t size() const noexcept { return numel(shape_); }
  bool empty() const noexcept { return size() == 0; }
  /// True when elements are laid out densely in row-major order.
  bool is_contiguous() const noexcept {
    index_t expected = 1;
    for (std::size_t i = Rank; i-- > 0;) {
      if (shape_[i] != 1 && strides_[i] != expected) return false;
      expected *= shape_[i];
    }
    return true;
  }
  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  /// The allocation this tensor (or view) lives in; equal for aliasing views.
  const void* storage_id() const noexcept { return base_.get(); }
  static constexpr const char* dtype() noexcept { return dtype_name<T>(); }

  // ---- element access (host backends only), bounds-checked ------------------------------------
  template <class... I, std::enable_if_t<sizeof...(I) == Rank && detail::all_integral_v<I...>, int> = 0>
  T& operator()(I... idx) {
    return data_[offset_of({static_cast<index_t>(idx)...})];
  }
  template <class... I, std::enable_if_t<sizeof...(I) == Rank && detail::all_integral_v<I...>, int> = 0>
  const T& operator()(I... idx) const {
    return data_[offset_of({static_cast<index_t>(idx)...})];
  }
  /// The single element of a tensor with one element.
  T item() const {
    if (size() != 1) throw shape_error("item: tensor of shape " + shape_to_string(shape_) + " has " +
                                       std::to_string(size()) + " elements, not 1");
    return data_[0];
  }

  // ---- views (share storage) ------------------------------------------------------------------
  /// Same elements with new extents; one extent may be -1 (inferred). Copies only if not contiguous.
  template <std::size_t N>
  Tensor<T, N, Backend> reshape(const index_t (&extents)[N]) const {
    return reshape(to_shape(extents));
  }
  template <std::size_t N>
  Tensor<T, N, Backend> reshape(Shape<N> s) const;
  /// All elements as a rank-1 tensor.
  Tensor<T, 1, Backend> flatten() const { return reshape(Shape<1>{size()}); }
  /// Axes in a new order: result axis i is this tensor's axis order[i].
  /// (A template so that a rank-0 tensor declares no zero-length array, which C++ forbids.)
  template <std::size_t N, std::enable_if_t<N == Rank, int> = 0>
  Tensor permute(const index_t (&order)[N]) const {
    return permute(to_shape(order));
  }
  Tensor permute(const shape_type& order) const;
  /// Swaps two axes.
  Tensor transpose(index_t a, index_t b) const;
  /// Reverses all axes (the matrix transpose for rank 2, like NumPy's .T).
  Tensor transpose() const;
  /// Elements begin, begin+step, ... before end along `axis`; Python slice rules for negative or
  /// out-of-range bounds.
  Tensor slice(index_t axis, index_t begin, index_t end, index_t step = 1) const;
  /// The rank-(Rank-1) view at `index` along `axis`.
  Tensor<T, (Rank > 0 ? Rank - 1 : 0), Backend> select(index_t axis, index_t index) const;
  /// Read-only style view repeating size-1 axes (stride 0) to `target` extents.
  template <std::size_t N>
  Tensor<T, N, Backend> broadcast_to(const index_t (&target)[N]) const {
    return broadcast_to(to_shape(target));
  }
  template <std::size_t N>
  Tensor<T, N, Backend> broadcast_to(const Shape<N>& target) const;
  /// Drops a size-1 axis.
  Tensor<T, (Rank > 0 ? Rank - 1 : 0), Backend> squeeze(index_t axis) const;
  /// Inserts a size-1 axis before position `axis` (axis == Rank appends).
  Tensor<T, Rank + 1, Backend> unsqueeze(index_t axis) const;

  /// This tensor if contiguous, else a contiguous copy.
  Tensor contiguous() const { return is_contiguous() ? *this : clone(); }
  /// A deep, contiguous copy.
  Tensor clone() const;
  /// This tensor on backend B2: `x.to<cuda>()`, `y.to<cpu>()` (a contiguous copy; this tensor
  /// itself when B2 is its own backend, as in PyTorch).
  template <class B2>
  Tensor<T, Rank, B2> to() const;

  // ---- construction helpers used by factories and kernels -------------------------------------
  /// A contiguous tensor with uninitialized elements.
  static Tensor uninitialized(const shape_type& s) {
    Tensor t(no_storage);
    t.shape_ = s;
    t.check_extents();
    t.allocate_uninitialized();
    return t;
  }
  /// A view on existing storage (used by view operations; callers guarantee the bounds).
  static Tensor view_of(std::shared_ptr<T> base, T* data, const shape_type& s, const shape_type& st) {
    Tensor t(no_storage);
    t.base_ = std::move(base);
    t.data_ = data;
    t.shape_ = s;
    t.strides_ = st;
    return t;
  }
  const std::shared_ptr<T>& storage() const noexcept { return base_; }

 private:
  template <class, std::size_t, class>
  friend class Tensor;

  /// Tag for the constructor that allocates nothing (even at rank 0); the caller sets everything.
  struct no_storage_t {};
  static constexpr no_storage_t no_storage{};
  explicit Tensor(no_storage_t) {}

  template <class E>
  static constexpr bool assignable_v = rank_v<E> == Rank && std::is_same_v<value_type_t<E>, T>;

  /// Evaluates after the readable static_asserts, so a mistake reports one message, not hundreds.
  template <class E>
  static Tensor from_expression(const E& expr) {
    check_assignable<E>();
    if constexpr (assignable_v<E>) {
      return detail::evaluate_expression<T, Rank, Backend>(expr);
    } else {
      return Tensor();
    }
  }

  template <class E>
  static constexpr void check_assignable() {
    static_assert(rank_v<E> == Rank, "tessera: cannot assign an expression to a tensor of a different rank");
    static_assert(std::is_same_v<value_type_t<E>, T>,
                  "tessera: expression element type differs from the tensor's; use cast<T>(expr)");
    static_assert(std::is_same_v<common_backend_t<backend_t<E>, Backend>, Backend>,
                  "tessera: expression and tensor live on different backends");
  }

  template <std::size_t N>
  static Shape<N> to_shape(const index_t (&a)[N]) {
    Shape<N> s{};
    for (std::size_t i = 0; i < N; ++i) s[i] = a[i];
    return s;
  }

  void check_extents() const {
    for (auto e : shape_) {
      if (e < 0) throw shape_error("Tensor: negative extent in shape " + shape_to_string(shape_));
    }
  }

  void allocate_uninitialized() {
    const index_t n = numel(shape_);
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
    T* p = static_cast<T*>(Backend::allocate(bytes));
    base_ = std::shared_ptr<T>(p, [bytes](T* q) { Backend::deallocate(q, bytes); });
    data_ = p;
    strides_ = contiguous_strides(shape_);
  }
  void allocate_zeroed() {
    allocate_uninitialized();
    const index_t n = size();
    if (n > 0) Backend::fill_zero(data_, static_cast<std::size_t>(n) * sizeof(T));  // (n < 0 threw before)
  }

  template <std::size_t D, class L>
  void infer_shape(const L& list) {
    shape_[D] = static_cast<index_t>(list.size());
    if constexpr (D + 1 < Rank) {
      if (list.size() == 0) {
        for (std::size_t k = D + 1; k < Rank; ++k) shape_[k] = 0;
      } else {
        infer_shape<D + 1>(*list.begin());
      }
    }
  }
  template <std::size_t D, class L>
  void fill_from(const L& list, T*& out) {
    if (static_cast<index_t>(list.size()) != shape_[D]) {
      throw shape_error("Tensor: ragged initializer list: axis " + std::to_string(D) + " has " +
                        std::to_string(list.size()) + " entries where " + std::to_string(shape_[D]) +
                        " were expected");
    }
    for (const auto& sub : list) {
      if constexpr (D + 1 == Rank) {
        *out++ = static_cast<T>(sub);
      } else {
        fill_from<D + 1>(sub, out);
      }
    }
  }

  index_t offset_of(const shape_type& idx) const {
    static_assert(Backend::host_accessible, "tessera: element access needs a host backend; copy with .to<cpu>()");
    index_t off = 0;
    for (std::size_t i = 0; i < Rank; ++i) {
      if (TESSERA_UNLIKELY(idx[i] < 0 || idx[i] >= shape_[i])) {
        throw index_error("Tensor: index " + shape_to_string(idx) + " is out of bounds for shape " +
                          shape_to_string(shape_) + " (axis " + std::to_string(i) + ")");
      }
      off += idx[i] * strides_[i];
    }
    return off;
  }

  std::shared_ptr<T> base_;
  T* data_ = nullptr;
  shape_type shape_{};
  shape_type strides_{};
};

// ---- view implementations -----------------------------------------------------------------------

template <class T, std::size_t R, class B>
template <class B2>
Tensor<T, R, B2> Tensor<T, R, B>::to() const {
  if constexpr (std::is_same_v<B2, B>) {
    return *this;
  } else {
    Tensor source = *this;
    if (!is_contiguous()) {
#if defined(__CUDACC__)
      source = clone();  // on the device: one kernel packs the view
#else
      if constexpr (B::host_accessible) {
        source = clone();
      } else {  // packing a device view takes a kernel, which only nvcc compiles
        throw value_error(std::string("to: a non-contiguous view of a ") + B::name + " tensor of shape " +
                          shape_to_string(shape_) + " in a file not compiled by nvcc; clone() it in one that is");
      }
#endif
    }
    auto out = Tensor<T, R, B2>::uninitialized(shape_);
    const std::size_t bytes = static_cast<std::size_t>(size()) * sizeof(T);
    if (bytes == 0) return out;
    if constexpr (B::host_accessible) {
      B2::copy_from_host(out.data(), source.data(), bytes);
    } else if constexpr (B2::host_accessible) {
      B::copy_to_host(out.data(), source.data(), bytes);
    } else {  // between two device backends: through the host
      const auto staging = std::make_unique<unsigned char[]>(bytes);
      B::copy_to_host(staging.get(), source.data(), bytes);
      B2::copy_from_host(out.data(), staging.get(), bytes);
    }
    return out;
  }
}

template <class T, std::size_t R, class B>
template <std::size_t N>
Tensor<T, N, B> Tensor<T, R, B>::reshape(Shape<N> s) const {
  detail::resolve_reshape(shape_.data(), R, size(), s.data(), N);
  if (!is_contiguous()) return clone().reshape(s);
  return Tensor<T, N, B>::view_of(base_, data_, s, contiguous_strides(s));
}

template <class T, std::size_t R, class B>
Tensor<T, R, B> Tensor<T, R, B>::permute(const shape_type& order) const {
  shape_type s{}, st{};
  std::array<bool, R> seen{};
  for (std::size_t i = 0; i < R; ++i) {
    const std::size_t a = normalize_axis(order[i], R, "permute");
    if (seen[a]) throw shape_error("permute: axis order " + shape_to_string(order) + " repeats axis " +
                                   std::to_string(a));
    seen[a] = true;
    s[i] = shape_[a];
    st[i] = strides_[a];
  }
  return view_of(base_, data_, s, st);
}

template <class T, std::size_t R, class B>
Tensor<T, R, B> Tensor<T, R, B>::transpose(index_t a, index_t b) const {
  const std::size_t ia = normalize_axis(a, R, "transpose");
  const std::size_t ib = normalize_axis(b, R, "transpose");
  shape_type s = shape_, st = strides_;
  std::swap(s[ia], s[ib]);
  std::swap(st[ia], st[ib]);
  return view_of(base_, data_, s, st);
}

template <class T, std::size_t R, class B>
Tensor<T, R, B> Tensor<T, R, B>::transpose() const {
  shape_type s{}, st{};
  for (std::size_t i = 0; i < R; ++i) {
    s[i] = shape_[R - 1 - i];
    st[i] = strides_[R - 1 - i];
  }
  return view_of(base_, data_, s, st);
}

template <class T, std::size_t R, class B>
Tensor<T, R, B> Tensor<T, R, B>::slice(index_t axis, index_t begin, index_t end, index_t step) const {
  const std::size_t a = normalize_axis(axis, R, "slice");
  if (step <= 0) throw value_error("slice: step must be positive, got " + std::to_string(step));
  const index_t n = shape_[a];
  auto clamp_bound = [n](index_t v) {
    if (v < 0) v += n;
    return std::clamp<index_t>(v, 0, n);
  };
  const index_t b = clamp_bound(begin);
  const index_t e = std::max(b, clamp_bound(end));
  shape_type s = shape_, st = strides_;
  s[a] = (e - b + step - 1) / step;
  st[a] = strides_[a] * step;
  return view_of(base_, data_ + b * strides_[a], s, st);
}

template <class T, std::size_t R, class B>
Tensor<T, (R > 0 ? R - 1 : 0), B> Tensor<T, R, B>::select(index_t axis, index_t index) const {
  static_assert(R > 0, "select: a rank-0 tensor has no axis to select from");
  const std::size_t a = normalize_axis(axis, R, "select");
  const index_t n = shape_[a];
  if (index < -n || index >= n) {
    throw index_error("select: index " + std::to_string(index) + " is out of range for axis " + std::to_string(a) +
                      " of shape " + shape_to_string(shape_));
  }
  if (index < 0) index += n;
  Shape<R - 1> s{}, st{};
  for (std::size_t i = 0, k = 0; i < R; ++i) {
    if (i == a) continue;
    s[k] = shape_[i];
    st[k] = strides_[i];
    ++k;
  }
  return Tensor<T, R - 1, B>::view_of(base_, data_ + index * strides_[a], s, st);
}

template <class T, std::size_t R, class B>
template <std::size_t N>
Tensor<T, N, B> Tensor<T, R, B>::broadcast_to(const Shape<N>& target) const {
  static_assert(N >= R, "broadcast_to: the target rank must not be smaller than the tensor's");
  Shape<N> st{};
  for (std::size_t i = 0; i < N; ++i) {
    if (i < N - R) {
      st[i] = 0;
      continue;
    }
    const std::size_t k = i - (N - R);
    if (shape_[k] == target[i]) {
      st[i] = shape_[k] == 1 ? 0 : strides_[k];
    } else if (shape_[k] == 1) {
      st[i] = 0;
    } else {
      throw shape_error("broadcast_to: cannot broadcast " + shape_to_string(shape_) + " to " +
                        shape_to_string(target) + ": extent " + std::to_string(shape_[k]) + " at axis " +
                        std::to_string(k) + " is neither 1 nor " + std::to_string(target[i]));
    }
  }
  return Tensor<T, N, B>::view_of(base_, data_, target, st);
}

template <class T, std::size_t R, class B>
Tensor<T, (R > 0 ? R - 1 : 0), B> Tensor<T, R, B>::squeeze(index_t axis) const {
  static_assert(R > 0, "squeeze: a rank-0 tensor has no axis to drop");
  const std::size_t a = normalize_axis(axis, R, "squeeze");
  if (shape_[a] != 1) {
    throw shape_error("squeeze: axis " + std::to_string(a) + " of shape " + shape_to_string(shape_) +
                      " has extent " + std::to_string(shape_[a]) + ", not 1");
  }
  return select(static_cast<index_t>(a), 0);
}

template <class T, std::size_t R, class B>
Tensor<T, R + 1, B> Tensor<T, R, B>::unsqueeze(index_t axis) const {
  const std::size_t a = normalize_axis(axis, R + 1, "unsqueeze");
  Shape<R + 1> s{}, st{};
  for (std::size_t i = 0, k = 0; i < R + 1; ++i) {
    if (i == a) {
      s[i] = 1;
      st[i] = (k < R) ? strides_[k] * shape_[k] : 1;
    } else {
      s[i] = shape_[k];
      st[i] = strides_[k];
      ++k;
    }
  }
  return Tensor<T, R + 1, B>::view_of(base_, data_, s, st);
}

}  // namespace tessera
