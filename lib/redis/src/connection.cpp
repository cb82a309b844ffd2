#include "connection.hpp"

#include <sys/time.h>

#include <cstddef>
#include <string>
#include <utility>

namespace flowpool::redis::detail {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

connection::connection(endpoint where, std::chrono::milliseconds connect_timeout,
                       std::chrono::milliseconds read_timeout)
    : m_where(std::move(where)), m_connect_timeout(connect_timeout), m_read_timeout(read_timeout) {}

void connection::open() {
  close();
  const timeval tv = to_timeval(m_connect_timeout);
  redisContext* c = m_where.unix_path.empty() ? redisConnectWithTimeout(m_where.host.c_str(), m_where.port, tv)
                                              : redisConnectUnixWithTimeout(m_where.unix_path.c_str(), tv);
  if (c == nullptr) {
    throw io_failure("cannot connect to " + m_where.to_string() + ": out of memory");
  }
  if (c->err != 0) {
    std::string text = "cannot connect to " + m_where.to_string() + ": " + c->errstr;
    redisFree(c);
    throw io_failure(text);
  }
  if (redisSetTimeout(c, to_timeval(m_read_timeout)) != REDIS_OK) {
    std::string text = "cannot set the timeout on " + m_where.to_string() + ": " + c->errstr;
    redisFree(c);
    throw io_failure(text);
  }
  m_context = c;
}

void connection::close() noexcept {
  if (m_context != nullptr) {
    redisFree(m_context);
    m_context = nullptr;
  }
}

std::vector<reply_ptr> connection::pipeline(const std::vector<command_args>& commands) {
  if (m_context == nullptr) {
    open();
  }
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const command_args& args : commands) {
    argv.clear();
    lengths.clear();
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    if (redisAppendCommandArgv(m_context, static_cast<int>(argv.size()), argv.data(), lengths.data()) != REDIS_OK) {
      std::string text = std::string("redis: cannot queue a command: ") + m_context->errstr;
      close();
      throw io_failure(text);
    }
  }
  std::vector<reply_ptr> replies;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(m_context, &raw) != REDIS_OK || raw == nullptr) {
      std::string text = "connection to " + m_where.to_string() + " lost: " +
                         (m_context->errstr[0] != '\0' ? std::string(m_context->errstr) : std::string("no reply"));
      close();
      throw io_failure(text);
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  return replies;
}

reply_ptr connection::command(const command_args& args) {
  std::vector<reply_ptr> r = pipeline({args});
  return std::move(r.front());
}

std::string error_text(const redisReply* r) {
  if (r == nullptr || r->type != REDIS_REPLY_ERROR) {
    return {};
  }
  return std::string(r->str, r->len);
}

std::string string_of(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_STRING)) {
    return {};
  }
  return std::string(r->str, r->len);
}

}  // namespace flowpool::redis::detail
