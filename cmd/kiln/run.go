package main

import (
	"context"
	"fmt"
)

func cmdRun(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln run: not built yet")
	return 2
}
