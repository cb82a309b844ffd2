// One synchronous hiredis connection with pipelining; owned and used by one thread at a time.
#pragma once

#include <flowpool/redis/stream_entry.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace flowpool::redis::detail {

// The connection broke (or could not be made): retry after reconnecting.
class io_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

using command_args = std::vector<std::string>;

class connection {
 public:
  connection(endpoint where, std::chrono::milliseconds connect_timeout, std::chrono::milliseconds read_timeout);
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  connection(connection&&) = delete;
  connection& operator=(connection&&) = delete;
  ~connection() { close(); }

  [[nodiscard]] bool is_open() const noexcept { return m_context != nullptr; }
  // Connects; throws io_failure with hiredis's error text.
  void open();
  void close() noexcept;
  // Sends every command in one write and reads every reply (one round trip). On an I/O error it
  // closes the connection and throws io_failure: which commands were applied is then unknown.
  std::vector<reply_ptr> pipeline(const std::vector<command_args>& commands);
  reply_ptr command(const command_args& args);

 private:
  endpoint m_where;
  std::chrono::milliseconds m_connect_timeout;
  std::chrono::milliseconds m_read_timeout;
  redisContext* m_context = nullptr;
};

// The text of an error reply, or "" if `r` is not an error.
[[nodiscard]] std::string error_text(const redisReply* r);
// The string of a status/string/verb reply, "" otherwise.
[[nodiscard]] std::string string_of(const redisReply* r);

}  // namespace flowpool::redis::detail
