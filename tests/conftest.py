"""Suite-wide set-up.

The Ctrl-C tests send SIGINT to the processes they start. A runner that starts the suite
with SIGINT ignored (a background job of a shell without job control) would hand that on
to every child, which would then never see the signal; a handler installed here is reset
to the default when a child execs, so the children behave as under a terminal.
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
