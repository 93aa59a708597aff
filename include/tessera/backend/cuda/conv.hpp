// Convolution, pooling and batch normalization (forward, and the training backward) on the device
// through cuDNN 9 (its legacy descriptor API), NCHW, float or double.
//
// Convolution algorithms are chosen by cuDNN's measurement (cudnnFind*) the first time a shape is
// seen, and the choice (with its workspace size) is cached per shape, direction and type, as
// PyTorch's cudnn.benchmark mode does. Math is full FP32/FP64 (CUDNN_FMA_MATH): no TF32, so
// results match the CPU backend to rounding. Workspaces come from tessera's caching pool.
#pragma once

#include <cudnn.h>

#include <array>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>

#include "tessera/backend/op_args.hpp"
#include "tessera/backend/cuda/elementwise.hpp"
#include "tessera/backend/cuda/error.hpp"
#include "tessera/core/error.hpp"

namespace tessera {

namespace detail::gpu {

/// The process's cuDNN handle (created on first use, on tessera's stream).
inline cudnnHandle_t cudnn_handle() {
  static const cudnnHandle_t handle = [] {
    cudnnHandle_t h = nullptr;
    TESSERA_CUDA_CHECK(cudnnCreate(&h));
    TESSERA_CUDA_CHECK(cudnnSetStream(h, cuda::stream()));
    return h;
  }();
  return handle;
}

template <class T>
constexpr cudnnDataType_t cudnn_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "tessera: convolution, pooling and batch norm on cuda tensors support float and double");
  return std::is_same_v<T, float> ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}

/// cuDNN takes int extents.
inline int dnn_int(index_t v) {
  if (v < 0 || v > 0x7fffffff) throw shape_error("cuDNN: an extent exceeds the int range");
  return static_cast<int>(v);
}

/// An NCHW tensor descriptor, destroyed with its scope.
struct TensorDesc {
  cudnnTensorDescriptor_t desc = nullptr;
  template <class T>
  static TensorDesc of(index_t n, index_t c, index_t h, index_t w) {
    TensorDesc t;
    TESSERA_CUDA_CHECK(cudnnCreateTensorDescriptor(&t.desc));
    TESSERA_CUDA_CHECK(cudnnSetTensor4dDescriptor(t.desc, CUDNN_TENSOR_NCHW, cudnn_type<T>(), dnn_int(n), dnn_int(c),
                                                  dnn_int(h), dnn_int(w)));
    return t;
  }
  template <class T>
  static TensorDesc of(const Shape<4>& s) {
    return of<T>(s[0], s[1], s[2], s[3]);
  }
  TensorDesc() = default;
  TensorDesc(TensorDesc&& o) noexcept : desc(o.desc) { o.desc = nullptr; }
  TensorDesc& operator=(TensorDesc&&) = delete;
  ~TensorDesc() {
    if (desc) (void)cudnnDestroyTensorDescriptor(desc);
  }
};

/// Filter and convolution descriptors of one conv2d call.
struct ConvDescs {
  cudnnFilterDescriptor_t filter = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  template <class T>
  ConvDescs(const Shape<4>& w, const Conv2dGeometry& g, T*) {
    TESSERA_CUDA_CHECK(cudnnCreateFilterDescriptor(&filter));
    TESSERA_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    TESSERA_CUDA_CHECK(cudnnSetFilter4dDescriptor(filter, cudnn_type<T>(), CUDNN_TENSOR_NCHW, dnn_int(w[0]), dnn_int(w[1]),
                                                  dnn_int(w[2]), dnn_int(w[3])));
    TESSERA_CUDA_CHECK(cudnnSetConvolution2dDescriptor(conv, dnn_int(g.pad_h), dnn_int(g.pad_w), dnn_int(g.stride_h),
                                                       dnn_int(g.stride_w), dnn_int(g.dilation_h), dnn_int(g.dilation_w),
                                                       CUDNN_CROSS_CORRELATION, cudnn_type<T>()));
    TESSERA_CUDA_CHECK(cudnnSetConvolutionGroupCount(conv, dnn_int(g.groups)));
    TESSERA_CUDA_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
  }
  ConvDescs(const ConvDescs&) = delete;
  ConvDescs& operator=(const ConvDescs&) = delete;
  ~ConvDescs() {
    if (filter) (void)cudnnDestroyFilterDescriptor(filter);
    if (conv) (void)cudnnDestroyConvolutionDescriptor(conv);
  }
};

/// Which cuDNN algorithm a convolution of one shape uses, and its workspace.
struct ConvChoice {
  int algo = 0;
  std::size_t workspace = 0;
};
enum class ConvDirection { forward = 0, backward_data = 1, backward_filter = 2 };
using ConvKey = std::array<index_t, 21>;

