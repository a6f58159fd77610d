// What the HTTP and Kafka listeners share: binding a TCP acceptor from the config's endpoint
// (with an error that names the config field), and closing it from any thread.
//
//   ASSIGN_OR_RETURN(auto acceptor, BindAcceptor(ioc, config.listen, "http.listen"));
#pragma once

#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "proxy/config/config.h"

namespace saltproxy {

absl::StatusOr<std::unique_ptr<boost::asio::ip::tcp::acceptor>> BindAcceptor(
    boost::asio::io_context& ioc, const Endpoint& listen, std::string_view field);

// Closes `acceptor` on its own executor (its pending accept completes with operation_aborted).
void CloseAcceptor(boost::asio::ip::tcp::acceptor& acceptor);

}  // namespace saltproxy
