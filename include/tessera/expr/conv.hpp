// conv2d, max_pool2d and avg_pool2d (NCHW) as materialization nodes, with their backward nodes as
// grad rules: the data and filter gradients of a convolution, the pooling gradient.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

/// A size given once for both spatial axes (`3`) or per axis (`{3, 1}`).
struct Size2 {
  index_t h, w;
  Size2(index_t v) : h(v), w(v) {}  // NOLINT: implicit, so `{.padding = 1}` reads naturally
  Size2(index_t h_, index_t w_) : h(h_), w(w_) {}
};

/// Options of conv2d (torch.nn.functional.conv2d's, same meaning).
struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  index_t groups = 1;
};

/// Options of the pooling ops; stride defaults to the kernel size, as in PyTorch.
struct Pool2dOptions {
  std::optional<Size2> stride = std::nullopt;
  Size2 padding = 0;
  Size2 dilation = 1;  ///< max pooling only
};

namespace detail {

template <class T, class B, class E>
Tensor<T, 4, B> contiguous_value(const E& e) {
  return value_of(e).contiguous();
}

}  // namespace detail

/// The bias input of a conv2d node without one.
struct NoConvBias {};

template <class X, class W>
struct Conv2dInputGrad;
template <class X, class G>
struct Conv2dWeightGrad;
template <class G>
struct Conv2dBiasGrad;

namespace detail {
// The shape checks of the nodes below depend on shapes and geometry alone: compiled once
// (TESSERA_OUT_OF_LINE) rather than in every node type's constructor.

/// conv2d's output shape for input x [N, C, H, W] and weight w [O, C / groups, kh, kw], after
/// checking them, the geometry and (bias_extent >= 0) a bias of that many values.
TESSERA_OUT_OF_LINE Shape<4> conv2d_output_shape(const Shape<4>& x, const Shape<4>& w, const Conv2dGeometry& g,
                                                 index_t bias_extent);
/// A pooling's (`op`) output shape for input x [N, C, H, W] and a kh x kw window, after checking them.
TESSERA_OUT_OF_LINE Shape<4> pool2d_output_shape(const Shape<4>& x, index_t kh, index_t kw, const Conv2dGeometry& g,
                                                 const char* op);
}  // namespace detail