/// The fastest successful entry of cuDNN's measured list (ordered by time) among the deterministic
/// ones, or among all when none is: some algorithms (backward filter 0 and 3, backward data 0) sum
/// with atomics, so two runs of the same training would differ in their last bits, as CPU runs do
/// not (docs/cuda.md).
template <class Perf>
ConvChoice best_of(const Perf* perf, int count, const char* what) {
  for (const bool deterministic_only : {true, false}) {
    for (int i = 0; i < count; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      if (deterministic_only && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
      return {static_cast<int>(perf[i].algo), perf[i].memory};
    }
  }
  throw cuda_error(std::string("cuDNN found no usable algorithm for ") + what);
}

/// Everything one conv2d call in one direction needs: descriptors of x, w and y (for the backward
/// directions, of dx or dw and dy), the algorithm -- measured by cuDNN's Find the first time this
/// (direction, type, shapes, geometry) is seen, then cached, as PyTorch's cudnn.benchmark mode
/// does -- and a workspace of the size it asked for.
template <class T>
struct ConvPlan {
  TensorDesc x, y;
  ConvDescs descs;
  ConvChoice choice;
  Scratch workspace;

  ConvPlan(ConvDirection dir, const Shape<4>& xs, const Shape<4>& ws, const Shape<4>& ys, const Conv2dGeometry& g)
      : x(TensorDesc::of<T>(xs)), y(TensorDesc::of<T>(ys)), descs(ws, g, static_cast<T*>(nullptr)),
        choice(cached_choice(dir, xs, ws, ys, g)), workspace(choice.workspace) {}
  template <class Algo>
  Algo algo() const {
    return static_cast<Algo>(choice.algo);
  }

 private:
  ConvChoice cached_choice(ConvDirection dir, const Shape<4>& xs, const Shape<4>& ws, const Shape<4>& ys,
                           const Conv2dGeometry& g) const {
    static std::mutex mutex;
    static std::map<ConvKey, ConvChoice> cache;
    const ConvKey key{static_cast<index_t>(dir), static_cast<index_t>(cudnn_type<T>()), xs[0], xs[1], xs[2], xs[3], ws[0],
                      ws[1], ws[2], ws[3], ys[0], ys[1], ys[2], ys[3], g.stride_h, g.stride_w, g.pad_h, g.pad_w,
                      g.dilation_h, g.dilation_w, g.groups};
    {
      std::lock_guard<std::mutex> lock(mutex);
      const auto it = cache.find(key);
      if (it != cache.end()) return it->second;
    }
    const ConvChoice found = find(dir);
    std::lock_guard<std::mutex> lock(mutex);
    cache.emplace(key, found);
    return found;
  }
  /// cuDNN's measurement of every algorithm for this call (it runs them on scratch buffers).
  ConvChoice find(ConvDirection dir) const {
    int found = 0;
    switch (dir) {
      case ConvDirection::forward: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        TESSERA_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithm(cudnn_handle(), x.desc, descs.filter, descs.conv, y.desc,
                                                                CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
        return best_of(perf, found, "conv2d forward");
      }
      case ConvDirection::backward_data: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        TESSERA_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(cudnn_handle(), descs.filter, y.desc, descs.conv, x.desc,
                                                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf));
        return best_of(perf, found, "conv2d backward (data)");
      }
      case ConvDirection::backward_filter: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        TESSERA_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(cudnn_handle(), x.desc, y.desc, descs.conv, descs.filter,
                                                                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf));
        return best_of(perf, found, "conv2d backward (filter)");
      }
    }
    throw cuda_error("conv2d: unknown direction");
  }
};

template <class T>
struct ScalingFactors {  // cuDNN's alpha/beta: double for double data, float otherwise
  T zero = T(0), one = T(1);
};

/// A max or average (padding counted, as the CPU backend) pooling descriptor.
struct PoolDesc {
  cudnnPoolingDescriptor_t desc = nullptr;
  PoolDesc(bool max, index_t kh, index_t kw, const Conv2dGeometry& g) {
    if (g.dilation_h != 1 || g.dilation_w != 1) {
      throw value_error("pooling with dilation is not supported on cuda tensors (cuDNN has no dilated pooling)");
    }
    TESSERA_CUDA_CHECK(cudnnCreatePoolingDescriptor(&desc));
    TESSERA_CUDA_CHECK(cudnnSetPooling2dDescriptor(
        desc, max ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, CUDNN_PROPAGATE_NAN,
        dnn_int(kh), dnn_int(kw), dnn_int(g.pad_h), dnn_int(g.pad_w), dnn_int(g.stride_h), dnn_int(g.stride_w)));
  }
  PoolDesc(const PoolDesc&) = delete;
  PoolDesc& operator=(const PoolDesc&) = delete;
  ~PoolDesc() {
    if (desc) (void)cudnnDestroyPoolingDescriptor(desc);
  }
};

