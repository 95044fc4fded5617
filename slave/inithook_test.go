package slave

import "kiln/slave/sandbox"

// The strict runner re-executes /proc/self/exe as its sandbox init; in
// this package's tests that is the test binary, so it must become the init
// before the testing framework starts.
func init() { sandbox.Main() }
