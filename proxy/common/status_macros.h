// Early-return helpers for absl::Status / absl::StatusOr, which Abseil 20220623 lacks.
//
//   absl::StatusOr<Config> Load(std::string_view path) {
//     ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     RETURN_IF_ERROR(Validate(text));
//     ...
//   }
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SALTPROXY_CONCAT_INNER_(a, b) a##b
#define SALTPROXY_CONCAT_(a, b) SALTPROXY_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    if (absl::Status status_ = (expr); !status_.ok()) { \
      return status_;                                  \
    }                                                  \
  } while (false)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(SALTPROXY_CONCAT_(statusor_, __LINE__), lhs, expr)