/// y = conv2d(x, w) [+ bias]: x [N, C, H, W], w [O, C / groups, kh, kw], bias [O] -> [N, O, Ho, Wo].
/// With a Bias input the bias is added inside the convolution (no extra pass over y); `use_bias`
/// false skips it (a layer built without bias keeps one type either way). With FusedRelu (what
/// `relu(conv2d(...))` builds) y = relu(conv2d(...)), applied while the convolution writes y: no
/// pass of its own, and readers of y (a pooling's forward and backward) read the stored value
/// instead of recomputing relu over the convolution's.
template <class X, class W, class Bias = NoConvBias, bool FusedRelu = false>
struct Conv2d : detail::MaterializedNode<Conv2d<X, W, Bias, FusedRelu>, value_type_t<X>, 4,
                                         common_backend_t<backend_t<X>, backend_t<W>>> {
  using value_type = value_type_t<X>;
  using backend_type = common_backend_t<backend_t<X>, backend_t<W>>;
  static constexpr std::size_t rank = 4;
  static constexpr const char* name = FusedRelu ? "conv2d_relu" : "conv2d";
  static_assert(rank_v<X> == 4 && rank_v<W> == 4, "tessera::conv2d: input [N, C, H, W] and weight [O, C/groups, kh, kw]");
  static_assert(std::is_same_v<value_type_t<X>, value_type_t<W>>, "tessera::conv2d: input and weight element types differ");
  static_assert(std::is_floating_point_v<value_type>, "tessera::conv2d needs floating-point tensors");

  static constexpr bool has_bias_input = !std::is_same_v<Bias, NoConvBias>;

  X input;
  W weight;
  Bias bias;
  Conv2dGeometry geometry;
  bool use_bias = has_bias_input;

  Conv2d(X x, W w, const Conv2dGeometry& g, Bias b = {}, bool with_bias = has_bias_input)
      : input(std::move(x)),
        weight(std::move(w)),
        bias(std::move(b)),
        geometry(g),
        use_bias(with_bias && has_bias_input) {
    if constexpr (has_bias_input) {
      static_assert(rank_v<Bias> == 1 && std::is_same_v<value_type_t<Bias>, value_type>,
                    "tessera::conv2d: the bias must be a rank-1 tensor of the input's element type");
      shape_ = detail::conv2d_output_shape(input.shape(), weight.shape(), g, bias.shape()[0]);
    } else {
      shape_ = detail::conv2d_output_shape(input.shape(), weight.shape(), g, -1);
    }
  }
  const Shape<4>& shape() const { return shape_; }
  void evaluate_into(Tensor<value_type, 4, backend_type>& out) const {
    Tensor<value_type, 1, backend_type> bias_value;
    const value_type* b = bias_data(bias_value);
    const auto x = detail::contiguous_value<value_type, backend_type>(input);
    const auto w = detail::contiguous_value<value_type, backend_type>(weight);
    if constexpr (!FusedRelu) {
      conv2d_forward(backend_type{}, x, w, out, geometry, b);
    } else if constexpr (has_relu_epilogue<backend_type>::value) {
      conv2d_forward(backend_type{}, x, w, out, geometry, b, true);
    } else {
      conv2d_forward(backend_type{}, x, w, out, geometry, b);
      detail::assign_expression(out, tessera::relu(out));
    }
  }
  /// Inference (no autodiff sweep, which keeps this output for the backward): writes the value
  /// pooled by `pool` into `out` in one backend call (has_conv_pool_epilogue), so the convolution's
  /// output is never stored whole. False, with nothing written, where that does not apply.
  bool evaluate_pooled(Tensor<value_type, 4, backend_type>& out, const PoolEpilogue& pool) const {
    if constexpr (has_conv_pool_epilogue<backend_type>::value) {
      if (detail::active_cache_epoch() != 0) return false;
      Tensor<value_type, 1, backend_type> bias_value;
      const value_type* b = bias_data(bias_value);
      conv2d_pool_forward(backend_type{}, detail::contiguous_value<value_type, backend_type>(input),
                          detail::contiguous_value<value_type, backend_type>(weight), out, shape_, geometry, b,
                          FusedRelu, pool);
      return true;
    } else {
      return false;
    }
  }
  /// This convolution followed by relu (see FusedRelu).
  Conv2d<X, W, Bias, true> with_relu() const { return {input, weight, geometry, bias, use_bias}; }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(input, f);
    detail::for_each_tensor(weight, f);
    if constexpr (has_bias_input) detail::for_each_tensor(bias, f);
  }
  auto inputs() const {
    if constexpr (has_bias_input) {
      return std::tie(input, weight, bias);
    } else {
      return std::tie(input, weight);
    }
  }
  /// The output gradient is evaluated once, here (the sweep builds the backward inside its cache
  /// epoch), and shared by the data, filter and bias gradients: otherwise each would recompute the
  /// elementwise backward above the convolution (a batch norm's, say) on its own.
  template <class G>
  auto input_adjoints(const G& g) const {
    using Dy = Tensor<value_type, 4, backend_type>;
    const Dy dy = [&] {
      if constexpr (FusedRelu) {
        // relu's rule, where(z > 0, g, 0), from the output: relu(z) > 0 exactly where z > 0. The
        // output is the forward's (the sweep's cache holds it).
        const auto y = detail::materialize(*this);
        return detail::contiguous_value<value_type, backend_type>(sum_to(where(y > value_type(0), g, value_type(0)), shape_));
      } else {
        return detail::contiguous_value<value_type, backend_type>(sum_to(g, shape_));
      }
    }();
    auto data_and_filter = std::make_tuple(Conv2dInputGrad<W, Dy>(weight, dy, input.shape(), geometry),
                                           Conv2dWeightGrad<X, Dy>(input, dy, weight.shape(), geometry));
    if constexpr (has_bias_input) {
      return std::tuple_cat(std::move(data_and_filter), std::make_tuple(Conv2dBiasGrad<Dy>(dy, use_bias)));
    } else {
      return data_and_filter;
    }
  }

  /// The bias the backend adds (its value, contiguous, kept alive by `holder`), or null for none
  /// (also read by a batch norm that folds into this convolution).
  const value_type* bias_data(Tensor<value_type, 1, backend_type>& holder) const {
    if constexpr (has_bias_input) {
      if (use_bias) {
        holder = tessera::detail::value_of(bias).contiguous();
        return holder.data();
      }
    }
    static_cast<void>(holder);  // without a bias input
    return nullptr;
  }

 private:
  Shape<4> shape_{};
};

