package main

import (
	"context"
	"fmt"
)

func cmdSlave(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln slave: not built yet")
	return 2
}
