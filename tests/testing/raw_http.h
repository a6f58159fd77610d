// A raw HTTP/1.1 connection for tests that need what HttpClient hides: a chunked request sent
// piece by piece while the answer is read, a header with no body yet, a client that stalls.
//
//   RawHttp c(port);
//   c.Send("POST /bulk/topics/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
//   c.SendChunk("{\"value\":1}\n");
//   ReadResult head = c.ReadHeader();            // status, headers
//   std::string line = c.ReadLine();             // one result line of the chunked answer
//   c.SendChunk("");                             // the last chunk
//   std::vector<std::string> rest = c.ReadLinesToEnd();
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace saltproxy::testing {

class RawHttp {
 public:
  explicit RawHttp(uint16_t port) : socket_(ioc_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    timeval tv{30, 0};  // no test waits forever on a read
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  bool Send(const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(socket_, boost::asio::buffer(bytes), ec);
    return !ec;
  }
  bool SendChunk(const std::string& data) {
    std::ostringstream chunk;
    chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
    return Send(chunk.str());
  }

  // Half-closes the connection: the server reads end of file, and this side can still read.
  void ShutdownSend() {
    boost::system::error_code ec;
    socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
  }

  struct Head {
    int status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
  };
  // Reads the status line and the headers (skipping a 100 Continue).
  Head ReadHeader() {
    Head head;
    ended_ = false;  // a new answer on the same connection
    body_.clear();
    for (;;) {
      std::string line = ReadCrlfLine();
      if (line.empty() && !ok_) return head;
      if (line.rfind("HTTP/1.", 0) != 0) continue;
      head.status = std::stoi(line.substr(9, 3));
      for (std::string h = ReadCrlfLine(); !h.empty(); h = ReadCrlfLine()) {
        size_t colon = h.find(':');
        std::string name = h.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        head.headers[name] = h.substr(h.find_first_not_of(' ', colon + 1));
      }
      if (head.status != 100) return head;
    }
  }

  // The next line of a chunked answer's body (without its '\n'); empty at its end or on error.
  std::string ReadLine() {
    for (;;) {
      size_t nl = body_.find('\n');
      if (nl != std::string::npos) {
        std::string line = body_.substr(0, nl);
        body_.erase(0, nl + 1);
        return line;
      }
      if (ended_ || !ReadChunk()) return "";
    }
  }
  std::vector<std::string> ReadLinesToEnd() {
    std::vector<std::string> lines;
    for (std::string l = ReadLine(); !l.empty(); l = ReadLine()) lines.push_back(l);
    return lines;
  }
  // The rest of a Content-Length body.
  std::string ReadBody(const Head& head) {
    auto it = head.headers.find("content-length");
    if (it == head.headers.end()) return "";
    size_t n = std::stoul(it->second);
    Fill(n);
    std::string body = buffer_.substr(0, n);
    buffer_.erase(0, std::min(n, buffer_.size()));
    return body;
  }
  bool ended() const { return ended_; }

  // True when the server closed the connection (a read returns end of file) within `timeout`.
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    for (;;) {
      boost::system::error_code ec;
      socket_.read_some(boost::asio::buffer(buf), ec);
      if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset) return true;
      if (ec) return false;  // the timeout
    }
  }

 private:
  bool Fill(size_t n) {
    while (buffer_.size() < n) {
      char buf[65536];
      boost::system::error_code ec;
      size_t got = socket_.read_some(boost::asio::buffer(buf), ec);
      if (ec) {
        ok_ = false;
        return false;
      }
      buffer_.append(buf, got);
    }
    return true;
  }
  std::string ReadCrlfLine() {
    for (;;) {
      size_t end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return line;
      }
      if (!Fill(buffer_.size() + 1)) return "";
    }
  }
  bool ReadChunk() {
    std::string size_line = ReadCrlfLine();
    if (size_line.empty()) return false;
    size_t n = std::stoul(size_line, nullptr, 16);
    if (n == 0) {
      ReadCrlfLine();
      ended_ = true;
      return false;
    }
    if (!Fill(n + 2)) return false;
    body_.append(buffer_, 0, n);
    buffer_.erase(0, n + 2);
    return true;
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  std::string buffer_;  // read, not yet parsed
  std::string body_;    // de-chunked, not yet returned
  bool ended_ = false;
  bool ok_ = true;
};

}  // namespace saltproxy::testing