#if defined(__CUDACC__)
/// y = x * (invstd * gamma) + (beta - mean * invstd * gamma) per channel of x viewed as [N, C, S].
template <class T>
__global__ void __launch_bounds__(block_threads) batch_norm_apply(const T* x, const T* gamma, const T* beta, T* y,
                                                                  const T* mean, const T* invstd, index_t C, index_t S,
                                                                  index_t n) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const index_t c = (i / S) % C;
    const T scale = invstd[c] * gamma[c];
    y[i] = x[i] * scale + (beta[c] - mean[c] * scale);
  }
}
/// The biased batch variance back from cuDNN's saved 1 / sqrt(var + eps).
template <class T>
__global__ void variance_from_invstd(const T* invstd, T* var, index_t C, double eps) {
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < C) var[c] = static_cast<T>(1.0 / (double(invstd[c]) * double(invstd[c])) - eps);
}
#endif

}  // namespace detail::gpu

/// y = conv2d(x, w) (+ bias[o] when `bias` is not null), NCHW, contiguous (backend/cpu/conv.hpp).
template <class T>
void conv2d_forward(cuda, const Tensor<T, 4, cuda>& x, const Tensor<T, 4, cuda>& w, Tensor<T, 4, cuda>& y,
                    const Conv2dGeometry& g, const T* bias = nullptr) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (x.size() == 0 || y.size() == 0) return;
  const ConvPlan<T> p(ConvDirection::forward, x.shape(), w.shape(), y.shape(), g);
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnConvolutionForward(cudnn_handle(), &s.one, p.x.desc, x.data(), p.descs.filter, w.data(), p.descs.conv,
                                             p.template algo<cudnnConvolutionFwdAlgo_t>(), p.workspace.data(), p.choice.workspace,
                                             &s.zero, p.y.desc, y.data()));
  if (bias) {
    const auto bd = TensorDesc::of<T>(1, y.shape()[1], 1, 1);
    TESSERA_CUDA_CHECK(cudnnAddTensor(cudnn_handle(), &s.one, bd.desc, bias, &s.one, p.y.desc, y.data()));
  }
}

/// dx = conv2d's gradient with respect to its input.
template <class T>
void conv2d_backward_data(cuda, const Tensor<T, 4, cuda>& w, const Tensor<T, 4, cuda>& dy, Tensor<T, 4, cuda>& dx,
                          const Conv2dGeometry& g) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (dx.size() == 0) return;
  if (dy.size() == 0) {
    dx.fill(T(0));
    return;
  }
  const ConvPlan<T> p(ConvDirection::backward_data, dx.shape(), w.shape(), dy.shape(), g);
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnConvolutionBackwardData(cudnn_handle(), &s.one, p.descs.filter, w.data(), p.y.desc, dy.data(),
                                                  p.descs.conv, p.template algo<cudnnConvolutionBwdDataAlgo_t>(), p.workspace.data(),
                                                  p.choice.workspace, &s.zero, p.x.desc, dx.data()));
}

/// dw = conv2d's gradient with respect to its weight.
template <class T>
void conv2d_backward_filter(cuda, const Tensor<T, 4, cuda>& x, const Tensor<T, 4, cuda>& dy, Tensor<T, 4, cuda>& dw,
                            const Conv2dGeometry& g) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (dw.size() == 0) return;
  if (dy.size() == 0 || x.size() == 0) {
    dw.fill(T(0));
    return;
  }
  const ConvPlan<T> p(ConvDirection::backward_filter, x.shape(), dw.shape(), dy.shape(), g);
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnConvolutionBackwardFilter(cudnn_handle(), &s.one, p.x.desc, x.data(), p.y.desc, dy.data(),
                                                    p.descs.conv, p.template algo<cudnnConvolutionBwdFilterAlgo_t>(),
                                                    p.workspace.data(), p.choice.workspace, &s.zero, p.descs.filter,
                                                    dw.data()));
}

/// db[o] = the sum of dy[:, o, :, :].
template <class T>
void conv2d_backward_bias(cuda, const Tensor<T, 4, cuda>& dy, Tensor<T, 1, cuda>& db) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (db.size() == 0) return;
  if (dy.size() == 0) {
    db.fill(T(0));
    return;
  }
  const auto dyd = TensorDesc::of<T>(dy.shape()), dbd = TensorDesc::of<T>(1, db.size(), 1, 1);
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnConvolutionBackwardBias(cudnn_handle(), &s.one, dyd.desc, dy.data(), &s.zero, dbd.desc, db.data()));
}

