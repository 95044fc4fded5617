package main

import (
	"context"
	"fmt"
)

func cmdCerts(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "kiln certs: not built yet")
	return 2
}
