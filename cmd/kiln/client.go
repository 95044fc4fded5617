package main

import (
	"context"
	"fmt"
)

func cmdClient(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln client: not built yet")
	return 2
}