/// The gradient of conv2d with respect to its input: a transposed convolution of dy by w.
template <class W, class G>
struct Conv2dInputGrad : detail::MaterializedNode<Conv2dInputGrad<W, G>, value_type_t<W>, 4, backend_t<W>> {
  using value_type = value_type_t<W>;
  using backend_type = backend_t<W>;
  static constexpr std::size_t rank = 4;
  static constexpr const char* name = "conv2d_input_grad";
  W weight;
  G dy;
  Shape<4> input_shape;
  Conv2dGeometry geometry;
  Conv2dInputGrad(W w, G g, const Shape<4>& in, const Conv2dGeometry& geo)
      : weight(std::move(w)), dy(std::move(g)), input_shape(in), geometry(geo) {}
  const Shape<4>& shape() const { return input_shape; }
  void evaluate_into(Tensor<value_type, 4, backend_type>& out) const {
    conv2d_backward_data(backend_type{}, detail::contiguous_value<value_type, backend_type>(weight),
                         detail::contiguous_value<value_type, backend_type>(dy), out, geometry);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(weight, f);
    detail::for_each_tensor(dy, f);
  }
  auto inputs() const { return std::tie(weight, dy); }
  template <class GG>
  auto input_adjoints(const GG&) const {
    static_assert(detail::dependent_false_v<GG>, "tessera::grad: second derivatives through conv2d are not implemented");
    return std::make_tuple(NoAdjoint{}, NoAdjoint{});
  }
};

/// The gradient of conv2d with respect to its weight: dy correlated with the input's columns.
template <class X, class G>
struct Conv2dWeightGrad : detail::MaterializedNode<Conv2dWeightGrad<X, G>, value_type_t<X>, 4, backend_t<X>> {
  using value_type = value_type_t<X>;
  using backend_type = backend_t<X>;
  static constexpr std::size_t rank = 4;
  static constexpr const char* name = "conv2d_weight_grad";
  X input;
  G dy;
  Shape<4> weight_shape;
  Conv2dGeometry geometry;
  Conv2dWeightGrad(X x, G g, const Shape<4>& w, const Conv2dGeometry& geo)
      : input(std::move(x)), dy(std::move(g)), weight_shape(w), geometry(geo) {}
  const Shape<4>& shape() const { return weight_shape; }
  void evaluate_into(Tensor<value_type, 4, backend_type>& out) const {
    conv2d_backward_filter(backend_type{}, detail::contiguous_value<value_type, backend_type>(input),
                           detail::contiguous_value<value_type, backend_type>(dy), out, geometry);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(input, f);
    detail::for_each_tensor(dy, f);
  }
  auto inputs() const { return std::tie(input, dy); }
  template <class GG>
  auto input_adjoints(const GG&) const {
    static_assert(detail::dependent_false_v<GG>, "tessera::grad: second derivatives through conv2d are not implemented");
    return std::make_tuple(NoAdjoint{}, NoAdjoint{});
  }
};

namespace detail {
inline Conv2dGeometry conv2d_geometry(const Conv2dOptions& o) {
  return {o.stride.h, o.stride.w, o.padding.h, o.padding.w, o.dilation.h, o.dilation.w, o.groups};
}
}  // namespace detail

/// The gradient of conv2d's bias: dy summed over the batch and the positions; zeros when the node
/// does not use its bias (a layer without bias still has the tensor in its parameter tuple).
template <class G>
struct Conv2dBiasGrad : detail::MaterializedNode<Conv2dBiasGrad<G>, value_type_t<G>, 1, backend_t<G>> {
  using value_type = value_type_t<G>;
  using backend_type = backend_t<G>;
  static constexpr std::size_t rank = 1;
  static constexpr const char* name = "conv2d_bias_grad";
  G dy;
  bool used;
  Conv2dBiasGrad(G g, bool use) : dy(std::move(g)), used(use) {}
  Shape<1> shape() const { return Shape<1>{dy.shape()[1]}; }
  void evaluate_into(Tensor<value_type, 1, backend_type>& out) const {
    if (used) {
      conv2d_backward_bias(backend_type{}, detail::contiguous_value<value_type, backend_type>(dy), out);
    } else {
      // The backend's own fill: `out` may be device memory.
      backend_type::fill_zero(out.data(), static_cast<std::size_t>(out.size()) * sizeof(value_type));
    }
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(dy, f);
  }
  auto inputs() const { return std::tie(dy); }
  template <class GG>
  auto input_adjoints(const GG&) const {
    static_assert(detail::dependent_false_v<GG>, "tessera::grad: second derivatives through conv2d are not implemented");
    return std::make_tuple(NoAdjoint{});
  }
};

