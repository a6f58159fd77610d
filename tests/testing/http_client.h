// A small synchronous HTTP/1.1 client for tests (Boost.Beast), one connection per object so
// that tests can exercise keep-alive, or one-shot with HttpCall().
//
//   HttpClient client(port);
//   HttpResult r = client.Post("/topics/t", R"({"records":[…]})", "application/json");
//   EXPECT_EQ(r.status, 200);
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <map>
#include <optional>
#include <string>

namespace saltproxy::testing {

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  std::string error;  // transport error, empty when the exchange completed
  // The body parsed once, owned by this result, so that references into it stay valid as long
  // as the result does (a by-value parse would dangle in range-for loops and bound refs).
  const boost::json::value& Json() const {
    if (!parsed_) parsed_ = boost::json::parse(body);
    return *parsed_;
  }

 private:
  mutable std::optional<boost::json::value> parsed_;
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port, std::string host = "127.0.0.1")
      : host_(std::move(host)), port_(port), stream_(ioc_) {}

  HttpResult Request(boost::beast::http::verb method, const std::string& target,
                     const std::string& body = "", const std::string& content_type = "",
                     const std::map<std::string, std::string>& headers = {}) {
    namespace http = boost::beast::http;
    HttpResult result;
    boost::beast::error_code ec;
    if (!connected_) {
      boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address(host_), port_);
      stream_.connect(ep, ec);
      if (ec) {
        result.error = ec.message();
        return result;
      }
      connected_ = true;
    }
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, host_);
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    stream_.expires_after(std::chrono::seconds(60));
    http::write(stream_, req, ec);
    if (ec) {
      result.error = ec.message();
      connected_ = false;
      return result;
    }
    http::response<http::string_body> res;
    http::read(stream_, buffer_, res, ec);
    if (ec) {
      result.error = ec.message();
      connected_ = false;
      return result;
    }
    result.status = res.result_int();
    result.body = res.body();
    for (const auto& field : res) {
      result.headers[std::string(field.name_string())] = std::string(field.value());
    }
    if (!res.keep_alive()) {
      stream_.close();
      connected_ = false;
    }
    return result;
  }

  HttpResult Get(const std::string& target) {
    return Request(boost::beast::http::verb::get, target);
  }
  HttpResult Post(const std::string& target, const std::string& body,
                  const std::string& content_type = "application/vnd.kafka.json.v2+json",
                  const std::map<std::string, std::string>& headers = {}) {
    return Request(boost::beast::http::verb::post, target, body, content_type, headers);
  }
  bool connected() const { return connected_; }

 private:
  std::string host_;
  uint16_t port_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
};

}  // namespace saltproxy::testing
