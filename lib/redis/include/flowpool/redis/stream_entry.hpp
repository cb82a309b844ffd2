/// @file
/// @brief flowpool::redis::stream_entry (one entry of a Redis stream) and flowpool::redis::endpoint
/// (where Redis listens).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flowpool::redis {

/// @brief One entry of a Redis stream: its id and its field/value pairs, in stream order.
struct stream_entry {
  std::string id;                                           ///< The entry id, e.g. `1700000000000-0`.
  std::vector<std::pair<std::string, std::string>> fields;  ///< Field/value pairs, as stored (names may repeat).

  /// @brief The value of the first field named `name`. Any thread; never throws.
  /// @param name the field name.
  /// @return a pointer to the value, or nullptr if there is no such field (valid while the entry lives).
  [[nodiscard]] const std::string* find(std::string_view name) const noexcept {
    for (const auto& [field, value] : fields) {
      if (field == name) {
        return &value;
      }
    }
    return nullptr;
  }
};

/// @brief Where Redis listens: a unix socket or a TCP host and port.
struct endpoint {
  std::string unix_path;   ///< The socket path; empty for TCP.
  std::string host;        ///< The TCP host (name or address); empty for a unix socket.
  std::uint16_t port = 0;  ///< The TCP port; 0 for a unix socket.

  /// @brief Parses `unix:/path/to/socket` or `host:port` (the last `:` splits; `[::1]:6379` for
  /// IPv6). Any thread; never throws.
  /// @param text the endpoint text.
  /// @return the endpoint, or nullopt if the text is neither form (empty path or host, a port
  ///         outside 1..65535 or not a number).
  [[nodiscard]] static std::optional<endpoint> parse(std::string_view text) {
    endpoint out;
    if (text.starts_with("unix:")) {
      out.unix_path = std::string(text.substr(5));
      if (out.unix_path.empty()) {
        return std::nullopt;
      }
      return out;
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
      return std::nullopt;
    }
    std::string_view host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    unsigned port = 0;
    for (const char c : text.substr(colon + 1)) {
      if (c < '0' || c > '9' || port > 65535) {
        return std::nullopt;
      }
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535 || host.empty()) {
      return std::nullopt;
    }
    out.host = std::string(host);
    out.port = static_cast<std::uint16_t>(port);
    return out;
  }

  /// @brief The text form, as `parse` accepts it. Any thread; allocates.
  /// @return e.g. `unix:/tmp/redis.sock` or `127.0.0.1:6379`.
  [[nodiscard]] std::string to_string() const {
    return unix_path.empty() ? host + ":" + std::to_string(port) : "unix:" + unix_path;
  }
};

}  // namespace flowpool::redis
