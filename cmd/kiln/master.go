package main

import (
	"context"
	"fmt"
)

func cmdMaster(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln master: not built yet")
	return 2
}
