package main

import (
	"context"
	"fmt"
)

func cmdAdmin(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln admin: not built yet")
	return 2
}
