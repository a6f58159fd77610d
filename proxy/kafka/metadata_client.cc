#include "proxy/kafka/metadata_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/common/strings.h"
#include "proxy/kafka/protocol.h"

namespace saltproxy::kafka {
namespace {

// Request header v1 (v2 adds tagged fields): api key, version, correlation id, client id.
void WriteRequestHeader(WireWriter& w, int16_t key, int16_t version, int32_t correlation_id,
                        std::string_view client_id, bool flexible) {
  w.Int16(key);
  w.Int16(version);
  w.Int32(correlation_id);
  w.NullableString(std::string(client_id), /*compact=*/false);
  if (flexible) w.EmptyTaggedFields();
}

std::string Framed(WireWriter& w) {
  WireWriter framed;
  framed.Int32(static_cast<int32_t>(w.size()));
  framed.Raw(w.data());
  return std::move(framed.data());
}

// A blocking connection with a deadline for each step.
class Connection {
 public:
  ~Connection() {
    if (fd_ >= 0) close(fd_);
  }

  absl::Status Connect(const std::string& host, const std::string& port, absl::Time deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
    }
    absl::Status last = absl::UnavailableError(absl::StrCat("no address for ", host));
    for (addrinfo* a = found; a; a = a->ai_next) {
      int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
        fd_ = fd;
        last = Wait(POLLOUT, deadline);
        int error = 0;
        socklen_t len = sizeof error;
        if (last.ok() && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0) {
          break;
        }
        if (last.ok()) last = absl::UnavailableError(absl::StrCat("connect: ", strerror(error)));
        close(fd);
        fd_ = -1;
      } else {
        last = absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
        close(fd);
      }
    }
    freeaddrinfo(found);
    return last;
  }

  absl::Status Send(std::string_view bytes, absl::Time deadline) {
    while (!bytes.empty()) {
      ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (absl::Status s = Wait(POLLOUT, deadline); !s.ok()) return s;
      } else {
        return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
      }
    }
    return absl::OkStatus();
  }

  // One response frame (without its length), at most `max` bytes.
  absl::StatusOr<std::string> ReceiveFrame(absl::Time deadline, size_t max = 64 << 20) {
    std::string length;
    if (absl::Status s = ReceiveExactly(4, deadline, &length); !s.ok()) return s;
    WireReader r{std::string_view(length)};
    int32_t size = r.Int32();
    if (size < 0 || static_cast<size_t>(size) > max) {
      return absl::DataLossError(absl::StrCat("response of ", size, " bytes"));
    }
    std::string frame;
    if (absl::Status s = ReceiveExactly(static_cast<size_t>(size), deadline, &frame); !s.ok()) {
      return s;
    }
    return frame;
  }

 private:
  absl::Status Wait(short events, absl::Time deadline) {
    for (;;) {
      int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) return absl::DeadlineExceededError("the broker did not answer in time");
      pollfd p{fd_, events, 0};
      int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
      if (rc > 0) return absl::OkStatus();
      if (rc < 0 && errno != EINTR) return absl::UnavailableError(strerror(errno));
    }
  }

  absl::Status ReceiveExactly(size_t n, absl::Time deadline, std::string* out) {
    out->resize(n);
    size_t have = 0;
    while (have < n) {
      ssize_t got = recv(fd_, out->data() + have, n - have, 0);
      if (got > 0) {
        have += static_cast<size_t>(got);
      } else if (got == 0) {
        return absl::UnavailableError("the broker closed the connection");
      } else if (errno == EAGAIN || errno == EINTR) {
        if (absl::Status s = Wait(POLLIN, deadline); !s.ok()) return s;
      } else {
        return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
      }
    }
    return absl::OkStatus();
  }

  int fd_ = -1;
};

