#include "proxy/net/acceptor.h"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "absl/strings/str_cat.h"
#include "proxy/common/strings.h"

namespace saltproxy {

namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

absl::StatusOr<std::unique_ptr<tcp::acceptor>> BindAcceptor(net::io_context& ioc,
                                                           const Endpoint& listen,
                                                           std::string_view field) {
  boost::system::error_code ec;
  auto address = net::ip::make_address(listen.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(field), ": not an IP address: ", listen.host));
  }
  tcp::endpoint endpoint(address, listen.port);
  auto acceptor = std::make_unique<tcp::acceptor>(net::make_strand(ioc));
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(Sv(field), ": cannot listen on ", listen.host, ":",
                                               listen.port, ": ", ec.message()));
  }
  return acceptor;
}

void CloseAcceptor(tcp::acceptor& acceptor) {
  net::post(acceptor.get_executor(), [&acceptor] {
    boost::system::error_code ec;
    acceptor.close(ec);
  });
}

}  // namespace saltproxy
