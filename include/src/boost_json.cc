// Boost.JSON is used header-only: its implementation is compiled once, here, for the proxy and
// the consumer library (include/CMakeLists.txt).
#include <boost/json/src.hpp>
