// Waiting for SIGTERM or SIGINT in a server's main thread, so that stopping is ordinary code
// (server.stop(), then return from main) instead of work inside a signal handler.
//
//   serve::StopSignals signals;           // before the server starts
//   server.start();
//   const int signal = signals.wait();    // blocks until SIGTERM or SIGINT (or interrupt())
//   server.stop();
//
// Why a handler and a pipe rather than blocking the signals and calling sigwait: libraries start
// threads of their own before main runs (OpenBLAS's workers do), and a blocked mask set in main
// does not reach them, so the kernel may deliver SIGTERM to one of them and kill the process. A
// handler is process-wide; it only writes the signal's number to a pipe, which is
// async-signal-safe, and wait() reads it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tessera/core/error.hpp"

namespace tessera::serve {

class StopSignals {
 public:
  /// Installs the handlers for SIGTERM and SIGINT (one StopSignals at a time in a process).
  StopSignals() {
    if (::pipe(fds()) != 0) throw io_error(std::string("StopSignals: pipe failed: ") + std::strerror(errno));
    for (int fd : {fds()[0], fds()[1]}) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fds()[1], F_SETFL, ::fcntl(fds()[1], F_GETFL) | O_NONBLOCK);  // a full pipe never blocks the handler
    struct sigaction action {};
    action.sa_handler = &StopSignals::handle;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGTERM, &action, &old_term_);
    ::sigaction(SIGINT, &action, &old_int_);
  }
  ~StopSignals() {
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::close(fds()[0]);
    ::close(fds()[1]);
    fds()[0] = fds()[1] = -1;
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// Blocks until SIGTERM or SIGINT arrives (returns its number) or interrupt() is called (returns 0).
  int wait() {
    unsigned char signal = 0;
    for (;;) {
      const ssize_t n = ::read(fds()[0], &signal, 1);
      if (n == 1) return signal;
      if (n < 0 && errno == EINTR) continue;
      return 0;
    }
  }
  /// Wakes wait() without a signal (for a server that ended by itself).
  void interrupt() { notify(0); }

 private:
  static int* fds() {
    static int pipe_fds[2] = {-1, -1};
    return pipe_fds;
  }
  static void notify(int signal) {
    const int saved = errno;
    const unsigned char byte = static_cast<unsigned char>(signal);
    if (fds()[1] >= 0) (void)!::write(fds()[1], &byte, 1);
    errno = saved;
  }
  static void handle(int signal) { notify(signal); }

  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

}  // namespace tessera::serve
