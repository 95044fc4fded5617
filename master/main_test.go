package master_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childMasterEnv); spec != "" {
		os.Exit(runChildMaster(spec)) // a master for TestHostileFigures
	}
	goleak.VerifyTestMain(m)
}
