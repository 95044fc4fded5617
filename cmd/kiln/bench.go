package main

import (
	"context"
	"fmt"
)

func cmdBench(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln bench: not built yet")
	return 2
}
