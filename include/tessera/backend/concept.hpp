// The backend contract: what a type must provide to run tessera tensors and expressions.
//
// A backend B is a type used as Tensor<T, R, B>. Layers above the backends (expressions, autodiff,
// nn, optim) call only the entries listed here, so a new backend is a new policy, not a rewrite.
//
// REQUIRED (static members of B):
//   static constexpr const char* name;                     // "cpu", "cuda"
//   static constexpr bool host_accessible;                 // may host code dereference data()?
//   static void* allocate(std::size_t bytes);               // uninitialized, suitably aligned; throws
//                                                           // std::bad_alloc (or a subclass) on failure
//   static void  deallocate(void* p, std::size_t bytes) noexcept;
//   static void  copy_to_host(void* host_dst, const void* src, std::size_t bytes);
//   static void  copy_from_host(void* dst, const void* host_src, std::size_t bytes);
//   static void  copy_device(void* dst, const void* src, std::size_t bytes);
//   static void  fill_zero(void* dst, std::size_t bytes);
//
// REQUIRED (free functions found by overloading on a B{} tag; see backend/cpu/*.hpp):
//   elementwise_assign(B, Tensor<T,R,B>& dst, const Expr& e)        one fused pass, dst = e
//   gemm(B, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)   row-major GEMM
//   gemm_batched(B, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
//                ldc, stride_c, batches)                  `batches` GEMMs at constant offsets
//   reduce_into(B, Tensor<T,RO,B>& out, const Expr& in, axes mask, reducer, scale)
//   arg_reduce_into(B, std::bool_constant<Largest>, Tensor<int64,R-1,B>& out, const Tensor<T,R,B>& in, axis)
//   softmax_into(B, Tensor<T,R,B>& out, const Tensor<T,R,B>& in, axis, log)
//   random_fill(B, T* data, n, Generator& gen, draw)       the next counter blocks of gen through a
//                                                          draw of core/random.hpp (uniform, normal,
//                                                          dropout masks); the same values on every backend
//                                                          (normal: to libm's last-bit rounding)
//   elementwise_assign_multi(B, dsts, exprs, index_sequence)   several same-shaped outputs, one pass
//
// PROVIDED for every backend, which may overload it for its own tag:
//   matmul_into(B, Tensor<T,R,B> out, Tensor<T,RA,B> a, Tensor<T,RB,B> b)   batched, broadcast
//     matmul planned onto gemm/gemm_batched                                  backend/matmul_plan.hpp
//
// OPTIONAL (an op whose entry a backend lacks fails to compile where it is used):
//   conv2d_forward (optional fused bias) / conv2d_backward_data / _filter / _bias(B, ...)  backend/cpu/conv.hpp
//     with has_relu_epilogue<B> true, conv2d_forward's trailing `relu` flag and
//     BatchNormForwardArgs::relu are honoured (else relu(conv2d) and relu(batch_norm) run a pass)
//   pool2d_forward / pool2d_backward(B, std::bool_constant<Max>, ...)            backend/cpu/pool.hpp
//   conv2d_pool_forward(B, x, w, y, conv_shape, geometry, bias, relu, PoolEpilogue) with
//     has_conv_pool_epilogue<B> true: inference's pooling in the convolution's epilogue
//     (else the convolution's output is stored, then pooled)                    backend/cpu/conv.hpp
//   batch_norm_forward(B, x, gamma, beta, y, mean, invstd, var, args)           backend/cpu/normalization.hpp
//   batch_norm_scale_shift(B, O, gamma, beta, mean, var, eps, conv_bias, scale, shift), with
//     has_batch_norm_fold<B> true: inference's batch norm folded into the convolution before
//     it, whose conv2d_forward / conv2d_pool_forward then take a weight_scale (else the scaled
//     weights are made with a few expressions per call)                         backend/cpu/normalization.hpp
//   batch_norm_backward(B, x, dy, gamma, mean, invstd, dx, dgamma, dbeta, args) with
//     has_batch_norm_backward<B> true (else autodiff's closed form)             backend/cuda/conv.hpp
//   embedding_forward / embedding_backward(B, ...)                              backend/cpu/embedding.hpp
//   prod_adjoint_into(B, out, x, reduced mask, g, p)   prod's gradient          backend/cpu/reduce.hpp
// The CUDA backend (backend/cuda/*.hpp) provides all of them but conv2d_pool_forward and
// batch_norm_scale_shift.
#pragma once

#include <cstddef>
#include <type_traits>

namespace tessera {

/// The CPU backend, the default backend argument of tensors and factories. Defined, with its
/// kernels, in backend/cpu/ (tessera/tessera.hpp includes it): core and expression headers name
/// it without depending on its implementation.
struct cpu;

namespace detail {
template <class B, class = void>
struct has_backend_members : std::false_type {};
template <class B>
struct has_backend_members<
    B, std::void_t<decltype(B::name), decltype(B::host_accessible), decltype(B::allocate(std::size_t{})),
                   decltype(B::deallocate(nullptr, std::size_t{})),
                   decltype(B::copy_to_host(nullptr, nullptr, std::size_t{})),
                   decltype(B::copy_from_host(nullptr, nullptr, std::size_t{})),
                   decltype(B::copy_device(nullptr, nullptr, std::size_t{})),
                   decltype(B::fill_zero(nullptr, std::size_t{}))>> : std::true_type {};
}  // namespace detail

/// True when B provides the required static members of the backend contract.
template <class B>
inline constexpr bool is_backend_v = detail::has_backend_members<B>::value;

#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
/// The same check as a C++20 concept.
template <class B>
concept Backend = is_backend_v<B>;
#endif

}  // namespace tessera