absl::StatusOr<TopicIds> FetchFrom(const std::string& host, const std::string& port,
                                   absl::Time deadline) {
  Connection c;
  if (absl::Status s = c.Connect(host, port, deadline); !s.ok()) return s;
  if (absl::Status s = c.Send(EncodeApiVersionsRequestV0(1, "saltproxy-topic-ids"), deadline);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> versions = c.ReceiveFrame(deadline);
  if (!versions.ok()) return versions.status();
  WireReader vr{std::string_view(*versions)};
  if (vr.Int32() != 1) return absl::DataLossError("ApiVersions: unexpected correlation id");
  absl::StatusOr<int16_t> max = DecodeMetadataMaxVersion(vr);
  if (!max.ok()) return max.status();
  if (*max < 10) {
    return absl::FailedPreconditionError(
        absl::StrCat("the broker serves Metadata up to v", *max, ", without topic ids"));
  }
  const int16_t version = std::min<int16_t>(*max, 12);
  if (absl::Status s = c.Send(EncodeMetadataRequestAllTopics(version, 2, "saltproxy-topic-ids"),
                              deadline);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> metadata = c.ReceiveFrame(deadline);
  if (!metadata.ok()) return metadata.status();
  WireReader mr{std::string_view(*metadata)};
  if (mr.Int32() != 2) return absl::DataLossError("Metadata: unexpected correlation id");
  mr.SkipTaggedFields();  // response header v1
  return DecodeMetadataTopicIds(mr, version);
}

}  // namespace

std::string EncodeApiVersionsRequestV0(int32_t correlation_id, std::string_view client_id) {
  WireWriter w;
  WriteRequestHeader(w, kApiVersions, 0, correlation_id, client_id, /*flexible=*/false);
  return Framed(w);
}

absl::StatusOr<int16_t> DecodeMetadataMaxVersion(WireReader& in) {
  int16_t error = in.Int16();
  int32_t n = in.ArrayLength(/*compact=*/false);
  int16_t max = -1;
  for (int32_t i = 0; i < n && in.ok(); ++i) {
    int16_t key = in.Int16();
    in.Int16();  // min
    int16_t top = in.Int16();
    if (key == kMetadata) max = top;
  }
  if (!in.ok()) return in.status();
  if (error != kNone) return absl::UnavailableError(absl::StrCat("ApiVersions error ", error));
  return max;
}

std::string EncodeMetadataRequestAllTopics(int16_t version, int32_t correlation_id,
                                           std::string_view client_id) {
  WireWriter w;
  WriteRequestHeader(w, kMetadata, version, correlation_id, client_id, /*flexible=*/true);
  w.ArrayLength(-1, /*compact=*/true);   // topics: null, every topic
  w.Bool(false);                         // allow_auto_topic_creation
  if (version <= 10) w.Bool(false);      // include_cluster_authorized_operations (v8-v10)
  w.Bool(false);                         // include_topic_authorized_operations
  w.EmptyTaggedFields();
  return Framed(w);
}

absl::StatusOr<TopicIds> DecodeMetadataTopicIds(WireReader& in, int16_t version) {
  if (version < 10 || version > 12) {
    return absl::InvalidArgumentError(absl::StrCat("Metadata v", version, " has no topic ids"));
  }
  in.Int32();  // throttle_time_ms
  int32_t brokers = in.ArrayLength(/*compact=*/true);
  for (int32_t i = 0; i < brokers && in.ok(); ++i) {
    in.Int32();                            // node_id
    in.String(/*compact=*/true);           // host
    in.Int32();                            // port
    in.NullableString(/*compact=*/true);   // rack
    in.SkipTaggedFields();
  }
  in.NullableString(/*compact=*/true);  // cluster_id
  in.Int32();                           // controller_id
  TopicIds ids;
  int32_t topics = in.ArrayLength(/*compact=*/true);
  for (int32_t i = 0; i < topics && in.ok(); ++i) {
    int16_t error = in.Int16();
    std::optional<std::string> name = in.NullableString(/*compact=*/true);
    Uuid id = in.ReadUuid();
    in.Int8();  // is_internal
    int32_t partitions = in.ArrayLength(/*compact=*/true);
    for (int32_t p = 0; p < partitions && in.ok(); ++p) {
      in.Int16();  // error_code
      in.Int32();  // partition_index
      in.Int32();  // leader_id
      in.Int32();  // leader_epoch
      for (int list = 0; list < 3 && in.ok(); ++list) {  // replicas, isr, offline replicas
        int32_t n = in.ArrayLength(/*compact=*/true);
        for (int32_t r = 0; r < n && in.ok(); ++r) in.Int32();
      }
      in.SkipTaggedFields();
    }
    in.Int32();  // topic_authorized_operations
    in.SkipTaggedFields();
    if (in.ok() && error == kNone && name && id != Uuid{}) ids[*name] = id;
  }
  if (version <= 10) in.Int32();  // cluster_authorized_operations
  in.SkipTaggedFields();
  if (!in.ok()) return in.status();
  return ids;
}

absl::StatusOr<TopicIds> FetchTopicIds(const std::string& bootstrap_servers,
                                       absl::Duration timeout) {
  absl::Status last = absl::InvalidArgumentError("no bootstrap server");
  for (absl::string_view server : absl::StrSplit(bootstrap_servers, ',', absl::SkipWhitespace())) {
    if (size_t scheme = server.find("://"); scheme != absl::string_view::npos) {
      server.remove_prefix(scheme + 3);  // PLAINTEXT://host:port
    }
    size_t colon = server.rfind(':');
    if (colon == absl::string_view::npos) {
      last = absl::InvalidArgumentError(absl::StrCat("expected host:port, got ", server));
      continue;
    }
    std::string host(server.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    absl::StatusOr<TopicIds> ids =
        FetchFrom(host, std::string(server.substr(colon + 1)), absl::Now() + timeout);
    if (ids.ok()) return ids;
    last = ids.status();
  }
  return last;
}

}  // namespace saltproxy::kafka
