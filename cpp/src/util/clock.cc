#include "lmcache/clock.h"

#include <chrono>

namespace lmcache {
namespace {

class SteadyClock final : public Clock {
 public:
  int64_t NowNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock* Clock::Default() {
  static SteadyClock* c = new SteadyClock();
  return c;
}

}  // namespace lmcache
