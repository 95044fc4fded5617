package sandbox

// The strict runner re-executes /proc/self/exe as its sandbox init; in
// tests that is the test binary, so it must become the init before the
// testing framework starts. TestMain lives in plain_test.go.
func init() {
	Main()
}