/// Lazy 2-D convolution (cross-correlation, as in every deep-learning library), NCHW.
template <class X, class W, std::enable_if_t<is_expr_v<X> && is_expr_v<W>, int> = 0>
Conv2d<X, W> conv2d(const X& x, const W& w, const Conv2dOptions& o = {}) {
  return Conv2d<X, W>(x, w, detail::conv2d_geometry(o));
}
/// conv2d(x, w) plus bias[o] on output channel o (torch.nn.functional.conv2d's bias), added
/// inside the convolution. `bias`: a rank-1 tensor or expression of the output channels.
template <class X, class W, class B, std::enable_if_t<is_expr_v<X> && is_expr_v<W> && is_expr_v<B>, int> = 0>
Conv2d<X, W, B> conv2d(const X& x, const W& w, const B& bias, const Conv2dOptions& o = {}) {
  return Conv2d<X, W, B>(x, w, detail::conv2d_geometry(o), bias);
}

/// relu of a convolution is one node: the convolution applies relu as it writes its output (see
/// Conv2d's FusedRelu). Found by argument lookup wherever relu(x) is called on one (nn::ReLU).
template <class X, class W, class B, bool FusedRelu>
Conv2d<X, W, B, true> relu(const Conv2d<X, W, B, FusedRelu>& c) {
  return c.with_relu();
}

template <bool Max, class X, class G>
struct Pool2dGrad;

/// Max (Max = true) or average pooling over kh x kw windows, NCHW.
template <bool Max, class X>
struct Pool2d : detail::MaterializedNode<Pool2d<Max, X>, value_type_t<X>, 4, backend_t<X>> {
  using value_type = value_type_t<X>;
  using backend_type = backend_t<X>;
  static constexpr std::size_t rank = 4;
  static constexpr const char* name = Max ? "max_pool2d" : "avg_pool2d";
  static_assert(rank_v<X> == 4, "tessera: pooling needs an [N, C, H, W] input");
  static_assert(std::is_floating_point_v<value_type>, "tessera: pooling needs floating-point tensors");
  X input;
  index_t kh, kw;
  Conv2dGeometry geometry;
  Pool2d(X x, index_t kernel_h, index_t kernel_w, const Conv2dGeometry& g)
      : input(std::move(x)),
        kh(kernel_h),
        kw(kernel_w),
        geometry(g),
        shape_(detail::pool2d_output_shape(input.shape(), kh, kw, g, name)) {}
  const Shape<4>& shape() const { return shape_; }
  void evaluate_into(Tensor<value_type, 4, backend_type>& out) const {
    if constexpr (detail::has_pooled_evaluation<X>::value) {
      if (input.evaluate_pooled(out, PoolEpilogue{Max, kh, kw, geometry})) return;
    }
    pool2d_forward(backend_type{}, std::bool_constant<Max>{}, detail::contiguous_value<value_type, backend_type>(input), out, kh, kw, geometry);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(input, f);
  }
  auto inputs() const { return std::tie(input); }
  template <class G>
  auto input_adjoints(const G& g) const {
    const auto gg = sum_to(g, shape_);
    return std::make_tuple(Pool2dGrad<Max, X, std::decay_t<decltype(gg)>>(input, gg, kh, kw, geometry));
  }

 private:
  Shape<4> shape_{};
};

/// The gradient of pooling with respect to its input (max: to each window's first maximum).
template <bool Max, class X, class G>
struct Pool2dGrad : detail::MaterializedNode<Pool2dGrad<Max, X, G>, value_type_t<X>, 4, backend_t<X>> {
  using value_type = value_type_t<X>;
  using backend_type = backend_t<X>;
  static constexpr std::size_t rank = 4;
  static constexpr const char* name = Max ? "max_pool2d_grad" : "avg_pool2d_grad";
  X input;
  G dy;
  index_t kh, kw;
  Conv2dGeometry geometry;
  Pool2dGrad(X x, G g, index_t h, index_t w, const Conv2dGeometry& geo)
      : input(std::move(x)), dy(std::move(g)), kh(h), kw(w), geometry(geo) {}
  auto shape() const { return input.shape(); }
  void evaluate_into(Tensor<value_type, 4, backend_type>& out) const {
    pool2d_backward(backend_type{}, std::bool_constant<Max>{}, detail::contiguous_value<value_type, backend_type>(input),
                         detail::contiguous_value<value_type, backend_type>(dy), out, kh, kw, geometry);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(input, f);
    detail::for_each_tensor(dy, f);
  }
  auto inputs() const { return std::tie(input, dy); }
  template <class GG>
  auto input_adjoints(const GG&) const {
    static_assert(detail::dependent_false_v<GG>, "tessera::grad: second derivatives through pooling are not implemented");
    return std::make_tuple(NoAdjoint{}, NoAdjoint{});
  }
};

