package main

import (
	"context"
	"fmt"
)

func cmdDev(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln dev: not built yet")
	return 2
}
