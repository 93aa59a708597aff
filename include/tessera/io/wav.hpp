// WAV (RIFF, 16-bit PCM) encoding of audio for TensorBoard audio summaries.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"

namespace tessera::io {

/// A WAV file of `samples` (interleaved by channel, each in [-1, 1]; values outside are clipped)
/// at `sample_rate` Hz, stored as 16-bit little-endian PCM.
inline std::string encode_wav(const std::vector<float>& samples, std::uint32_t sample_rate, std::uint16_t channels) {
  if (channels == 0 || samples.size() % channels != 0) {
    throw value_error("encode_wav: " + std::to_string(samples.size()) + " samples do not divide into " +
                      std::to_string(channels) + " channels");
  }
  if (sample_rate == 0) throw value_error("encode_wav: the sample rate must be positive");
  // The header's block align (channels * 2) is 16 bits wide, its byte rate 32 bits.
  if (channels > 32767 || std::uint64_t(sample_rate) * channels * 2 > 0xFFFFFFFFull) {
    throw value_error("encode_wav: " + std::to_string(channels) + " channels at " + std::to_string(sample_rate) +
                      " Hz do not fit a WAV header");
  }
  const std::uint64_t data_bytes = std::uint64_t(samples.size()) * 2;
  if (data_bytes > 0xFFFFFFFFull - 36) throw value_error("encode_wav: too many samples for a WAV file");
  std::string out;
  out.reserve(44 + data_bytes);
  auto u32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  auto u16 = [&](std::uint16_t v) {
    out.push_back(static_cast<char>(v & 0xFF));
    out.push_back(static_cast<char>(v >> 8));
  };
  out += "RIFF";
  u32(static_cast<std::uint32_t>(36 + data_bytes));
  out += "WAVEfmt ";
  u32(16);                                         // fmt chunk size
  u16(1);                                          // PCM
  u16(channels);
  u32(sample_rate);
  u32(sample_rate * channels * 2u);                // bytes per second
  u16(static_cast<std::uint16_t>(channels * 2));   // block align
  u16(16);                                         // bits per sample
  out += "data";
  u32(static_cast<std::uint32_t>(data_bytes));
  for (float s : samples) {
    const float clipped = std::isnan(s) ? 0.0f : std::fmin(1.0f, std::fmax(-1.0f, s));
    u16(static_cast<std::uint16_t>(static_cast<std::int16_t>(std::lround(clipped * 32767.0f))));
  }
  return out;
}

}  // namespace tessera::io