namespace detail {
inline Conv2dGeometry pool_geometry(index_t kh, index_t kw, const Pool2dOptions& o) {
  const Size2 stride = o.stride ? *o.stride : Size2(kh, kw);
  return Conv2dGeometry{stride.h, stride.w, o.padding.h, o.padding.w, o.dilation.h, o.dilation.w, 1};
}
}  // namespace detail

/// Lazy max pooling over `kernel` windows (stride = kernel unless given).
template <class X, std::enable_if_t<is_expr_v<X>, int> = 0>
Pool2d<true, X> max_pool2d(const X& x, Size2 kernel, const Pool2dOptions& o = {}) {
  return Pool2d<true, X>(x, kernel.h, kernel.w, detail::pool_geometry(kernel.h, kernel.w, o));
}
/// Lazy average pooling (padding counts as zeros in the average, PyTorch's default).
template <class X, std::enable_if_t<is_expr_v<X>, int> = 0>
Pool2d<false, X> avg_pool2d(const X& x, Size2 kernel, const Pool2dOptions& o = {}) {
  if (o.dilation.h != 1 || o.dilation.w != 1) throw value_error("avg_pool2d: dilation is not supported");
  return Pool2d<false, X>(x, kernel.h, kernel.w, detail::pool_geometry(kernel.h, kernel.w, o));
}

#if TESSERA_OUT_OF_LINE_CORE_DEFINITIONS
TESSERA_OUT_OF_LINE Shape<4> detail::conv2d_output_shape(const Shape<4>& x, const Shape<4>& w, const Conv2dGeometry& g,
                                                         index_t bias_extent) {
  const auto where = [&] { return "conv2d: input " + shape_to_string(x) + ", weight " + shape_to_string(w); };
  if (bias_extent >= 0 && bias_extent != w[0]) {
    throw shape_error(where() + ": the bias " + shape_to_string(Shape<1>{bias_extent}) +
                      " must have one value per output channel");
  }
  if (g.groups < 1 || x[1] % g.groups != 0 || w[0] % g.groups != 0) {
    throw shape_error(where() + ": " + std::to_string(g.groups) + " groups must divide the input and output channels");
  }
  if (w[1] * g.groups != x[1]) {
    throw shape_error(where() + ": the weight expects " + std::to_string(w[1] * g.groups) +
                      " input channels, the input has " + std::to_string(x[1]));
  }
  if (g.stride_h < 1 || g.stride_w < 1 || g.dilation_h < 1 || g.dilation_w < 1 || g.pad_h < 0 || g.pad_w < 0) {
    throw value_error(where() + ": stride and dilation must be positive and padding non-negative");
  }
  return {x[0], w[0], Conv2dGeometry::out_extent(x[2], w[2], g.stride_h, g.pad_h, g.dilation_h, "conv2d"),
          Conv2dGeometry::out_extent(x[3], w[3], g.stride_w, g.pad_w, g.dilation_w, "conv2d")};
}

TESSERA_OUT_OF_LINE Shape<4> detail::pool2d_output_shape(const Shape<4>& x, index_t kh, index_t kw,
                                                         const Conv2dGeometry& g, const char* op) {
  if (kh < 1 || kw < 1 || g.stride_h < 1 || g.stride_w < 1 || g.dilation_h < 1 || g.dilation_w < 1) {
    throw value_error(std::string(op) + ": kernel, stride and dilation must be positive");
  }
  if (g.pad_h < 0 || g.pad_w < 0 || 2 * g.pad_h > kh || 2 * g.pad_w > kw) {
    throw value_error(std::string(op) + ": padding must be between 0 and half the kernel");
  }
  return {x[0], x[1], Conv2dGeometry::out_extent(x[2], kh, g.stride_h, g.pad_h, g.dilation_h, op),
          Conv2dGeometry::out_extent(x[3], kw, g.stride_w, g.pad_w, g.dilation_w, op)};
}
#endif  // TESSERA_OUT_OF_LINE_CORE_DEFINITIONS

}  // namespace tessera
