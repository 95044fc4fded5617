package main

import "kiln/slave/sandbox"

// sandboxChild reports whether this process was started as a sandbox helper
// (the strict sandbox's init, re-executed from /proc/self/exe inside its
// namespaces) and has already done its work; main then returns at once.
// sandbox.Main exits the process itself when it is the init.
func sandboxChild() bool { return sandbox.Main() }