/// Max (Max = true) or average pooling forward, NCHW; average counts padding, as on the CPU.
template <bool Max, class T>
void pool2d_forward(cuda, std::bool_constant<Max>, const Tensor<T, 4, cuda>& x, Tensor<T, 4, cuda>& y, index_t kh, index_t kw, const Conv2dGeometry& g) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (y.size() == 0) return;
  const PoolDesc pd(Max, kh, kw, g);
  const auto xd = TensorDesc::of<T>(x.shape()), yd = TensorDesc::of<T>(y.shape());
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnPoolingForward(cudnn_handle(), pd.desc, &s.one, xd.desc, x.data(), &s.zero, yd.desc, y.data()));
}

/// Pooling backward: dx from dy (cuDNN needs the forward output, recomputed here).
template <bool Max, class T>
void pool2d_backward(cuda, std::bool_constant<Max>, const Tensor<T, 4, cuda>& x, const Tensor<T, 4, cuda>& dy, Tensor<T, 4, cuda>& dx, index_t kh,
                     index_t kw, const Conv2dGeometry& g) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (dx.size() == 0) return;
  if (dy.size() == 0) {
    dx.fill(T(0));
    return;
  }
  const PoolDesc pd(Max, kh, kw, g);
  const auto xd = TensorDesc::of<T>(x.shape()), yd = TensorDesc::of<T>(dy.shape());
  auto y = Tensor<T, 4, cuda>::uninitialized(dy.shape());
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnPoolingForward(cudnn_handle(), pd.desc, &s.one, xd.desc, x.data(), &s.zero, yd.desc, y.data()));
  TESSERA_CUDA_CHECK(cudnnPoolingBackward(cudnn_handle(), pd.desc, &s.one, yd.desc, y.data(), yd.desc, dy.data(), xd.desc,
                                          x.data(), &s.zero, xd.desc, dx.data()));
}

/// Batch norm forward of contiguous x viewed as [N, C, S] (backend/cpu/normalization.hpp).
/// Training: cuDNN's spatial batch norm computes y, the batch mean and invstd; the biased
/// variance is recovered from invstd. Evaluation: one kernel applies the given statistics.
template <class T>
void batch_norm_forward(cuda, const T* x, const T* gamma, const T* beta, T* y, T* mean, T* invstd, T* var,
                        const BatchNormForwardArgs& a) {
  using namespace detail::gpu;
  require_nvcc<T>();
  instrument::count_materialization();
  const index_t n = a.batch * a.channels * a.inner;
  if (n == 0) return;
#if defined(__CUDACC__)
  if (a.training) {
    const auto xd = TensorDesc::of<T>(a.batch, a.channels, a.inner, 1);
    const auto pd = TensorDesc::of<T>(1, a.channels, 1, 1);
    const ScalingFactors<T> s;
    TESSERA_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(cudnn_handle(), CUDNN_BATCHNORM_SPATIAL, &s.one, &s.zero, xd.desc,
                                                              x, xd.desc, y, pd.desc, gamma, beta, 0.0, nullptr, nullptr,
                                                              a.eps, mean, invstd));
    variance_from_invstd<<<static_cast<unsigned>((a.channels + 255) / 256), 256, 0, cuda::stream()>>>(invstd, var, a.channels,
                                                                                                     a.eps);
  } else {
    batch_norm_apply<<<grid_for(n), block_threads, 0, cuda::stream()>>>(x, gamma, beta, y, mean, invstd, a.channels, a.inner, n);
  }
  TESSERA_CUDA_CHECK(cudaGetLastError());
#else
  (void)x, (void)gamma, (void)beta, (void)y, (void)mean, (void)invstd, (void)var, (void)a;
#endif
}

template <>
struct has_batch_norm_backward<cuda> : std::true_type {};

/// Batch norm's training backward through cuDNN: dx, dgamma and dbeta of contiguous x and dy
/// viewed as [N, C, S], from the mean and invstd the training forward saved (same eps).
template <class T>
void batch_norm_backward(cuda, const T* x, const T* dy, const T* gamma, const T* mean, const T* invstd, T* dx, T* dgamma,
                         T* dbeta, const BatchNormForwardArgs& a) {
  using namespace detail::gpu;
  instrument::count_materialization();
  if (a.batch * a.channels * a.inner == 0) return;
  const auto xd = TensorDesc::of<T>(a.batch, a.channels, a.inner, 1);
  const auto pd = TensorDesc::of<T>(1, a.channels, 1, 1);
  const ScalingFactors<T> s;
  TESSERA_CUDA_CHECK(cudnnBatchNormalizationBackward(cudnn_handle(), CUDNN_BATCHNORM_SPATIAL, &s.one, &s.zero, &s.one, &s.zero,
                                                     xd.desc, x, xd.desc, dy, xd.desc, dx, pd.desc, gamma, dgamma, dbeta,
                                                     a.eps, mean, invstd));
}

}  // namespace tessera
