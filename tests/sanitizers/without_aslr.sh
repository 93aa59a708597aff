#!/bin/sh
# Runs a ThreadSanitizer program with address randomization off where the system lets a process
# turn it off (setarch -R): ThreadSanitizer maps its shadow memory at fixed addresses, which the
# randomization of some kernels collides with ("unexpected memory mapping"). Where it may not
# (a container whose seccomp profile refuses the personality call), the program runs as it is.
if setarch "$(uname -m)" -R true 2>/dev/null; then
  exec setarch "$(uname -m)" -R "$@"
fi
exec "$@"
